"""``ambit scale``: set a Deployment's ``spec.replicas``, as ``kubectl scale`` does, retried on a conflict.

The runtime's scheduler then creates or deletes pods to match (``runtime/scheduler.py``). A waypoint's
Deployment may be scaled too: its controller leaves the count alone until the Gateway's
``ambit.dev/replicas`` annotation changes (``control/waypoints.py``).
"""

from __future__ import annotations

from pathlib import Path

import click

from ambit.cli.store_session import fail, run_on_store, server_error, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import plural, resource_name
from ambit.store.labels import LABEL_RETRIES as _RETRIES
from ambit.store.types import Conflict, NotFound, StoreError, Unavailable

SCALABLE = frozenset({"Deployment"})


@click.command("scale")
@click.argument("args", nargs=-1, required=True)
@click.option("--replicas", type=int, required=True, help="The new number of replicas (0 or more).")
@click.option(
    "--current-replicas",
    type=int,
    default=None,
    help="Precondition: scale only if the current count is this (-1 or unset: no precondition).",
)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@store_options
def scale(
    *,
    args: tuple[str, ...],
    replicas: int,
    current_replicas: int | None,
    namespace: str | None,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Set the replicas of a Deployment: KIND NAME (or KIND/NAME) --replicas N.

    \b
      ambit scale deployment web --replicas 3
      ambit scale deploy/web --replicas 0 --current-replicas 3
    """
    from ambit.resources import resolve_kind

    if replicas < 0:
        fail("error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
    if len(args) == 1 and "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
    elif len(args) == 2:
        kind_text, name = args
    else:
        fail("error: give KIND NAME (or KIND/NAME)")
    kind = resolve_kind(kind_text)
    if kind not in SCALABLE:
        fail(f"error: {plural(kind)} cannot be scaled: only Deployments have replicas here")
    target = store_target(cluster_override, store_socket)
    obj_ns = namespace or "default"

    async def work(client: StoreClient) -> str:
        for _ in range(_RETRIES):
            try:
                obj = await client.get(kind, name, obj_ns)
            except NotFound:
                fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            spec = dict(obj.get("spec") or {})
            now = int(spec.get("replicas", 1))
            if current_replicas is not None and current_replicas >= 0 and now != current_replicas:
                fail(f"error: Expected replicas to be {current_replicas}, was {now}")
            if now == replicas:
                return f"{resource_name(obj)} scaled"
            obj["spec"] = {**spec, "replicas": replicas}
            try:
                await client.update(obj)
            except Conflict:
                continue  # written meanwhile: read again, check the precondition again
            except NotFound:
                fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            except Unavailable:
                raise
            except StoreError as exc:
                server_error(exc)
            return f"{resource_name(obj)} scaled"
        fail(f'error: {plural(kind)} "{name}" kept changing; gave up after {_RETRIES} attempts')

    click.echo(run_on_store(target, work))
