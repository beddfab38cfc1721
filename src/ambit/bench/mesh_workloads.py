"""The workloads of ``ambit bench mesh``, each run from the client pod against the server pod.

The HTTP workloads take the address to send to (``host``): the server pod's IP for the L4 rows, the
Service's cluster IP for the L7 rows (``Configuration.address``); bulk, connection setup and the idle
connections address the server pod (L4 rows only).

* `fixed_rate`: ``ambit app load`` (open loop: latency counts from the scheduled time, so no coordinated
  omission) at a fixed rate over a few kept-alive connections, while `mesh_cost.CostSampler` samples every
  proxy process; CPU is taken between the load's own first scheduled request and its end;
* `max_rate`: wrk at 16 connections (``--latency``), req/s and p99;
* `bulk`: iperf3 with 1 and N streams (``-J``), Gbit/s as received;
* `connection_rate`: wrk with ``Connection: close`` (a new TCP connection per request), connections/s;
* `idle_scale`: ``ambit.bench.mesh_idle`` holds N idle tunnelled connections while the proxies' PSS is read.

The parsers (`parse_wrk`, `parse_iperf3`) are pure and read only what the tools print.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from ambit.bench.mesh_cluster import (
    AMBIT,
    HTTP_PORT,
    IPERF_PORT,
    PAYLOAD_PATH,
    BenchCluster,
    BenchError,
    json_object,
    nofile_limit,
)
from ambit.bench.mesh_cost import CostSampler, tree
from ambit.runtime.procs import pss_kib

PERCENTILES = ("p50", "p90", "p99", "p99.9")

# -- results -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """One proxy process tree during the fixed-rate window."""

    cpu_seconds: float
    pss_kib: int  # the largest PSS sampled in the window


@dataclass(frozen=True, slots=True)
class FixedRate:
    rate: float  # requested req/s
    achieved: float  # started req/s (the load client's own figure)
    window_s: float  # first scheduled request → last response
    total: int
    dropped: int  # never sent ('overloaded'): with --queue only the in-flight bound can cause it
    failed: int  # sent and failed (errors, timeouts)
    latency_s: dict[str, float]  # of the completed requests
    latency_all_s: dict[str, float]  # of every scheduled request; a dropped or failed one counts as +inf
    cost: dict[str, ProcessCost] = field(default_factory=dict)  # proxy name → cost

    def vcpu_per_1000(self, cpu_seconds: float) -> float:
        """CPUs busy per 1000 req/s: CPU seconds ÷ window ÷ (achieved rate / 1000)."""
        if self.window_s <= 0 or self.achieved <= 0:
            return 0.0
        return cpu_seconds / self.window_s / (self.achieved / 1000)


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests_per_s: float
    requests: int
    latency_s: dict[str, float]  # 50%, 75%, 90%, 99% as p50... (seconds)
    errors: int  # socket errors (connect + read + write + timeout) and non-2xx/3xx responses
    error_text: str = ""


@dataclass(frozen=True, slots=True)
class Bulk:
    gbit_per_s: float
    retransmits: int


@dataclass(frozen=True, slots=True)
class IdleScale:
    requested: int
    opened: int
    failed: int
    open_seconds: float
    baseline_kib: dict[str, int]  # proxy → PSS before opening
    held_kib: dict[str, int]  # proxy → PSS while every connection is held
    errors: dict[str, int] = field(default_factory=dict)


# -- parsers -----------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise BenchError(f"wrk: cannot read the duration {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Requests/sec, the ``--latency`` distribution, socket errors and non-2xx/3xx responses."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, flags=re.MULTILINE)
    requests = re.search(r"^\s*(\d+) requests in ", output, flags=re.MULTILINE)
    if rps is None or requests is None:
        raise BenchError(f"wrk printed no result:\n{output}")
    latency = {}
    for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, flags=re.MULTILINE):
        latency[f"p{pct}"] = _duration(value)
    errors, texts = 0, []
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket is not None:
        errors += sum(int(n) for n in socket.groups())
        texts.append(socket.group(0))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non2xx is not None:
        errors += int(non2xx.group(1))
        texts.append(non2xx.group(0))
    return WrkResult(float(rps.group(1)), int(requests.group(1)), latency, errors, "; ".join(texts))


def parse_iperf3(output: str) -> Bulk:
    """The receiver's bits/s of the whole test (``end.sum_received``) from ``iperf3 -J``."""
    data = json_object(output, "iperf3 -J")
    if "error" in data:
        raise BenchError(f"iperf3: {data['error']}")
    try:
        received = data["end"]["sum_received"]["bits_per_second"]
        retransmits = int(data["end"].get("sum_sent", {}).get("retransmits", 0))
    except (KeyError, TypeError) as exc:
        raise BenchError(f"iperf3 -J has no end.sum_received: {output[:300]!r}") from exc
    return Bulk(float(received) / 1e9, retransmits)


# -- workloads ---------------------------------------------------------------------------------------------


def _url(cluster: BenchCluster, host: str | None = None) -> str:
    assert cluster.topology is not None
    return f"http://{host or cluster.topology.server_ip}:{HTTP_PORT}{PAYLOAD_PATH}"


