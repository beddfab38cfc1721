"""Rendering of ``ambit bench mesh`` results: rich tables, the targets, and the BENCHMARKS.md section.

Numbers are only formatted and divided here; every value comes from a ``mesh.Result``. Tables have one
row per configuration (or per pair of configurations for the ratios), so a configuration added to
``mesh_configs.CONFIGURATIONS`` shows up everywhere without a change here. `update_markdown` regenerates
only the block between this section's markers (``markdown.replace_generated``).
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from ambit.bench.markdown import package_version, replace_generated, table
from ambit.bench.markdown import rich_tables as shared_rich_tables
from ambit.bench.mesh import ConfigResult, Result
from ambit.bench.mesh_workloads import PERCENTILES

SECTION_TITLE = "## Mesh side by side (ambit bench mesh)"
GENERATED_BEGIN = "<!-- ambit bench mesh: generated, begin -->"
GENERATED_END = "<!-- ambit bench mesh: generated, end -->"

BASELINE = "none"
# Pairs compared by ratio, besides every configuration against the baseline.
PEERS = (("ambit", "stunnel"),)

TARGET_RATE_VS_STUNNEL = 1.2
TARGET_BULK_VS_STUNNEL = 1.0
TARGET_ADDED_P99_S = 0.5e-3
TARGET_VCPU_PER_1000 = 0.06
TARGET_PSS_MB = 60.0
TARGET_IDLE_MB = 80.0
TARGET_IDLE_CONNECTIONS = 10_000


def versions() -> dict[str, str]:
    return {dist: package_version(dist) for dist in ("h2", "uvloop", "cryptography", "ambit")}


# -- formatting --------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "dropped"
    return f"{seconds * 1000:.2f}"


def _added_ms(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or math.isinf(base):
        return "-"
    if math.isinf(value):
        return "dropped"
    return f"{(value - base) * 1000:+.2f}"


def _rate(n: float) -> str:
    return f"{n:,.0f}"


def _gbit(n: float) -> str:
    return f"{n:.2f}"


def _mb(kib: float) -> str:
    return f"{kib * 1024 / 1e6:,.1f}"


def _ratio(value: float, base: float) -> float:
    return value / base if base and not math.isinf(value) and not math.isinf(base) else math.nan


def _x(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}×"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _vcpu(c: ConfigResult, cpu_seconds: float) -> float:
    return c.fixed.vcpu_per_1000(cpu_seconds)


def _cost_total(c: ConfigResult) -> tuple[float, int]:
    cpu = sum(p.cpu_seconds for p in c.fixed.cost.values())
    pss = sum(p.pss_kib for p in c.fixed.cost.values())
    return cpu, pss


# -- tables ------------------------------------------------------------------------------------------------

MAIN_HEADERS = [
    "configuration",
    *(f"{p} ms" for p in PERCENTILES),
    "dropped / failed",
    "max req/s (wrk)",
    "wrk p99 ms",
    "iperf3 1 stream Gbit/s",
    "iperf3 4 streams Gbit/s",
    "new connections/s",
    "proxy vCPU per 1000 req/s",
    "proxy PSS MB",
]


def main_rows(r: Result) -> list[list[str]]:
    rows = []
    for c in r.configs:
        cpu, pss = _cost_total(c)
        rows.append(
            [
                c.name,
                *(_ms(c.fixed.latency_s[p]) for p in PERCENTILES),
                f"{c.fixed.dropped} / {c.fixed.failed}",
                _rate(c.max_rate.requests_per_s),
                _ms(c.max_rate.latency_s.get("p99", math.nan)),
                _gbit(c.bulk[1].gbit_per_s) if 1 in c.bulk else "-",
                _gbit(c.bulk[4].gbit_per_s) if 4 in c.bulk else "-",
                _rate(c.connect.requests_per_s),
                f"{_vcpu(c, cpu):.3f}" if c.proxies else "-",
                _mb(pss) if c.proxies else "-",
            ]
        )
    return rows


ADDED_HEADERS = [
    "configuration",
    *(f"added {p} ms" for p in PERCENTILES),
    *(f"{p} ms counting dropped" for p in PERCENTILES),
]


def added_rows(r: Result) -> list[list[str]]:
    base = r.by_key().get(BASELINE)
    rows = []
    for c in r.configs:
        rows.append(
            [
                c.name,
                *(
                    _added_ms(c.fixed.latency_s[p], base.fixed.latency_s[p]) if base else "-"
                    for p in PERCENTILES
                ),
                *(_ms(c.fixed.latency_all_s[p]) for p in PERCENTILES),
            ]
        )
    return rows


RATIO_HEADERS = [
    "ratio",
    "max req/s",
    "wrk p99",
    "iperf3 1 stream",
    "iperf3 4 streams",
    "new connections/s",
    "p99 at 1000 req/s",
]


def pairs(r: Result) -> list[tuple[ConfigResult, ConfigResult]]:
    by_key = r.by_key()
    found = []
    if BASELINE in by_key:
        found += [(c, by_key[BASELINE]) for c in r.configs if c.key != BASELINE]
    found += [(by_key[a], by_key[b]) for a, b in PEERS if a in by_key and b in by_key]
    return found


def ratio_rows(r: Result) -> list[list[str]]:
    rows = []
    for a, b in pairs(r):
        rows.append(
            [
                f"{a.name} / {b.name}",
                _x(_ratio(a.max_rate.requests_per_s, b.max_rate.requests_per_s)),
                _x(
                    _ratio(
                        a.max_rate.latency_s.get("p99", math.nan), b.max_rate.latency_s.get("p99", math.nan)
                    )
                ),
                *(
                    _x(_ratio(a.bulk[s].gbit_per_s, b.bulk[s].gbit_per_s))
                    if s in a.bulk and s in b.bulk
                    else "-"
                    for s in (1, 4)
                ),
                _x(_ratio(a.connect.requests_per_s, b.connect.requests_per_s)),
                _x(_ratio(a.fixed.latency_s["p99"], b.fixed.latency_s["p99"])),
            ]
        )
    return rows


COST_HEADERS = [
    "configuration",
    "process (with descendants)",
    "CPU s in the window",
    "window s",
    "achieved req/s",
    "vCPU per 1000 req/s",
    "PSS MB (max in window)",
]


def cost_rows(r: Result) -> list[list[str]]:
    rows = []
    for c in r.configs:
        for name, cost in c.fixed.cost.items():
            rows.append(
                [
                    c.name,
                    name,
                    f"{cost.cpu_seconds:.2f}",
                    f"{c.fixed.window_s:.2f}",
                    _rate(c.fixed.achieved),
                    f"{_vcpu(c, cost.cpu_seconds):.3f}",
                    _mb(cost.pss_kib),
                ]
            )
    return rows


IDLE_HEADERS = [
    "configuration",
    "process",
    "idle connections held",
    "opened in s",
    "PSS MB before",
    "PSS MB holding them",
    "KiB per connection",
]


def idle_rows(r: Result) -> list[list[str]]:
    rows = []
    for c in r.configs:
        idle = c.idle
        if idle is None:
            continue
        for name, held in idle.held_kib.items():
            before = idle.baseline_kib.get(name, 0)
            per = (held - before) / idle.opened if idle.opened else math.nan
            opened = f"{idle.opened:,}" + (f" ({idle.failed:,} failed)" if idle.failed else "")
            rows.append(
                [c.name, name, opened, f"{idle.open_seconds:.1f}", _mb(before), _mb(held), f"{per:.1f}"]
            )
    return rows


TARGET_HEADERS = ["target", "measured", "verdict"]


def target_rows(r: Result) -> list[list[str]]:
    by_key = r.by_key()
    ambit, stunnel, none = by_key.get("ambit"), by_key.get("stunnel"), by_key.get(BASELINE)
    rows = []
    if ambit and stunnel:
        rate = _ratio(ambit.max_rate.requests_per_s, stunnel.max_rate.requests_per_s)
        rows.append(
            [
                f"ambit L4 max request rate ≥ {TARGET_RATE_VS_STUNNEL}× stunnel's",
                f"{_x(rate)} ({_rate(ambit.max_rate.requests_per_s)} vs "
                f"{_rate(stunnel.max_rate.requests_per_s)} req/s)",
                _verdict(rate >= TARGET_RATE_VS_STUNNEL),
            ]
        )
        bulk = {
            s: _ratio(ambit.bulk[s].gbit_per_s, stunnel.bulk[s].gbit_per_s)
            for s in ambit.bulk
            if s in stunnel.bulk
        }
        rows.append(
            [
                f"ambit L4 bulk throughput ≥ {TARGET_BULK_VS_STUNNEL}× stunnel's",
                ", ".join(f"{s} stream{'s' if s > 1 else ''}: {_x(v)}" for s, v in bulk.items()),
                _verdict(bool(bulk) and all(v >= TARGET_BULK_VS_STUNNEL for v in bulk.values())),
            ]
        )
    if ambit and none:
        added = ambit.fixed.latency_s["p99"] - none.fixed.latency_s["p99"]
        dropped = ", ".join(f"{c.name} {c.fixed.dropped + c.fixed.failed:,}" for c in (none, ambit))
        rows.append(
            [
                f"added p99 at {r.plan.rate:g} req/s (ztunnel pair) ≤ {TARGET_ADDED_P99_S * 1000:g} ms",
                f"{added * 1000:+.2f} ms ({_ms(ambit.fixed.latency_s['p99'])} vs "
                f"{_ms(none.fixed.latency_s['p99'])} ms, completed requests; dropped or failed of "
                f"{ambit.fixed.total:,}: {dropped})",
                _verdict(not math.isnan(added) and added <= TARGET_ADDED_P99_S),
            ]
        )
    if ambit and ambit.fixed.cost:
        _name, worst = max(ambit.fixed.cost.items(), key=lambda kv: kv[1].cpu_seconds)
        vcpu = _vcpu(ambit, worst.cpu_seconds)
        each = ", ".join(f"{n} {_vcpu(ambit, c.cpu_seconds):.3f}" for n, c in ambit.fixed.cost.items())
        rows.append(
            [
                f"ztunnel ≤ {TARGET_VCPU_PER_1000} vCPU per 1000 req/s (each)",
                f"{vcpu:.3f} ({each})",
                _verdict(vcpu <= TARGET_VCPU_PER_1000),
            ]
        )
        pss = max(c.pss_kib for c in ambit.fixed.cost.values()) * 1024 / 1e6
        each = ", ".join(f"{n} {_mb(c.pss_kib)}" for n, c in ambit.fixed.cost.items())
        rows.append(
            [
                f"ztunnel ≤ {TARGET_PSS_MB:g} MB PSS at {r.plan.rate:g} req/s (each)",
                f"{pss:.1f} MB ({each})",
                _verdict(pss <= TARGET_PSS_MB),
            ]
        )
    if ambit and ambit.idle is not None:
        idle = ambit.idle
        pss = max(idle.held_kib.values(), default=0) * 1024 / 1e6
        each = ", ".join(f"{n} {_mb(k)}" for n, k in idle.held_kib.items())
        label = f"{TARGET_IDLE_CONNECTIONS:,} idle connections: ztunnel ≤ {TARGET_IDLE_MB:g} MB PSS (each)"
        if idle.requested != TARGET_IDLE_CONNECTIONS:
            label += f" — this run held {idle.requested:,} (--quick), not {TARGET_IDLE_CONNECTIONS:,}"
        ok = pss <= TARGET_IDLE_MB and idle.failed == 0
        rows.append([label, f"{pss:.1f} MB with {idle.opened:,} held ({each})", _verdict(ok)])
    return rows


# -- text --------------------------------------------------------------------------------------------------


def machine(env: dict[str, str], tools: dict[str, str]) -> str:
    v = versions()
    return (
        f"{env['nproc']} CPUs ({env['cpu']}), {env['kernel']}; {env['python']}; {env['openssl']}; "
        f"h2 {v['h2']}; uvloop {v['uvloop']}; cryptography {v['cryptography']}; ambit {v['ambit']}; "
        f"{tools['nginx']}; {tools['wrk']}; {tools['iperf3']}; {tools['stunnel']} "
        f"({tools['stunnel_openssl']}); {env['date']}; 1-minute load average before the run {env['load']}"
    )


def methodology(r: Result) -> str:
    plan, topo = r.plan, r.topology
    mode = (
        f"**--quick**: short durations and {plan.idle_connections:,} idle connections instead of "
        f"{TARGET_IDLE_CONNECTIONS:,}; not a result to quote."
        if plan.quick
        else "Full run."
    )
    configs = "; ".join(f"**{c.name}**: {c.description}" for c in r.configs)
    bulk = ", ".join(str(s) for s in plan.bulk_streams)
    n = plan.rate_connections
    setup = (
        f"{mode} One 2-node cluster (`ambit up`): the client pod ({topo.client_ip}) on node 1 "
        f"({topo.client_node_ip}), the server pod ({topo.server_ip}) on node 2 ({topo.server_node_ip}) with "
        "nginx (1 worker, its own config, a 1 KiB file, access log off) and `iperf3 -s`. Every configuration "
        f"carries the same traffic between the same pods, one after the other: {configs}."
    )
    workloads = (
        f"Workloads, all run in the client pod. Fixed rate: `ambit app load --rate {plan.rate:g} "
        f"--duration {plan.rate_seconds:g} --mode keepalive --connections {n} --max-connections {n} --queue` "
        f"after a {plan.warmup_seconds:g} s warm-up run. It is open loop: latency counts from the scheduled "
        f"time, and a request that finds all {n} connections busy waits for one (the wait counts), so a slow "
        "proxy shows as latency, not as fewer requests. The percentiles are those of the completed requests; "
        "the second table also gives them counting every failed request as slower than any completed one. "
        "Max rate: "
        f"`wrk -t2 -c{plan.wrk_connections} -d{plan.wrk_seconds:g}s --latency`. Bulk: "
        f"`iperf3 -t {plan.bulk_seconds:g} -O {plan.bulk_omit_seconds:g} -P N -J` with N = {bulk}, the "
        f"receiver's rate. Connection setup: `wrk -t2 -c{plan.connect_connections} "
        f"-d{plan.connect_seconds:g}s -H 'Connection: close'` (a new TCP connection per request)."
    )
    cost = (
        "Cost: CPU seconds (utime+stime+cutime+cstime from /proc/PID/stat) of every proxy process and all "
        "its descendants, sampled every 100 ms and interpolated to the load client's first scheduled "
        "request and last response, divided by that window and by the achieved rate/1000; PSS from "
        "/proc/PID/smaps_rollup, the largest sample in the window. Scale: a client in the client pod opens "
        f"{plan.idle_connections:,} connections (one kept-alive 1 KiB request each, so each one is tunnelled "
        "end to end) and holds them idle while every proxy's PSS is read; stunnel (a thread per connection) "
        "holds at most 1,000, and every count is bounded by the hard RLIMIT_NOFILE of this machine. Ratios "
        "divide numbers of this run only."
    )
    return f"{setup}\n\n{workloads}\n\n{cost}"


def markdown(r: Result, env: dict[str, str], tools: dict[str, str], command: str) -> str:
    """The generated part of the section (between the markers)."""
    return "\n\n".join(
        [
            f"Command: `{command}`",
            f"Machine: {machine(env, tools)}",
            methodology(r),
            "Targets (same-run):",
            table(TARGET_HEADERS, target_rows(r)),
            "Absolute numbers (latency at the fixed rate; proxy columns sum every proxy process):",
            table(MAIN_HEADERS, main_rows(r)),
            "Latency added over no mesh at the fixed rate (completed requests), and the percentiles counting "
            "dropped and failed requests as the slowest:",
            table(ADDED_HEADERS, added_rows(r)),
            "Same-run ratios:",
            table(RATIO_HEADERS, ratio_rows(r)),
            "Cost per proxy process during the fixed-rate run:",
            table(COST_HEADERS, cost_rows(r)),
            "Idle connections:",
            table(IDLE_HEADERS, idle_rows(r)),
            f"Cluster up in {r.up_seconds:.1f} s; whole run {r.seconds:.0f} s.",
        ]
    )


def rich_tables(r: Result) -> list[Table]:
    specs = [
        ("Mesh side by side: targets", TARGET_HEADERS, target_rows(r)),
        ("Absolute numbers", MAIN_HEADERS, main_rows(r)),
        ("Added over no mesh; percentiles counting dropped requests", ADDED_HEADERS, added_rows(r)),
        ("Same-run ratios", RATIO_HEADERS, ratio_rows(r)),
        ("Cost per proxy process (fixed-rate run)", COST_HEADERS, cost_rows(r)),
        ("Idle connections", IDLE_HEADERS, idle_rows(r)),
    ]
    return shared_rich_tables(specs, left=("process", "measured"))


def update_markdown(path: Path, generated: str) -> None:
    """Put `generated` into this benchmark's section of `path`; see the module docstring."""
    replace_generated(path, SECTION_TITLE, GENERATED_BEGIN, GENERATED_END, generated)
