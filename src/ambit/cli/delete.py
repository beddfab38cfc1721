"""``ambit delete``: objects by manifest (``-f``), by name, by ``--all`` or ``-l``, in one transaction."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from ambit.cli.manifests import in_namespace, read_manifests
from ambit.cli.resource_args import kind_names
from ambit.cli.store_session import fail, run_on_store, server_error, store_options, store_target
from ambit.store.client import StoreClient
from ambit.store.display import plural, resource_type
from ambit.store.types import NotFound, Obj, Op, StoreError, Unavailable


@click.command("delete")
@click.argument("args", nargs=-1)
@click.option("-f", "--filename", "files", multiple=True, help="Delete the objects of these manifests.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@click.option("-A", "--all-namespaces", is_flag=True, help="With --all or -l: in every namespace.")
@click.option("--all", "delete_all", is_flag=True, help="Delete every object of the kind.")
@click.option("-l", "--selector", help="Delete the objects matching this label selector.")
@click.option("--ignore-not-found", is_flag=True, help="An object that does not exist is not an error.")
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="Seconds a pod gets to terminate (-1: its terminationGracePeriodSeconds; 0 with --force: at once).",
)
@click.option("--now", is_flag=True, help="Terminate pods with a grace period of 1 s.")
@click.option("--force", is_flag=True, help="With --grace-period=0: remove pods at once, without waiting.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait until the deleted objects are gone (pods: until they have terminated).",
)
@click.option(
    "--timeout", type=float, default=0, help="With --wait: give up after this many seconds (0: never)."
)
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
    grace_period: int,
    now: bool,
    force: bool,
    wait: bool,
    timeout: float,
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
    grace = _grace(grace_period, now, force)
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
        done, missing, gone = await _delete(client, refs, ignore_not_found, grace)
        if wait and gone and not await _wait_gone(client, gone, timeout):
            missing.append(
                f"error: timed out waiting for the deletion of {len(gone)} object(s) after {timeout:g}s"
            )
        return done, missing

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


def _grace(grace_period: int, now: bool, force: bool) -> int | None:
    """kubectl's rules: --now is a grace period of 1; --force needs --grace-period=0 (kubectl allows
    1 too, for old servers); a negative period means the pod's own."""
    if now and grace_period >= 0:
        fail("error: --now and --grace-period cannot be specified together")
    if force and grace_period not in (0, 1):
        fail("error: --force requires --grace-period=0 (remove the pods at once, without terminating them)")
    if grace_period == 0 and not force:
        fail("error: --grace-period=0 needs --force: the pods would be removed without terminating them")
    if force:
        return 0
    if now:
        return 1
    return grace_period if grace_period >= 0 else None


async def _wait_gone(client: StoreClient, gone: list[Obj], within: float) -> bool:
    """Until every object in ``gone`` (by uid) is absent from the store, as kubectl's --wait."""
    deadline = asyncio.get_running_loop().time() + within if within > 0 else None
    pending = list(gone)
    while pending:
        left = []
        for obj in pending:
            meta = obj.get("metadata") or {}
            try:
                current = await client.get(str(obj.get("kind")), str(meta.get("name")), meta.get("namespace"))
            except NotFound:
                continue
            if (current.get("metadata") or {}).get("uid") == meta.get("uid"):
                left.append(obj)
        pending = left
        if not pending:
            return True
        if deadline is not None and asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _delete(
    client: StoreClient, refs: list[tuple[str | None, Obj]], ignore_not_found: bool, grace: int | None = None
) -> tuple[list[str], list[str], list[Obj]]:
    """Delete every referenced object that exists in one transaction; report the missing ones, and
    return the deleted objects still present (pods terminating) for --wait."""
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
                (
                    source,
                    Op(
                        "delete",
                        {"kind": obj.get("kind"), "metadata": ref_meta},
                        missing_ok=True,
                        grace_period=grace,
                    ),
                )
            )
    if not ops:
        return [], [], []
    try:
        result = await client.transaction([op for _, op in ops])
    except Unavailable:
        raise
    except StoreError as exc:
        server_error(exc)
    done: list[str] = []
    missing: list[str] = []
    terminating: list[Obj] = []
    for (source, op), res in zip(ops, result.results, strict=True):
        kind, name = str(op.object["kind"]), op.object["metadata"]["name"]
        if res.result != "notfound":
            done.append(f'{resource_type(kind, (res.object or {}).get("apiVersion"))} "{name}" deleted')
            if res.object and (res.object.get("metadata") or {}).get("deletionTimestamp"):
                terminating.append(res.object)
        elif not ignore_not_found:
            where = f'error when deleting "{source}": ' if source else ""
            missing.append(f'Error from server (NotFound): {where}{plural(kind)} "{name}" not found')
    return done, missing, terminating
