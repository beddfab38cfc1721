"""``ambit store serve``: the cluster store server (the kubectl-like commands each have their own module).

``apply``, ``delete``, ``get`` and ``label`` live in their own modules of this package; how a command
finds the store is `ambit.cli.store_session`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import click
import uvloop

from ambit.cli.store_session import current_cluster, fail
from ambit.store import paths
from ambit.store.types import StoreError


@click.group("store")
def store() -> None:
    """The cluster store server (the API-server role)."""


@store.command("serve")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory (default: the cluster's, <run dir>/<cluster>/store).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Unix socket to serve on (default: <run dir>/<cluster>/store.sock).",
)
@click.option("--history", default=10_000, show_default=True, help="Watch events kept for resuming watchers.")
@click.option("--bookmark-interval", default=5.0, show_default=True, help="Seconds between idle BOOKMARKs.")
@click.option("--compact-every", default=1000, show_default=True, help="Fold the log after this many writes.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
def serve(
    *,
    directory: Path | None,
    socket_path: Path | None,
    history: int,
    bookmark_interval: float,
    compact_every: int,
    verbose: bool,
) -> None:
    """Serve a cluster's store on a Unix socket until SIGTERM or SIGINT."""
    from ambit.store.persist import PersistError
    from ambit.store.server import StoreServer

    cluster = current_cluster(None)
    try:
        directory = directory or paths.data_dir(cluster)
        socket_path = socket_path or paths.socket_path(cluster)
    except ValueError as exc:
        fail(f"error: {exc}")
    if history < 1 or compact_every < 1 or bookmark_interval <= 0:
        fail("error: --history, --compact-every and --bookmark-interval must be positive")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def main() -> None:
        server = StoreServer(
            directory,
            socket_path,
            history=history,
            bookmark_interval=bookmark_interval,
            compact_every=compact_every,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        try:
            await stop.wait()
        finally:
            logging.getLogger("ambit.store").info("store: shutting down")
            await server.close()

    try:
        uvloop.run(main())
    except (PersistError, StoreError, OSError) as exc:
        fail(f"error: the store cannot start: {exc}")
