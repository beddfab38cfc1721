"""``ambit get``: show objects as a table (``-o wide``), YAML, JSON or names, as kubectl does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from ambit.cli.resource_args import kind_names
from ambit.cli.store_session import run_on_store, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import hpa_columns, plural, resource_name, table
from ambit.store.types import NotFound, Obj


@click.command("get")
@click.argument("args", nargs=-1, required=True)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="List across every namespace.")
@click.option(
    "-o",
    "--output",
    type=click.Choice(["yaml", "json", "wide", "name"]),
    help="Output format (default: a table).",
)
@click.option("-l", "--selector", help="Label selector, e.g. app=web,tier!=db.")
@click.option("--show-labels", is_flag=True, help="Add a LABELS column.")
@store_options
def get(
    *,
    args: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    output: str | None,
    selector: str | None,
    show_labels: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Show objects: KIND[,KIND...] [NAME...] or KIND/NAME... (po, svc, deploy, ns, gtw, ap, ...).

    \b
      ambit get pods -A -o wide
      ambit get svc productpage -o yaml
      ambit get ns --show-labels
    """
    from ambit.resources import is_namespaced, resolve_kind

    target = store_target(cluster_override, store_socket)
    wanted = kind_names(args, resolve_kind)
    ns = namespace or "default"
    named = any(name is not None for _, name in wanted)

    async def work(client: StoreClient) -> tuple[list[Obj], list[str]]:
        found: list[Obj] = []
        errors: list[str] = []
        for kind, name in wanted:
            scoped_ns = ns if is_namespaced(kind) else None
            if name is None:
                list_ns = None if all_namespaces or scoped_ns is None else scoped_ns
                found.extend((await client.list(kind, list_ns, label_selector=selector)).items)
                continue
            try:
                found.append(await client.get(kind, name, scoped_ns))
            except NotFound:
                errors.append(f'Error from server (NotFound): {plural(kind)} "{name}" not found')
        return found, errors

    found, errors = run_on_store(target, work)
    if not found and not errors and not named:
        namespaced = any(is_namespaced(kind) for kind, _ in wanted)
        if namespaced and not all_namespaces:
            click.echo(f"No resources found in {ns} namespace.", err=True)
        else:
            click.echo("No resources found", err=True)
    elif found:
        click.echo(
            _render(
                found,
                output,
                single=named and len(wanted) == 1,
                all_namespaces=all_namespaces,
                show_labels=show_labels,
                kinds=[k for k, _ in wanted],
                is_namespaced=is_namespaced,
            )
        )
    for line in errors:
        click.echo(line, err=True)
    if errors:
        click.get_current_context().exit(1)


def _render(
    found: list[Obj],
    output: str | None,
    *,
    single: bool,
    all_namespaces: bool,
    show_labels: bool,
    kinds: list[str],
    is_namespaced: Callable[[str], bool],
) -> str:
    if output in ("yaml", "json"):
        data: Any = (
            found[0] if single else {"apiVersion": "v1", "kind": "List", "items": found, "metadata": {}}
        )
        if output == "json":
            return json.dumps(data, indent=4, ensure_ascii=False)
        return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True).rstrip(
            "\n"
        )
    if output == "name":
        return "\n".join(resource_name(obj) for obj in found)
    distinct = list(dict.fromkeys(kinds))
    columns_of = {}
    if any(obj.get("kind") == "HorizontalPodAutoscaler" for obj in found):
        # TARGETS is the runtime's rule, which the store's display may not import
        from ambit.runtime.hpa import format_targets

        columns_of["HorizontalPodAutoscaler"] = hpa_columns(format_targets)
    blocks = []
    for kind in dict.fromkeys(str(obj.get("kind")) for obj in found):
        objects = [obj for obj in found if obj.get("kind") == kind]
        blocks.append(
            table(
                objects,
                kind=kind,
                wide=output == "wide",
                with_namespace=all_namespaces and is_namespaced(kind),
                with_type=len(distinct) > 1,
                show_labels=show_labels,
                columns_of=columns_of,
            )
        )
    return "\n\n".join(blocks)
