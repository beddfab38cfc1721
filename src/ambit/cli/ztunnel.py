"""`ambit ztunnel`: run one node's ztunnel (started by the runtime inside the node's netns)."""

from __future__ import annotations

import asyncio
import logging
import signal

import click
import uvloop

from ambit.cli import GlobalOptions
from ambit.proxy.control_plane import bootstrap_addresses
from ambit.store import paths
from ambit.ztunnel.app import AppConfig, ZtunnelApp, node_dir
from ambit.ztunnel.config import ZtunnelConfig


@click.command("ztunnel")
@click.option("--node", required=True, help="This node's name.")
@click.option("--cluster", "cluster_name", default=None, help="The cluster (default: the global --cluster).")
@click.option("--xds", multiple=True, help="Bootstrap control-plane address IP:PORT (repeatable).")
@click.option("--trust-domain", default="cluster.local", show_default=True)
@click.option("--drain-deadline", default=25.0, show_default=True, type=float, help="Seconds, on SIGTERM.")
@click.option(
    "--pod-wait", default=5.0, show_default=True, type=float, help="Seconds to wait for a pod's config."
)
@click.pass_context
def ztunnel(
    ctx: click.Context,
    node: str,
    cluster_name: str | None,
    xds: tuple[str, ...],
    trust_domain: str,
    drain_deadline: float,
    pod_wait: float,
) -> None:
    """Run the node's ztunnel until SIGTERM/SIGINT (then drain and exit 0)."""
    if cluster_name is None:
        opts = ctx.find_object(GlobalOptions)
        cluster_name = opts.cluster if opts is not None else "ambit"
    try:
        bootstrap = bootstrap_addresses(xds)
        config = AppConfig(
            ztunnel=ZtunnelConfig(node=node, trust_domain=trust_domain, drain_deadline=drain_deadline),
            node_dir=node_dir(paths.cluster_dir(cluster_name), node),
            bootstrap=bootstrap,
            pod_wait=pod_wait,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not config.credential.cert.exists():
        raise click.ClickException(f"no node credential at {config.credential.cert}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(_serve(config))


async def _serve(config: AppConfig) -> None:
    stop = asyncio.Event()
    app = ZtunnelApp(config, on_quit=stop.set)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        await stop.wait()
        logging.getLogger(__name__).info("draining (deadline %.0f s)", config.ztunnel.drain_deadline)
        await app.drain()
    finally:
        await app.close()
