"""``ambit apply -f``: create or update every object of the manifests in one all-or-nothing transaction.

Every file is read first and one transaction sent: one invalid object in any file and nothing is
stored, with an error naming the file, the object and the field.
"""

from __future__ import annotations

from pathlib import Path

import click

from ambit.cli.manifests import in_namespace, read_manifests
from ambit.cli.store_session import fail, run_on_store, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import resource_name
from ambit.store.types import Obj, Op, StoreError, Unavailable, object_key


@click.command("apply")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    help="A manifest file, a directory of them (recursively), or - for stdin. Repeatable.",
)
@click.option("-n", "--namespace", help="Namespace for objects that do not name one.")
@store_options
def apply(
    files: tuple[str, ...], namespace: str | None, cluster_override: str | None, store_socket: Path | None
) -> None:
    """Create or update objects from manifests, all or nothing (like kubectl apply)."""
    from ambit.resources import unknown_kind

    target = store_target(cluster_override, store_socket)
    items = in_namespace(read_manifests(files), namespace)
    if not items:
        fail("error: no objects passed to apply")
    for source, obj in items:
        if unknown_kind(obj):
            click.echo(
                f'Warning: {source}: kind "{obj.get("kind")}" is not one ambit knows; stored as given',
                err=True,
            )

    async def work(client: StoreClient) -> list[str]:
        try:
            result = await client.transaction([Op("apply", obj) for _, obj in items])
        except Unavailable:
            raise
        except StoreError as exc:
            fail(_describe_failure(exc, items))
        return [
            f"{resource_name(r.object or obj)} {r.result}"
            for r, (_, obj) in zip(result.results, items, strict=True)
        ]

    for line in run_on_store(target, work):
        click.echo(line)


def _describe_failure(exc: StoreError, items: list[tuple[str, Obj]]) -> str:
    if exc.index is not None and 0 <= exc.index < len(items):
        source, obj = items[exc.index]
        kind, namespace, name = object_key(obj)
        where = f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"
        return f"Error from server ({exc.reason}): error when applying {source} ({where}): {exc.message}"
    return f"Error from server ({exc.reason}): {exc.message}"
