"""Rendering of ``ambit bench mesh`` results: rich tables, the targets, and the BENCHMARKS.md section.

Numbers are only formatted and divided here; every value comes from a ``mesh.Result``. Tables have one
row per configuration (or per pair of configurations for the ratios), so a configuration added to
``mesh.CONFIGURATIONS`` shows up everywhere without a change here; a workload a row did not run (an L7 row
runs no iperf3, connection setup or idle connections) shows as "-". The L7 rows add the waypoint's target,
the ratio to the nginx peer and the table proving each L7 proxy was on the path. `update_markdown` regenerates
only the block between this section's markers (``markdown.replace_generated``).
"""

from __future__ import annotations

import math
from pathlib import Path

from rich.table import Table

from ambit.bench.markdown import package_version, replace_generated, table
from ambit.bench.markdown import rich_tables as shared_rich_tables
from ambit.bench.mesh import ConfigResult, Result
from ambit.bench.mesh_format import (
    cost_total,
    fmt_added_ms,
    fmt_gbit,
    fmt_mb,
    fmt_ms,
    fmt_rate,
    fmt_x,
    ratio_of,
    vcpu_of,
    verdict,
)
from ambit.bench.mesh_workloads import PERCENTILES

SECTION_TITLE = "## Mesh side by side (ambit bench mesh)"
GENERATED_BEGIN = "<!-- ambit bench mesh: generated, begin -->"
GENERATED_END = "<!-- ambit bench mesh: generated, end -->"

BASELINE = "none"
L7_AMBIT, L7_PEER = "ambit-l7", "nginx-l7"
# Pairs compared by ratio, besides every configuration against the baseline.
PEERS = (("ambit", "stunnel"), (L7_AMBIT, L7_PEER), (L7_AMBIT, "ambit"))
WAYPOINT = "waypoint"  # the waypoint's cost row in the ambit L7 configuration

TARGET_RATE_VS_STUNNEL = 1.2
TARGET_BULK_VS_STUNNEL = 1.0
TARGET_ADDED_P99_S = 0.5e-3
TARGET_VCPU_PER_1000 = 0.06
TARGET_PSS_MB = 60.0
TARGET_IDLE_MB = 80.0
TARGET_IDLE_CONNECTIONS = 10_000
TARGET_WAYPOINT_VCPU_PER_1000 = 0.25  # Istio's figure for its Envoy waypoint
STATED = "stated"  # the verdict of a figure the issue asks to state, with no threshold


def versions() -> dict[str, str]:
    return {dist: package_version(dist) for dist in ("h2", "uvloop", "cryptography", "ambit")}


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
        cpu, pss = cost_total(c)
        rows.append(
            [
                c.name,
                *(fmt_ms(c.fixed.latency_s[p]) for p in PERCENTILES),
                f"{c.fixed.dropped} / {c.fixed.failed}",
                fmt_rate(c.max_rate.requests_per_s),
                fmt_ms(c.max_rate.latency_s.get("p99", math.nan)),
                fmt_gbit(c.bulk[1].gbit_per_s) if 1 in c.bulk else "-",
                fmt_gbit(c.bulk[4].gbit_per_s) if 4 in c.bulk else "-",
                fmt_rate(c.connect.requests_per_s) if c.connect else "-",
                f"{vcpu_of(c, cpu):.3f}" if c.proxies else "-",
                fmt_mb(pss) if c.proxies else "-",
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
                    fmt_added_ms(c.fixed.latency_s[p], base.fixed.latency_s[p]) if base else "-"
                    for p in PERCENTILES
                ),
                *(fmt_ms(c.fixed.latency_all_s[p]) for p in PERCENTILES),
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
                fmt_x(ratio_of(a.max_rate.requests_per_s, b.max_rate.requests_per_s)),
                fmt_x(
                    ratio_of(
                        a.max_rate.latency_s.get("p99", math.nan), b.max_rate.latency_s.get("p99", math.nan)
                    )
                ),
                *(
                    fmt_x(ratio_of(a.bulk[s].gbit_per_s, b.bulk[s].gbit_per_s))
                    if s in a.bulk and s in b.bulk
                    else "-"
                    for s in (1, 4)
                ),
                fmt_x(ratio_of(a.connect.requests_per_s, b.connect.requests_per_s))
                if a.connect and b.connect
                else "-",
                fmt_x(ratio_of(a.fixed.latency_s["p99"], b.fixed.latency_s["p99"])),
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
                    fmt_rate(c.fixed.achieved),
                    f"{vcpu_of(c, cost.cpu_seconds):.3f}",
                    fmt_mb(cost.pss_kib),
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
                [c.name, name, opened, f"{idle.open_seconds:.1f}", fmt_mb(before), fmt_mb(held), f"{per:.1f}"]
            )
    return rows


PATH_HEADERS = [
    "configuration",
    "L7 proxy asked",
    "requests completed (2xx, measured runs)",
    "requests it counted (warm-ups too)",
]


