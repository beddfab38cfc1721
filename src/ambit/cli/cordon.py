"""``ambit cordon`` / ``ambit uncordon``: mark a node unschedulable or schedulable, as kubectl does.

A cordoned node (``spec.unschedulable: true``) gets no new pods from the scheduler
(``runtime/scheduler.py::place``); the pods on it keep running. ``ambit get nodes`` shows it as
``Ready,SchedulingDisabled``. Retried on a conflict (a controller may be writing the node's status).
:func:`set_unschedulable` is shared with ``ambit drain``, which cordons first.
"""

from __future__ import annotations

from pathlib import Path

import click

from ambit.cli.store_session import (
    fail,
    run_on_store,
    server_error,
    store_options,
    store_target,
)
from ambit.store.client import StoreClient
from ambit.store.labels import LABEL_RETRIES as _RETRIES
from ambit.store.types import Conflict, NotFound, StoreError, Unavailable


async def set_unschedulable(
    client: StoreClient, node: str, unschedulable: bool, *, dry_run: bool = False
) -> str:
    """Set ``spec.unschedulable`` of `node` and return what kubectl prints after ``node/NAME``:
    ``cordoned``, ``already cordoned``, ``uncordoned`` or ``already uncordoned``. With `dry_run`
    (kubectl's ``--dry-run=client``) nothing is written. A missing node stops the command."""
    done, already = (
        ("cordoned", "already cordoned") if unschedulable else ("uncordoned", "already uncordoned")
    )
    for _ in range(_RETRIES):
        try:
            obj = await client.get("Node", node, None)
        except NotFound:
            fail(f'Error from server (NotFound): nodes "{node}" not found')
        spec = dict(obj.get("spec") or {})
        if bool(spec.get("unschedulable")) == unschedulable:
            return already
        if dry_run:
            return done
        if unschedulable:
            spec["unschedulable"] = True
        else:
            spec.pop("unschedulable", None)
        obj["spec"] = spec
        try:
            await client.update(obj)
        except Conflict:
            continue
        except NotFound:
            fail(f'Error from server (NotFound): nodes "{node}" not found')
        except Unavailable:
            raise
        except StoreError as exc:
            server_error(exc)
        return done
    fail(f'error: node "{node}" kept changing; gave up after {_RETRIES} attempts')


def _run(node: str, unschedulable: bool, cluster_override: str | None, store_socket: Path | None) -> None:
    async def work(client: StoreClient) -> str:
        return await set_unschedulable(client, node, unschedulable)

    click.echo(f"node/{node} {run_on_store(store_target(cluster_override, store_socket), work)}")


@click.command("cordon")
@click.argument("node")
@store_options
def cordon(*, node: str, cluster_override: str | None, store_socket: Path | None) -> None:
    """Mark NODE unschedulable: no new pods go there (those on it keep running)."""
    _run(node, True, cluster_override, store_socket)


@click.command("uncordon")
@click.argument("node")
@store_options
def uncordon(*, node: str, cluster_override: str | None, store_socket: Path | None) -> None:
    """Mark NODE schedulable again."""
    _run(node, False, cluster_override, store_socket)
