"""``ambit bench mesh``: no mesh, ambit L4, a stunnel L4 peer, ambit L7 (through a waypoint) and an nginx L7
peer, measured in one run on one 2-node cluster.

The cluster (``mesh_cluster``) is built once: nginx (1 KiB file) and an iperf3 server in the server pod on
node 2 behind a Service, an idle client pod on node 1. Each configuration of `CONFIGURATIONS` is set up in
turn, measured with the workloads of ``mesh_workloads`` (same pods, same tools), and torn down before the
next. The L4 rows (``mesh_configs``) address the server pod and run every workload; the L7 rows
(``mesh_waypoint``, ``mesh_nginx``) address the Service's cluster IP and run the HTTP workloads only (the
fixed rate and wrk's maximum: iperf3 is not HTTP, and connection setup and idle connections are the L4
rows' questions), and must prove their L7 proxy carried every completed request (`PathCheck`), or the row
fails. The cluster, every process started and every file are removed at the end, however the run ends.
This module owns the plan and the results; the rendering lives in ``mesh_report``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ambit.bench import mesh_workloads as w
from ambit.bench.mesh_cluster import BenchCluster, BenchError, Topology, missing_tools, nofile_limit
from ambit.bench.mesh_configs import AmbitL4, Configuration, NoMesh, StunnelL4
from ambit.bench.mesh_nginx import NginxL7
from ambit.bench.mesh_waypoint import AmbitL7

DEFAULT_CLUSTER = "bench-mesh"
CONFIGURATIONS: tuple[type[Configuration], ...] = (NoMesh, AmbitL4, StunnelL4, AmbitL7, NginxL7)


@dataclass(frozen=True, slots=True)
class Plan:
    """Durations and sizes of every workload; `quick` and `full` are the two presets."""

    quick: bool
    rate: float = 1000.0
    rate_connections: int = 4
    rate_seconds: float = 10.0
    warmup_seconds: float = 2.0
    wrk_seconds: float = 10.0
    wrk_connections: int = 16
    bulk_seconds: float = 10.0
    bulk_omit_seconds: float = 1.0
    bulk_streams: tuple[int, ...] = (1, 4)
    connect_seconds: float = 10.0
    connect_connections: int = 16
    idle_connections: int = 10_000
    idle_settle_seconds: float = 2.0

    @classmethod
    def full(cls) -> Plan:
        return cls(quick=False)

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            quick=True,
            rate_seconds=3.0,
            warmup_seconds=1.0,
            wrk_seconds=2.0,
            bulk_seconds=2.0,
            bulk_omit_seconds=0.0,
            connect_seconds=2.0,
            idle_connections=1_000,
            idle_settle_seconds=0.5,
        )


@dataclass(frozen=True, slots=True)
class PathCheck:
    """An L7 row's proof that its L7 proxy was on the path."""

    proxy: str  # what was asked (``Configuration.on_path``)
    completed: int  # requests the client completed with a 2xx in the measured runs (no warm-ups)
    counted: int  # requests the L7 proxy answered over the row's workloads, warm-ups included


@dataclass(frozen=True, slots=True)
class ConfigResult:
    key: str
    name: str
    description: str
    proxies: tuple[str, ...]
    fixed: w.FixedRate
    max_rate: w.WrkResult
    bulk: dict[int, w.Bulk]  # streams → result (empty for an L7 row)
    connect: w.WrkResult | None  # None for an L7 row
    idle: w.IdleScale | None
    seconds: float  # wall time of this configuration, set-up to teardown
    path: PathCheck | None = None  # L7 rows only


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    cluster: str
    topology: Topology
    configs: list[ConfigResult] = field(default_factory=list)
    up_seconds: float = 0.0
    seconds: float = 0.0

    def by_key(self) -> dict[str, ConfigResult]:
        return {c.key: c for c in self.configs}


Progress = Callable[[str], None]


def _check_path(config: Configuration, before: int, after: int, completed: int) -> PathCheck:
    check = PathCheck(config.on_path(), completed, after - before)
    if check.counted < completed or completed <= 0:
        raise BenchError(
            f"{config.name}: {check.proxy} counted {check.counted} requests while the client completed "
            f"{completed}: the traffic did not all go through it"
        )
    return check


