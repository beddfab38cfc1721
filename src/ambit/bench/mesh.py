"""``ambit bench mesh``: no mesh, ambit L4 and a stunnel L4 peer, measured in one run on one 2-node cluster.

The cluster (``mesh_cluster``) is built once: nginx (1 KiB file) and an iperf3 server in the server pod on
node 2, an idle client pod on node 1. Each configuration of ``mesh_configs.CONFIGURATIONS`` is set up in
turn, measured with every workload of ``mesh_workloads`` (same pods, same path, same tools), and torn
down before the next. The cluster, every process started and every file are removed at the end, however
the run ends. This module owns the plan and the results; the rendering lives in ``mesh_report``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ambit.bench import mesh_workloads as w
from ambit.bench.mesh_cluster import BenchCluster, BenchError, Topology, missing_tools, nofile_limit
from ambit.bench.mesh_configs import CONFIGURATIONS, Configuration

DEFAULT_CLUSTER = "bench-mesh"


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
class ConfigResult:
    key: str
    name: str
    description: str
    proxies: tuple[str, ...]
    fixed: w.FixedRate
    max_rate: w.WrkResult
    bulk: dict[int, w.Bulk]  # streams → result
    connect: w.WrkResult
    idle: w.IdleScale | None
    seconds: float  # wall time of this configuration, set-up to teardown


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


def _measure(cluster: BenchCluster, config: Configuration, plan: Plan, progress: Progress) -> ConfigResult:
    started = time.monotonic()
    progress(f"{config.name}: setting up")
    try:
        config.setup(cluster)
        proxies = config.proxies(cluster)
        progress(f"{config.name}: {plan.rate:g} req/s open-loop for {plan.rate_seconds:g} s")
        fixed = w.fixed_rate(
            cluster,
            proxies,
            rate=plan.rate,
            seconds=plan.rate_seconds,
            warmup=plan.warmup_seconds,
            connections=plan.rate_connections,
        )
        progress(f"{config.name}: wrk, {plan.wrk_connections} connections")
        max_rate = w.max_rate(
            cluster, seconds=plan.wrk_seconds, warmup=plan.warmup_seconds, connections=plan.wrk_connections
        )
        bulk = {}
        for streams in plan.bulk_streams:
            progress(f"{config.name}: iperf3, {streams} stream(s)")
            bulk[streams] = w.bulk(
                cluster, seconds=plan.bulk_seconds, omit=plan.bulk_omit_seconds, streams=streams
            )
        progress(f"{config.name}: a new connection per request")
        connect = w.connection_rate(
            cluster, seconds=plan.connect_seconds, connections=plan.connect_connections
        )
        idle = None
        if config.idle_scale:
            count = min(
                plan.idle_connections, config.idle_capacity(nofile_limit()), config.idle_max or 1 << 30
            )
            progress(f"{config.name}: holding {count:,} idle connections")
            config.raise_nofile(cluster)
            idle = w.idle_scale(
                cluster,
                config.proxies(cluster),
                connections=count,
                settle=plan.idle_settle_seconds,
            )
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