def path_rows(r: Result) -> list[list[str]]:
    return [
        [c.name, c.path.proxy, f"{c.path.completed:,}", f"{c.path.counted:,}"]
        for c in r.configs
        if c.path is not None
    ]


TARGET_HEADERS = ["target", "measured", "verdict"]


def l7_target_rows(r: Result) -> list[list[str]]:
    """The waypoint's vCPU per 1000 req/s and the same-run rate ratio of ambit L7 to the nginx peer."""
    by_key = r.by_key()
    ambit, peer = by_key.get(L7_AMBIT), by_key.get(L7_PEER)
    rows = []
    if ambit and WAYPOINT in ambit.fixed.cost:
        waypoint = ambit.fixed.cost[WAYPOINT]
        vcpu = vcpu_of(ambit, waypoint.cpu_seconds)
        measured = f"{vcpu:.3f} at {fmt_rate(ambit.fixed.achieved)} req/s, PSS {fmt_mb(waypoint.pss_kib)} MB"
        if peer and "nginx" in peer.fixed.cost:
            nginx = peer.fixed.cost["nginx"]
            measured += (
                f" (the peer's nginx: {vcpu_of(peer, nginx.cpu_seconds):.3f}, PSS {fmt_mb(nginx.pss_kib)} MB)"
            )
        rows.append(
            [
                f"waypoint ≤ {TARGET_WAYPOINT_VCPU_PER_1000} vCPU per 1000 req/s (Istio's Envoy waypoint)",
                measured,
                verdict(vcpu <= TARGET_WAYPOINT_VCPU_PER_1000),
            ]
        )
    if ambit and peer:
        rate = ratio_of(ambit.max_rate.requests_per_s, peer.max_rate.requests_per_s)
        rows.append(
            [
                "ambit L7 max request rate vs the nginx L7 peer's (no threshold)",
                f"{fmt_x(rate)} ({fmt_rate(ambit.max_rate.requests_per_s)} vs "
                f"{fmt_rate(peer.max_rate.requests_per_s)} req/s)",
                STATED,
            ]
        )
    return rows


