"""``ambit label``: add, change or remove labels (``key=value``, ``key-``), retried on a conflict."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import click

from ambit.cli.store_session import fail, run_on_store, server_error, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import plural, resource_name
from ambit.store.labels import LABEL_RETRIES as _LABEL_RETRIES
from ambit.store.types import Conflict, NotFound, StoreError, Unavailable

_LABEL_KEY = re.compile(
    r"(?:[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


@click.command("label")
@click.argument("args", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("--overwrite", is_flag=True, help="Allow replacing a label that already has a value.")
@store_options
def label(
    *,
    args: tuple[str, ...],
    namespace: str | None,
    overwrite: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Add, change (--overwrite) or remove (key-) labels: KIND NAME key=value... key-...

    \b
      ambit label ns default istio.io/dataplane-mode=ambient
      ambit label pod web-1 tier=front --overwrite
      ambit label svc/web tier-
    """
    from ambit.resources import is_namespaced, resolve_kind

    target = store_target(cluster_override, store_socket)
    usage = "error: give KIND NAME (or KIND/NAME) and at least one label update (key=value or key-)"
    if "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
        specs = args[1:]
    elif len(args) >= 2:
        kind_text, name, specs = args[0], args[1], args[2:]
    else:
        fail(usage)
    if not kind_text or not name or not specs:
        fail(usage)
    kind = resolve_kind(kind_text)
    add, remove = parse_label_specs(specs)
    obj_ns = (namespace or "default") if is_namespaced(kind) else None

    async def work(client: StoreClient) -> tuple[str, list[str]]:
        for _ in range(_LABEL_RETRIES):
            try:
                obj = await client.get(kind, name, obj_ns)
            except NotFound:
                fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            labels: dict[str, str] = dict((obj.get("metadata") or {}).get("labels") or {})
            if not overwrite:
                taken = [k for k, v in add.items() if k in labels and labels[k] != v]
                if taken:
                    fail(
                        "\n".join(
                            f"error: '{k}' already has a value ({labels[k]}), and --overwrite is false"
                            for k in taken
                        )
                    )
            notes = [f'label "{k}" not found.' for k in remove if k not in labels]
            new = {k: v for k, v in {**labels, **add}.items() if k not in remove}
            if new == labels:
                return f"{resource_name(obj)} not labeled", notes
            obj["metadata"] = {**obj["metadata"], "labels": new}
            try:
                await client.update(obj)
            except Conflict:
                continue  # written meanwhile: read again and reapply
            except NotFound:
                fail(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
            except Unavailable:
                raise
            except StoreError as exc:
                server_error(exc)
            return f"{resource_name(obj)} {'unlabeled' if remove and not add else 'labeled'}", notes
        fail(f'error: {plural(kind)} "{name}" kept changing; gave up after {_LABEL_RETRIES} attempts')

    line, notes = run_on_store(target, work)
    for note in notes:
        click.echo(note, err=True)
    click.echo(line)


def parse_label_specs(specs: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """``key=value`` (set) and ``key-`` (remove) → (to set, to remove); a clear error for anything else."""
    add: dict[str, str] = {}
    remove: list[str] = []
    for spec in specs:
        if "=" in spec:
            key, _, value = spec.partition("=")
            if not _LABEL_KEY.fullmatch(key) or len(key.rsplit("/", 1)[-1]) > 63:
                fail(f"error: invalid label key {key!r}: a qualified name like app or example.com/tier")
            if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
                fail(f"error: invalid label value {value!r}: up to 63 letters, digits, '-', '_' or '.'")
            add[key] = value
        elif spec.endswith("-") and _LABEL_KEY.fullmatch(spec[:-1]):
            remove.append(spec[:-1])
        else:
            fail(f"error: invalid label spec {spec!r}: use key=value to set and key- to remove")
    both = sorted(set(add) & set(remove))
    if both:
        fail(f"error: cannot both modify and remove a label in the same command: {', '.join(both)}")
    return add, remove
