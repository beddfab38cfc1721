"""Reaching a cluster's store from a command: ``--cluster``/``--store-socket``, running a client, errors.

Every store command finds the store of ``--cluster`` (``/run/ambit/<cluster>/store.sock``, base
``$AMBIT_RUN_DIR``) unless ``--store-socket`` names one; a failure is one kubectl-style line on stderr.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import uvloop

from ambit.cli import GlobalOptions
from ambit.store import paths
from ambit.store.client import StoreClient
from ambit.store.types import StoreError, Unavailable

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A user-facing failure: the message goes to stderr as is (kubectl's style), exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(self.format_message(), err=True)


def fail(message: str) -> NoReturn:
    """Stop the command with `message` on stderr, exit status 1."""
    raise CliError(message)


# -- finding the store ---------------------------------------------------------------------------


def store_options(func: _F) -> _F:
    """Add ``--store-socket`` and ``--cluster`` to a store command."""
    func = click.option(
        "--store-socket",
        type=click.Path(dir_okay=False, path_type=Path),
        help="The store's Unix socket (default: the cluster's, under $AMBIT_RUN_DIR or /run/ambit).",
    )(func)
    func = click.option(
        "--cluster",
        "cluster_override",
        metavar="NAME",
        help="Which local cluster (also accepted before the command).",
    )(func)
    return func


class StoreTarget:
    """Which cluster's store a command talks to, and its socket."""

    def __init__(self, cluster: str, socket: Path) -> None:
        self.cluster = cluster
        self.socket = socket

    def unreachable(self) -> str:
        where = f"the store of cluster '{self.cluster}' at {self.socket}"
        return f"cannot reach {where}: is the cluster up? (ambit up)"


def current_cluster(override: str | None) -> str:
    """The command's ``--cluster``, else the root group's."""
    if override:
        return override
    options = click.get_current_context().find_object(GlobalOptions)
    return options.cluster if options is not None else "ambit"


def store_target(cluster_override: str | None, store_socket: Path | None) -> StoreTarget:
    """The store named by a command's ``--cluster`` and ``--store-socket``."""
    cluster = current_cluster(cluster_override)
    if store_socket is not None:
        return StoreTarget(cluster, store_socket)
    try:
        return StoreTarget(cluster, paths.socket_path(cluster))
    except ValueError as exc:
        fail(f"error: {exc}")


def run_on_store(target: StoreTarget, work: Callable[[StoreClient], Coroutine[Any, Any, _T]]) -> _T:
    """Run `work` against the store on a fresh loop; an unreachable store is a clear one-line error."""
    if not target.socket.exists():
        fail(f"error: {target.unreachable()}")

    async def main() -> _T:
        async with StoreClient(target.socket) as client:
            return await work(client)

    try:
        return uvloop.run(main())
    except Unavailable as exc:
        if "cannot reach" in exc.message:
            fail(f"error: {target.unreachable()}")
        server_error(exc)
    except StoreError as exc:
        server_error(exc)


def server_error(exc: StoreError) -> NoReturn:
    """Stop the command with the store's error, as kubectl shows an API server's."""
    fail(f"Error from server ({exc.reason}): {exc.message}")