def _load(
    cluster: BenchCluster, rate: float, seconds: float, connections: int, out: str, *, host: str | None
) -> None:
    assert cluster.topology is not None
    argv = [
        AMBIT, "app", "load", _url(cluster, host),
        "--rate", f"{rate:g}", "--duration", f"{seconds:g}", "--mode", "keepalive",
        "--connections", str(connections), "--max-connections", str(connections), "--queue", "--json", out,
    ]  # fmt: skip
    cluster.run_in(cluster.topology.client_netns, argv, timeout=seconds + 60)


def fixed_rate(
    cluster: BenchCluster,
    proxies: Mapping[str, int],
    *,
    rate: float,
    seconds: float,
    warmup: float,
    connections: int,
    host: str | None = None,
) -> FixedRate:
    """Open-loop load at `rate` for `seconds` (after a `warmup` run), sampling every proxy process."""
    out = str(cluster.dir / "load.json")
    if warmup > 0:
        _load(cluster, rate, warmup, connections, out, host=host)
    with CostSampler(proxies) as sampler:
        _load(cluster, rate, seconds, connections, out, host=host)
    with open(out, encoding="utf-8") as f:
        data = json.load(f)
    summary = data["summary"]
    start = float(data["started_monotonic"])
    end = start + float(data["elapsed"])
    cost = {}
    for name, samples in sampler.samples.items():
        cpu = samples.cpu_at(end) - samples.cpu_at(start)
        cost[name] = ProcessCost(cpu, samples.max_pss_between(start, end))
    records = data["records"]
    ok = sorted(float(r["latency"]) for r in records if r["outcome"] == "ok")
    dropped = sum(1 for r in records if r["outcome"] == "overloaded")
    every = ok + [math.inf] * (len(records) - len(ok))
    return FixedRate(
        rate=rate,
        achieved=float(summary["achieved_rate"]),
        window_s=end - start,
        total=len(records),
        dropped=dropped,
        failed=len(records) - len(ok) - dropped,
        latency_s={p: percentile(ok, float(p[1:])) for p in PERCENTILES},
        latency_all_s={p: percentile(every, float(p[1:])) for p in PERCENTILES},
        cost=cost,
    )


def percentile(ascending: list[float], p: float) -> float:
    """Nearest rank; NaN without values."""
    if not ascending:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ascending)))
    return ascending[min(rank, len(ascending)) - 1]


def _wrk(
    cluster: BenchCluster, seconds: float, connections: int, extra: list[str], host: str | None = None
) -> WrkResult:
    assert cluster.topology is not None
    argv = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        *extra,
        _url(cluster, host),
    ]
    return parse_wrk(cluster.run_in(cluster.topology.client_netns, argv, timeout=seconds + 60))


def max_rate(
    cluster: BenchCluster, *, seconds: float, warmup: float, connections: int, host: str | None = None
) -> WrkResult:
    """wrk's closed-loop maximum over `connections` kept-alive connections."""
    if warmup >= 1:
        _wrk(cluster, warmup, connections, [], host)
    return _wrk(cluster, seconds, connections, [], host)


def connection_rate(cluster: BenchCluster, *, seconds: float, connections: int) -> WrkResult:
    """wrk with ``Connection: close``: every request on a new TCP connection (nginx closes after it)."""
    return _wrk(cluster, seconds, connections, ["-H", "Connection: close"])


def bulk(cluster: BenchCluster, *, seconds: float, omit: float, streams: int) -> Bulk:
    assert cluster.topology is not None
    argv = [
        "iperf3", "-c", cluster.topology.server_ip, "-p", str(IPERF_PORT), "-t", f"{max(1, round(seconds))}",
        "-O", f"{round(omit)}", "-P", str(streams), "-J",
    ]  # fmt: skip
    output = cluster.run_in(cluster.topology.client_netns, argv, timeout=seconds + omit + 60)
    return parse_iperf3(output)


def idle_scale(
    cluster: BenchCluster, proxies: Mapping[str, int], *, connections: int, settle: float
) -> IdleScale:
    """Open `connections` kept-alive connections (one request each), hold them, read every proxy's PSS."""
    assert cluster.topology is not None
    baseline = {name: pss_kib(tree(pid)) for name, pid in proxies.items()}
    argv = [
        sys.executable, "-m", "ambit.bench.mesh_idle",
        cluster.topology.server_ip, str(HTTP_PORT), PAYLOAD_PATH, str(connections),
    ]  # fmt: skip
    proc = cluster.start_in(
        cluster.topology.client_netns,
        argv,
        nofile=nofile_limit(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        log=cluster.dir / "idle-client.log",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            log = (cluster.dir / "idle-client.log").read_text(errors="replace")[-2000:]
            raise BenchError(f"the idle-connection client exited ({proc.wait()}):\n{log}")
        report = json_object(line.decode(), "idle client")
        time.sleep(settle)  # let buffers and timers settle before reading memory
        held: dict[str, int] = {}
        for _ in range(3):  # the largest of three readings
            for name, pid in proxies.items():
                held[name] = max(held.get(name, 0), pss_kib(tree(pid)))
            time.sleep(0.2)
    finally:
        cluster.stop(proc)
    return IdleScale(
        requested=connections,
        opened=int(report["open"]),
        failed=int(report["failed"]),
        open_seconds=float(report["seconds"]),
        baseline_kib=baseline,
        held_kib=held,
        errors={str(k): int(v) for k, v in report.get("errors", {}).items()},
    )