def target_rows(r: Result) -> list[list[str]]:
    by_key = r.by_key()
    ambit, stunnel, none = by_key.get("ambit"), by_key.get("stunnel"), by_key.get(BASELINE)
    rows = []
    if ambit and stunnel:
        rate = ratio_of(ambit.max_rate.requests_per_s, stunnel.max_rate.requests_per_s)
        rows.append(
            [
                f"ambit L4 max request rate ≥ {TARGET_RATE_VS_STUNNEL}× stunnel's",
                f"{fmt_x(rate)} ({fmt_rate(ambit.max_rate.requests_per_s)} vs "
                f"{fmt_rate(stunnel.max_rate.requests_per_s)} req/s)",
                verdict(rate >= TARGET_RATE_VS_STUNNEL),
            ]
        )
        bulk = {
            s: ratio_of(ambit.bulk[s].gbit_per_s, stunnel.bulk[s].gbit_per_s)
            for s in ambit.bulk
            if s in stunnel.bulk
        }
        rows.append(
            [
                f"ambit L4 bulk throughput ≥ {TARGET_BULK_VS_STUNNEL}× stunnel's",
                ", ".join(f"{s} stream{'s' if s > 1 else ''}: {fmt_x(v)}" for s, v in bulk.items()),
                verdict(bool(bulk) and all(v >= TARGET_BULK_VS_STUNNEL for v in bulk.values())),
            ]
        )
    if ambit and none:
        added = ambit.fixed.latency_s["p99"] - none.fixed.latency_s["p99"]
        dropped = ", ".join(f"{c.name} {c.fixed.dropped + c.fixed.failed:,}" for c in (none, ambit))
        rows.append(
            [
                f"added p99 at {r.plan.rate:g} req/s (ztunnel pair) ≤ {TARGET_ADDED_P99_S * 1000:g} ms",
                f"{added * 1000:+.2f} ms ({fmt_ms(ambit.fixed.latency_s['p99'])} vs "
                f"{fmt_ms(none.fixed.latency_s['p99'])} ms, completed requests; dropped or failed of "
                f"{ambit.fixed.total:,}: {dropped})",
                verdict(not math.isnan(added) and added <= TARGET_ADDED_P99_S),
            ]
        )
    if ambit and ambit.fixed.cost:
        _name, worst = max(ambit.fixed.cost.items(), key=lambda kv: kv[1].cpu_seconds)
        vcpu = vcpu_of(ambit, worst.cpu_seconds)
        each = ", ".join(f"{n} {vcpu_of(ambit, c.cpu_seconds):.3f}" for n, c in ambit.fixed.cost.items())
        rows.append(
            [
                f"ztunnel ≤ {TARGET_VCPU_PER_1000} vCPU per 1000 req/s (each)",
                f"{vcpu:.3f} ({each})",
                verdict(vcpu <= TARGET_VCPU_PER_1000),
            ]
        )
        pss = max(c.pss_kib for c in ambit.fixed.cost.values()) * 1024 / 1e6
        each = ", ".join(f"{n} {fmt_mb(c.pss_kib)}" for n, c in ambit.fixed.cost.items())
        rows.append(
            [
                f"ztunnel ≤ {TARGET_PSS_MB:g} MB PSS at {r.plan.rate:g} req/s (each)",
                f"{pss:.1f} MB ({each})",
                verdict(pss <= TARGET_PSS_MB),
            ]
        )
    if ambit and ambit.idle is not None:
        idle = ambit.idle
        pss = max(idle.held_kib.values(), default=0) * 1024 / 1e6
        each = ", ".join(f"{n} {fmt_mb(k)}" for n, k in idle.held_kib.items())
        label = f"{TARGET_IDLE_CONNECTIONS:,} idle connections: ztunnel ≤ {TARGET_IDLE_MB:g} MB PSS (each)"
        if idle.requested != TARGET_IDLE_CONNECTIONS:
            label += f" — this run held {idle.requested:,} (--quick), not {TARGET_IDLE_CONNECTIONS:,}"
        ok = pss <= TARGET_IDLE_MB and idle.failed == 0
        rows.append([label, f"{pss:.1f} MB with {idle.opened:,} held ({each})", verdict(ok)])
    return rows + l7_target_rows(r)


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
        f"carries the same traffic between the same pods, one after the other: {configs}. The L4 rows send "
        f"to the server pod's IP; the L7 rows to Service `server`'s cluster IP ({topo.server_vip}), since a "
        "waypoint binds to service-addressed traffic (with no proxy on the path that address costs one DNAT "
        "in node 1's namespace, the runtime's kube-proxy rule; the nginx peer's steering rule takes the "
        "packet before it)."
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
        f"-d{plan.connect_seconds:g}s -H 'Connection: close'` (a new TCP connection per request). The L7 "
        "rows run the fixed rate and the max rate only: iperf3 is not HTTP, and connection setup and idle "
        "connections are the L4 rows' questions."
    )
    l7 = (
        "L7 rows. ambit L7: one waypoint replica (`ambit waypoint apply --replicas 1`) on node 2, the "
        "server's node. Nothing in a waypoint Gateway chooses a node and the scheduler would pick node 1 "
        "(fewest pods, then the lowest name), so an idle placeholder pod runs on node 1 while the replica is "
        "scheduled and is removed once it is bound; a replica anywhere else fails the row. The waypoint is "
        "one single-threaded Python process and writes its access log (one JSON line per request; it has no "
        "switch). nginx L7: 1 worker process, so both L7 proxies have one core's worth of event loop; access "
        "log off; TLS 1.3 in with the client certificate verified, TLS 1.3 out presenting its own "
        "certificate over kept-alive upstream connections; it does not verify the upstream's certificate "
        "(nginx checks a DNS name or IP and the cluster CA's certificates carry a SPIFFE URI only), node 2's "
        "stunnel verifies nginx's. Each L7 row asks its L7 proxy how many requests it answered (the "
        "waypoint's `istio_requests_total`, nginx's `stub_status`) before and after its workloads, and "
        "fails unless the count covers every request the client completed: a row that went around its "
        "proxy cannot report. The waypoint's own CPU and PSS are its cost row `waypoint`; its target is "
        "about it alone."
    )
    cost = (
        "Cost: CPU seconds (utime+stime+cutime+cstime from /proc/PID/stat) of every proxy process and all "
        "its descendants, sampled every second and interpolated to the load client's first scheduled "
        "request and last response, divided by that window and by the achieved rate/1000; PSS from "
        "/proc/PID/smaps_rollup, the largest sample in the window. Scale: a client in the client pod opens "
        f"{plan.idle_connections:,} connections (one kept-alive 1 KiB request each, so each one is tunnelled "
        "end to end) and holds them idle while every proxy's PSS is read; stunnel (a thread per connection) "
        "holds at most 1,000, and every count is bounded by the hard RLIMIT_NOFILE of this machine. Ratios "
        "divide numbers of this run only."
    )
    return f"{setup}\n\n{workloads}\n\n{l7}\n\n{cost}"


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
            "L7 proxy on the path (each L7 row's proof):",
            table(PATH_HEADERS, path_rows(r)),
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
        ("L7 proxy on the path", PATH_HEADERS, path_rows(r)),
    ]
    return shared_rich_tables(specs, left=("process", "measured"))


def update_markdown(path: Path, generated: str) -> None:
    """Put `generated` into this benchmark's section of `path`; see the module docstring."""
    replace_generated(path, SECTION_TITLE, GENERATED_BEGIN, GENERATED_END, generated)
