"""`ambit controlplane`: run one control-plane replica (xDS + CA on 15012, HTTP on 15014).

This is the edge where the replica's object source is chosen: the cluster store's client
(``StoreClient`` on ``--store-socket``), handed to ``ControlPlane`` as an ``ObjectSource``; and where
the options ``ControlPlaneConfig`` does not carry are set on the replica before it starts: the
workload-certificate policy (``--workload-cert-ttl``, ``--outage-tolerance``:
``ambit.control.ca_server.WorkloadCertPolicy``) and the chaos tests' fault route
(``--test-fault-endpoints``: ``POST /debug/fault/ca`` on the HTTP port, ``ambit.control.http``).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
import uvloop

from ambit.cli import GlobalOptions
from ambit.cli.go_duration import SECOND, GoDuration
from ambit.resources.names import CA_SUBDIR
from ambit.store import StoreClient, paths

if TYPE_CHECKING:
    from ambit.control.app import ControlPlaneConfig
    from ambit.control.ca_server import WorkloadCertPolicy


def nanos_to_timedelta(nanos: int | None) -> timedelta | None:
    """A GoDuration option's nanoseconds as a timedelta (microsecond precision); None stays None."""
    return None if nanos is None else timedelta(seconds=nanos / SECOND)


@click.command("controlplane")
@click.option(
    "--store-socket", type=click.Path(path_type=Path), help="The store's socket (default: the cluster's)."
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    help="Holds ca/ with the CA keys (default: the cluster's).",
)
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--root-namespace", default="istio-system", show_default=True)
@click.option("--listen", default="0.0.0.0", show_default=True, help="Address of both ports.")
@click.option("--grpc-port", default=15012, show_default=True, type=int)
@click.option(
    "--token-port",
    default=15013,
    show_default=True,
    type=int,
    help="The CA for callers with a pod-bound token and no certificate (server-only TLS); 0: off.",
)
@click.option("--http-port", default=15014, show_default=True, type=int)
@click.option(
    "--debounce", default=0.1, show_default=True, type=float, help="Seconds a burst is merged over."
)
@click.option("--max-connection-age", default=1800.0, show_default=True, type=float)
@click.option("--no-waypoint-controller", is_flag=True, help="Do not run the waypoint controller here.")
@click.option(
    "--workload-cert-ttl",
    type=GoDuration(),
    default=None,
    help="Longest workload certificate the CA signs, and the lifetime when the caller names none (Go "
    "duration: 60s, 10m, 24h; at least 10s). Default: as the caller asks (24h), at most 90 days.",
)
@click.option(
    "--outage-tolerance",
    type=GoDuration(),
    default=None,
    help="CA outage the workloads must survive: no workload certificate is shorter than twice this "
    "(refreshed at half-life, it then outlives such an outage). A --workload-cert-ttl below twice "
    "this is an error.",
)
@click.option(
    "--test-fault-endpoints",
    is_flag=True,
    help="FOR CHAOS TESTS ONLY: serve POST /debug/fault/ca on the HTTP port (state=refuse makes the CA "
    "refuse every request while xDS serves on). Never in production.",
)
@click.pass_context
def controlplane(
    ctx: click.Context,
    store_socket: Path | None,
    state_dir: Path | None,
    trust_domain: str,
    root_namespace: str,
    listen: str,
    grpc_port: int,
    token_port: int,
    http_port: int,
    debounce: float,
    max_connection_age: float,
    no_waypoint_controller: bool,
    workload_cert_ttl: int | None,
    outage_tolerance: int | None,
    test_fault_endpoints: bool,
) -> None:
    """Run one control-plane replica until SIGTERM/SIGINT (every replica is complete: no leader)."""
    # Imported here: every ambit process (a ztunnel's too) imports the CLI, and the control plane
    # (with its translation, CA and token verification) is not theirs to carry in memory.
    from ambit.control.app import ControlPlaneConfig
    from ambit.control.ca_server import WorkloadCertPolicy

    try:
        policy = WorkloadCertPolicy.resolve(
            nanos_to_timedelta(workload_cert_ttl), nanos_to_timedelta(outage_tolerance)
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc

    cluster = ctx.find_object(GlobalOptions)
    name = cluster.cluster if cluster is not None else "ambit"
    socket = store_socket or paths.socket_path(name)
    config = ControlPlaneConfig(
        state_dir=state_dir or paths.cluster_dir(name) / "state",
        trust_domain=trust_domain,
        root_namespace=root_namespace,
        grpc_host=listen,
        grpc_port=grpc_port,
        token_port=token_port or None,
        http_host=listen,
        http_port=http_port,
        debounce=debounce,
        max_connection_age=max_connection_age,
        run_waypoint_controller=not no_waypoint_controller,
    )
    if not (config.state_dir / CA_SUBDIR / "root-cert.pem").exists():
        raise click.ClickException(
            f"no CA at {config.state_dir / 'ca'}: create one with `ambit ca init --dir ...`"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(_serve(config, socket, policy, test_fault_endpoints))


async def _serve(
    config: ControlPlaneConfig, store_socket: Path, policy: WorkloadCertPolicy, fault_endpoints: bool
) -> None:
    from ambit.control.app import ControlPlane

    async with StoreClient(store_socket) as source:
        plane = ControlPlane(config, source)
        # Not in ControlPlaneConfig (yet): set on the CA service and the HTTP port before they serve.
        plane.ca_service.policy = policy
        plane.http.fault_endpoints = fault_endpoints
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await plane.start()
        try:
            await stop.wait()
        finally:
            await plane.close()