def _l4_workloads(
    cluster: BenchCluster, config: Configuration, plan: Plan, progress: Progress
) -> tuple[dict[int, w.Bulk], w.WrkResult, w.IdleScale | None]:
    bulk = {}
    for streams in plan.bulk_streams:
        progress(f"{config.name}: iperf3, {streams} stream(s)")
        bulk[streams] = w.bulk(
            cluster, seconds=plan.bulk_seconds, omit=plan.bulk_omit_seconds, streams=streams
        )
    progress(f"{config.name}: a new connection per request")
    connect = w.connection_rate(cluster, seconds=plan.connect_seconds, connections=plan.connect_connections)
    idle = None
    if config.idle_scale:
        count = min(plan.idle_connections, config.idle_capacity(nofile_limit()), config.idle_max or 1 << 30)
        progress(f"{config.name}: holding {count:,} idle connections")
        config.raise_nofile(cluster)
        idle = w.idle_scale(
            cluster,
            config.proxies(cluster),
            connections=count,
            settle=plan.idle_settle_seconds,
        )
    return bulk, connect, idle


def _measure(cluster: BenchCluster, config: Configuration, plan: Plan, progress: Progress) -> ConfigResult:
    started = time.monotonic()
    progress(f"{config.name}: setting up")
    try:
        config.setup(cluster)
        proxies = config.proxies(cluster)
        host = config.address(cluster)
        before = config.counted_requests(cluster)
        progress(f"{config.name}: {plan.rate:g} req/s open-loop for {plan.rate_seconds:g} s")
        fixed = w.fixed_rate(
            cluster,
            proxies,
            rate=plan.rate,
            seconds=plan.rate_seconds,
            warmup=plan.warmup_seconds,
            connections=plan.rate_connections,
            host=host,
        )
        progress(f"{config.name}: wrk, {plan.wrk_connections} connections")
        max_rate = w.max_rate(
            cluster,
            seconds=plan.wrk_seconds,
            warmup=plan.warmup_seconds,
            connections=plan.wrk_connections,
            host=host,
        )
        path = None
        if before is not None:
            after = config.counted_requests(cluster)
            assert after is not None
            completed = fixed.total - fixed.dropped - fixed.failed
            completed += max(0, max_rate.requests - max_rate.errors)
            path = _check_path(config, before, after, completed)
        bulk: dict[int, w.Bulk] = {}
        connect, idle = None, None
        if not config.l7:
            bulk, connect, idle = _l4_workloads(cluster, config, plan, progress)
    except BaseException:
        progress(f"{config.name}: tearing down after a failure")
        with contextlib.suppress(Exception):  # the first failure is the one to report
            config.teardown(cluster)
        raise
    progress(f"{config.name}: tearing down")
    config.teardown(cluster)
    return ConfigResult(
        key=config.key,
        name=config.name,
        description=config.description,
        proxies=tuple(proxies),
        fixed=fixed,
        max_rate=max_rate,
        bulk=bulk,
        connect=connect,
        idle=idle,
        seconds=time.monotonic() - started,
        path=path,
    )


def run(
    plan: Plan,
    *,
    cluster_name: str = DEFAULT_CLUSTER,
    configurations: Sequence[type[Configuration]] = CONFIGURATIONS,
    progress: Progress = lambda _text: None,
) -> Result:
    """Build the cluster, measure every configuration, remove everything; see the module docstring."""
    missing = missing_tools()
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)} (scripts/sysdeps.sh installs them)")
    started = time.monotonic()
    with BenchCluster(cluster_name) as cluster:
        progress(f"ambit --cluster {cluster_name} up --nodes 2")
        topology = cluster.up()
        up_seconds = time.monotonic() - started
        results = [_measure(cluster, config(), plan, progress) for config in configurations]
        progress(f"ambit --cluster {cluster_name} down")
    return Result(
        plan=plan,
        cluster=cluster_name,
        topology=topology,
        configs=results,
        up_seconds=up_seconds,
        seconds=time.monotonic() - started,
    )
