"""``ambit delete``: objects by manifest (``-f``), by name, by ``--all`` or ``-l``, in one transaction."""

from __future__ import annotations

from pathlib import Path

import click

from ambit.cli.manifests import in_namespace, read_manifests
from ambit.cli.resource_args import kind_names
from ambit.cli.store_session import fail, run_on_store, server_error, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import plural, resource_type
from ambit.store.types import Obj, Op, StoreError, Unavailable


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects of these manifests.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all or -l: in every namespace.")
@click.option("--all", "delete_all", is_flag=True, help="Delete every object of the kind.")
@click.option("-l", "--selector", help="Delete the objects matching this label selector.")
@click.option("--ignore-not-found", is_flag=True, help="An object that does not exist is not an error.")
@store_options
def delete(
    *,
    args: tuple[str, ...],
    files: tuple[str, ...],
    namespace: str | None,
    all_namespaces: bool,
    delete_all: bool,
    selector: str | None,
    ignore_not_found: bool,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Delete objects by manifest (-f) or by KIND NAME..., with whatever they own (one transaction).

    \b
      ambit delete -f bookinfo.yaml
      ambit delete pod productpage-v1-abc -n default
      ambit delete svc/web deploy/web
    """
    target = store_target(cluster_override, store_socket)
    if files and args:
        fail("error: give either -f FILE or KIND NAME, not both")
    if files:
        refs: list[tuple[str | None, Obj]] = list(in_namespace(read_manifests(files), namespace))
        queries: list[tuple[str, str | None]] = []
    elif args:
        refs, queries = _delete_targets(args, namespace, all_namespaces, delete_all or bool(selector))
    else:
        fail("error: give -f FILE, or KIND with NAME..., --all or -l SELECTOR")

    async def work(client: StoreClient) -> tuple[list[str], list[str]]:
        for kind, ns in queries:
            refs.extend((None, obj) for obj in (await client.list(kind, ns, label_selector=selector)).items)
        return await _delete(client, refs, ignore_not_found)

    done, missing = run_on_store(target, work)
    for line in done:
        click.echo(line)
    if not done and not missing and queries:
        click.echo("No resources found", err=True)
    for line in missing:
        click.echo(line, err=True)
    if missing:
        click.get_current_context().exit(1)


def _delete_targets(
    args: tuple[str, ...], namespace: str | None, all_namespaces: bool, by_query: bool
) -> tuple[list[tuple[str | None, Obj]], list[tuple[str, str | None]]]:
    """``KIND NAME...`` → object references; ``KIND`` with --all / -l → (kind, namespace) queries."""
    from ambit.resources import is_namespaced, resolve_kind

    refs: list[tuple[str | None, Obj]] = []
    queries: list[tuple[str, str | None]] = []
    for kind, name in kind_names(args, resolve_kind):
        if name is None:
            if not by_query:
                fail(f'error: resource name may not be empty (give NAME, --all or -l for "{kind}")')
            queries.append(
                (kind, None if all_namespaces or not is_namespaced(kind) else (namespace or "default"))
            )
            continue
        meta: Obj = {"name": name}
        if is_namespaced(kind):
            meta["namespace"] = namespace or "default"
        refs.append((None, {"kind": kind, "metadata": meta}))
    return refs, queries


async def _delete(
    client: StoreClient, refs: list[tuple[str | None, Obj]], ignore_not_found: bool
) -> tuple[list[str], list[str]]:
    """Delete every referenced object that exists in one transaction; report the missing ones."""
    seen: set[tuple[str, str, str]] = set()
    ops: list[tuple[str | None, Op]] = []
    for source, obj in refs:
        meta = obj.get("metadata") or {}
        ref_meta = {"name": meta.get("name")}
        if meta.get("namespace"):
            ref_meta["namespace"] = meta["namespace"]
        key = (str(obj.get("kind")), str(meta.get("namespace") or ""), str(meta.get("name")))
        if key not in seen:
            seen.add(key)
            ops.append(
                (source, Op("delete", {"kind": obj.get("kind"), "metadata": ref_meta}, missing_ok=True))
            )
    if not ops:
        return [], []
    try:
        result = await client.transaction([op for _, op in ops])
    except Unavailable:
        raise
    except StoreError as exc:
        server_error(exc)
    done: list[str] = []
    missing: list[str] = []
    for (source, op), res in zip(ops, result.results, strict=True):
        kind, name = str(op.object["kind"]), op.object["metadata"]["name"]
        if res.result != "notfound":
            done.append(f'{resource_type(kind, (res.object or {}).get("apiVersion"))} "{name}" deleted')
        elif not ignore_not_found:
            where = f'error when deleting "{source}": ' if source else ""
            missing.append(f'Error from server (NotFound): {where}{plural(kind)} "{name}" not found')
    return done, missing
