"""`ambit controlplane`: run one control-plane replica (xDS + CA on 15012, HTTP on 15014).

This is the edge where the replica's object source is chosen: the cluster store's client
(``StoreClient`` on ``--store-socket``), handed to ``ControlPlane`` as an ``ObjectSource``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import click
import uvloop

from ambit.cli import GlobalOptions
from ambit.resources.names import CA_SUBDIR
from ambit.store import StoreClient, paths

if TYPE_CHECKING:
    from ambit.control.app import ControlPlaneConfig


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
) -> None:
    """Run one control-plane replica until SIGTERM/SIGINT (every replica is complete: no leader)."""
    # Imported here: every ambit process (a ztunnel's too) imports the CLI, and the control plane
    # (with its translation, CA and token verification) is not theirs to carry in memory.
    from ambit.control.app import ControlPlaneConfig

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
    uvloop.run(_serve(config, socket))


async def _serve(config: ControlPlaneConfig, store_socket: Path) -> None:
    from ambit.control.app import ControlPlane

    async with StoreClient(store_socket) as source:
        plane = ControlPlane(config, source)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await plane.start()
        try:
            await stop.wait()
        finally:
            await plane.close()
