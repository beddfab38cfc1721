"""Rendering of ``ambit bench controlplane`` results: rich tables and the BENCHMARKS.md section.

Numbers are only formatted here; every value comes from a ``controlplane.Result``. ``update_markdown``
replaces the ``## Control plane scale (ambit bench controlplane)`` section of a markdown file (or
appends it), leaving every other section alone; inside the section only the text between the
``GENERATED_BEGIN`` / ``GENERATED_END`` markers is regenerated when they exist, so hand-written
analysis around the numbers survives a re-run.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from rich.table import Table

from ambit.bench.cp_results import Change, Memory, Result
from ambit.bench.markdown import package_version, replace_generated, table
from ambit.bench.markdown import rich_tables as shared_rich_tables

SECTION_TITLE = "## Control plane scale (ambit bench controlplane)"
GENERATED_BEGIN = "<!-- ambit bench controlplane: generated, begin -->"
GENERATED_END = "<!-- ambit bench controlplane: generated, end -->"

TARGET_SECONDS = 1.0
TARGET_BYTES = 4 * 1024  # "a few KiB"
TARGET_RSS_BYTES = 300 * 1000 * 1000  # 300 MB


def versions() -> dict[str, str]:
    return {dist: package_version(dist) for dist in ("grpcio", "protobuf", "aiohttp", "uvloop", "ambit")}


# -- formatting --------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isinf(seconds):
        return "never"
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:,.0f} ms"


def _s(seconds: float) -> str:
    return f"{seconds:.2f} s"


def _bytes(n: float) -> str:
    return f"{n:,.0f} B"


def _mb(kib: int) -> str:
    """Megabytes (10^6 bytes, the unit of the target) with MiB beside."""
    return f"{kib * 1024 / 1e6:,.0f} MB ({kib / 1024:,.0f} MiB)"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- tables ------------------------------------------------------------------------------------------------


TARGET_HEADERS = ["figure", "target", "measured", "verdict"]


def target_rows(r: Result) -> list[list[str]]:
    n = r.plan.clients
    changes = r.changes
    misses = sum(c.missed for c in changes)
    time_ok = misses == 0 and r.time_to_all_s <= TARGET_SECONDS
    max_bytes = max((c.max_bytes_per_client for c in changes), default=0)
    resources = max((c.resources_per_response for c in changes), default=0)
    responses = max((c.responses_per_client for c in changes), default=0)
    bytes_ok = bool(changes) and max_bytes <= TARGET_BYTES and resources == 1 and responses == 1
    rss_ok = r.peak_rss_kib * 1024 <= TARGET_RSS_BYTES
    time_text = (
        f"{_ms(r.time_to_all_s)} (median over {len(changes)} changes of the slowest client; "
        f"worst change {_ms(r.worst_s)})"
    )
    if misses:
        time_text += f"; {misses} client(s) never got a change"
    total = sum(c.bytes for change in changes for c in change.clients) / len(changes) if changes else 0.0
    bytes_text = (
        f"{_bytes(r.bytes_per_client)} per client (at most {_bytes(max_bytes)}), {_bytes(total)} to all "
        f"{n} clients (mean per change); {responses} response(s) per client per change, at most "
        f"{resources} resource(s) per response"
    )
    rss_text = f"peak {_mb(r.peak_rss_kib)}"
    final = list(r.memory.values())[-1] if r.memory else None
    if final is not None:
        rss_text += f"; {_mb(final.rss_kib)} after the changes"
    return [
        [
            f"one pod change → all {n} clients have it",
            f"≤ {TARGET_SECONDS:g} s",
            time_text,
            _verdict(time_ok),
        ],
        [
            "bytes pushed for that change",
            "a few KiB (≤ 4 KiB), only that resource",
            bytes_text,
            _verdict(bytes_ok),
        ],
        ["replica RSS", "≤ 300 MB", rss_text, _verdict(rss_ok)],
    ]


SUMMARY_HEADERS = ["figure", "value"]


def summary_rows(r: Result) -> list[list[str]]:
    shape, plan = r.plan.shape, r.plan
    changes = r.changes
    rows = [
        [
            "cluster",
            f"{shape.nodes:,} nodes, {shape.namespaces:,} ambient namespaces, {shape.services:,} services, "
            f"{shape.pods:,} pods",
        ],
        ["written into the store", f"{r.objects:,} objects in {_s(r.setup_s)}"],
        [
            "replica: process start → ready",
            f"{_s(r.plane_ready_s)} (first translation {_ms(r.initial_translation_s)})",
        ],
        [
            "resources per client after the initial sync",
            f"{r.initial_resources:,} in {_bytes(r.initial_bytes)} of responses",
        ],
        [
            f"{plan.clients} clients: first spawned → all synced",
            f"{_s(r.sync_all_s)} (batches of {plan.batch}; per client, spawn → synced: median "
            f"{_s(statistics.median(r.client_sync_s)) if r.client_sync_s else '-'}, "
            f"max {_s(max(r.client_sync_s, default=0.0))})",
        ],
        ["client process RSS after its sync (median)", _mb(r.client_rss_kib)],
    ]
    if changes:
        rows += [
            [
                "per change: first client (median over changes)",
                _ms(statistics.median(c.min_s for c in changes)),
            ],
            [
                "per change: median client latency (median over changes)",
                _ms(statistics.median(c.p50_s for c in changes)),
            ],
            ["per change: slowest client (median over changes)", _ms(r.time_to_all_s)],
            [
                "per change: until the replica had counted a response to every client (median over changes; "
                "/debug/syncz polled every 20 ms on the replica's busy event loop: an upper bound)",
                _ms(statistics.median(c.pushed_s for c in changes)),
            ],
            [
                "per change: until gRPC handed the response to the slowest client (median over changes)",
                _ms(statistics.median(c.received_max_s for c in changes)),
            ],
            [
                "per change: CPU time of one client applying the response to its state store (median)",
                _ms(statistics.median(c.apply_cpu_median_s for c in changes)),
            ],
            [
                "per change: store write until acknowledged (median)",
                _ms(statistics.median(c.write_s for c in changes)),
            ],
            [
                "per change: translation in the replica (median; ambit_translation_seconds)",
                _ms(statistics.median(c.translation_s for c in changes)),
            ],
            [
                "per change: snapshot → push, mean over pushes (median; pilot_proxy_convergence_time, "
                "includes the 100 ms debounce)",
                _ms(statistics.median(c.convergence_s for c in changes)),
            ],
            [
                "per change: bytes the replica counted ÷ clients (median; pilot_xds_push_bytes_total)",
                _bytes(statistics.median(c.server_push_bytes / plan.clients for c in changes)),
            ],
        ]
    if changes:
        cpu = ", ".join(
            f"{role} {statistics.median(c.cpu_s.get(role, 0.0) for c in changes):.2f} s"
            for role in ("replica", "store", "clients")
        )
        window = statistics.median(c.window_s for c in changes)
        wait = statistics.median(c.cpu_s.get("replica waiting for a CPU", 0.0) for c in changes)
        rows += [
            [
                "per change: CPU seconds from the write until the bench moved on (median)",
                f"{cpu} (all {plan.clients} clients together) in {window:.2f} s",
            ],
            [
                "per change: replica threads runnable but waiting for a CPU (median; schedstat)",
                f"{wait:.2f} s",
            ],
        ]
    if r.store_memory is not None:
        rows.append(["store process RSS at the end", _mb(r.store_memory.rss_kib)])
    rows.append(["replica log", f"{r.plane_warnings} warning(s), {r.plane_errors} error(s)"])
    return rows


CHANGE_HEADERS = [
    "#",
    "pod",
    "ready →",
    "store write",
    "translation",
    "snapshot → push",
    "pushed to all",
    "latency min",
    "latency p50",
    "received max",
    "latency max",
    "client apply CPU",
    "missed",
    "bytes/client",
    "replica bytes/client",
    "responses/client",
    "resources/response",
    "CPU s replica / clients",
]


def change_rows(r: Result) -> list[list[str]]:
    def row(c: Change) -> list[str]:
        return [
            str(c.index),
            c.pod,
            "True" if c.ready else "False",
            _ms(c.write_s),
            _ms(c.translation_s) + (f" ×{c.translations}" if c.translations != 1 else ""),
            _ms(c.convergence_s),
            _ms(c.pushed_s),
            _ms(c.min_s),
            _ms(c.p50_s),
            _ms(c.received_max_s),
            _ms(c.max_s),
            _ms(c.apply_cpu_median_s),
            str(c.missed),
            _bytes(c.bytes_per_client),
            _bytes(c.server_push_bytes / r.plan.clients),
            str(c.responses_per_client),
            str(c.resources_per_response),
            f"{c.cpu_s.get('replica', 0.0):.2f} / {c.cpu_s.get('clients', 0.0):.2f}",
        ]

    return [row(c) for c in r.changes]


MEMORY_HEADERS = ["replica", "RSS", "peak RSS (VmHWM)", "PSS"]


def memory_rows(r: Result) -> list[list[str]]:
    def row(moment: str, m: Memory) -> list[str]:
        return [moment, _mb(m.rss_kib), _mb(m.hwm_kib), _mb(m.pss_kib)]

    return [row(moment, m) for moment, m in r.memory.items()]


def methodology(r: Result) -> str:
    plan, shape = r.plan, r.plan.shape
    priority = (
        f"at nice +{plan.client_nice} (process and autogroup), so the replica and the store get the "
        "CPUs first, as if the proxies ran on other machines; the clients' own work on a change still "
        "queues on the same CPUs"
        if plan.client_nice
        else "at the same priority as the replica"
    )
    setup = (
        "Every box is its own OS process: the store (`StoreServer`, write-ahead log with fsync), one "
        "control-plane replica started as `ambit controlplane` (default settings: 100 ms debounce, "
        f"waypoint controller on), and {plan.clients} proxies, each one `XdsClient` (delta xDS over gRPC "
        "+ mTLS with its own node credential, subscribed to everything as a ztunnel is) filling a "
        f"`StateStore`. The synthetic cluster: {shape.nodes} Nodes (hostname, region and zone labels), "
        f"{shape.namespaces} Namespaces labelled `istio.io/dataplane-mode: ambient`, {shape.services} "
        "Services (explicit ClusterIP, selector `app=svc-<j>`, one port) spread evenly over the "
        f"namespaces, {shape.pods} Pods (Running, Ready, a podIP, each matched by exactly one Service, "
        "spread over the nodes), written through the store client in transactions of 1,000 objects. "
        f"Clients start {plan.batch} at a time, each batch synced before the next starts, and run "
        f"{priority}."
    )
    measurement = (
        f"Then {plan.changes} changes, one at a time: one pod's Ready condition flips (a different pod "
        "each time), which changes only that pod's Workload (its health status). The clock starts just "
        "before the store write. Each client stamps when gRPC handed it the response carrying that "
        'Workload ("received") and when its state store had it applied ("latency"), on '
        '`CLOCK_MONOTONIC`, which all processes of the machine share. "Pushed to all" is when the '
        "replica's `/debug/syncz` first showed a response sent to every client (polled every 20 ms; "
        "the replica answers on the event loop that is pushing, so it is an upper bound). After every "
        f"change the bench waits {plan.settle:g} s and counts every response each client got; bytes "
        "are the protobuf size of the responses as received, without gRPC, HTTP/2 or TLS framing. "
        "Translation and snapshot → push times come from the replica's `/metrics` around each change; "
        "CPU seconds from `/proc/<pid>/stat`, the replica's run-queue wait from "
        "`/proc/<pid>/task/*/schedstat`. Replica memory: VmRSS and VmHWM from `/proc/<pid>/status`, Pss "
        "from `/proc/<pid>/smaps_rollup` (Pss splits shared library pages among every process mapping "
        "them, so it shrinks as clients start)."
    )
    return f"{setup}\n\n{measurement}"


def machine(env: dict[str, str]) -> str:
    v = versions()
    return (
        f"{env['nproc']} CPUs ({env['cpu']}), {env['kernel']}; {env['python']}; {env['openssl']}; "
        f"grpcio {v['grpcio']}; protobuf {v['protobuf']}; aiohttp {v['aiohttp']}; uvloop {v['uvloop']}; "
        f"ambit {v['ambit']}; {env['date']}; 1-minute load average before the run {env['load']}"
    )


def markdown(r: Result, env: dict[str, str], command: str) -> str:
    """The generated part of the section (between the markers)."""
    return "\n\n".join(
        [
            f"Command: `{command}`",
            f"Machine: {machine(env)}",
            methodology(r),
            table(TARGET_HEADERS, target_rows(r)),
            table(SUMMARY_HEADERS, summary_rows(r)),
            "Every change:",
            table(CHANGE_HEADERS, change_rows(r)),
            "Replica memory:",
            table(MEMORY_HEADERS, memory_rows(r)),
            f"Replica command line (ports and paths from this run): `{r.plane_command}`",
        ]
    )


def rich_tables(r: Result) -> list[Table]:
    specs = [
        ("Control plane scale: targets", TARGET_HEADERS, target_rows(r)),
        ("Control plane scale", SUMMARY_HEADERS, summary_rows(r)),
        ("Every change", CHANGE_HEADERS, change_rows(r)),
        ("Replica memory", MEMORY_HEADERS, memory_rows(r)),
    ]
    return shared_rich_tables(specs, left=("pod", "measured"))


def update_markdown(path: Path, generated: str) -> None:
    """Put `generated` into this benchmark's section of `path`; see the module docstring."""
    replace_generated(path, SECTION_TITLE, GENERATED_BEGIN, GENERATED_END, generated)
