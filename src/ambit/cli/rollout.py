"""``ambit rollout status|restart|undo|history``: a Deployment's rollout, as ``kubectl rollout`` shows it.

The rules are the runtime's pure model (``runtime/deployment_revisions.py``: :func:`rollout_status`,
:func:`restart_template`, :func:`rollback`) and the restart's write is ``runtime/rollout.py``'s (shared
with the chaos experiment ``app-rollout``); this module reads the store and prints what they decide.

- ``status`` polls the Deployment every 0.5 s and prints each new line of :func:`rollout_status` (kubectl
  prints one per watch event, so a line repeats there when something else in the object changed); exit
  0 once it is rolled out; ``--timeout`` (a Go duration; 0: forever) ends with kubectl's ``error: timed
  out waiting for the condition``; ``--watch=false`` prints the current line once.
- ``restart`` sets the template's ``kubectl.kubernetes.io/restartedAt`` (retried on a conflict).
- ``undo`` writes back the template and annotations :func:`rollback` picks among the ReplicaSets the
  Deployment controls (by owner uid), as kubectl's JSON patch does.
- ``history`` is kubectl's ``REVISION  CHANGE-CAUSE`` table; with ``--revision N`` that revision's pod
  template, as YAML (kubectl describes it in prose).

Only Deployments roll out here (no StatefulSets or DaemonSets); other kinds get kubectl's errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import yaml

from ambit.cli.go_duration import SECOND, GoDuration
from ambit.cli.store_session import fail, run_on_store, server_error, store_options, store_target
from ambit.runtime.deployment_revisions import RolloutError, rollback, rollout_status
from ambit.runtime.replica_sets import controlled_by, rfc3339
from ambit.runtime.rollout import KeptChanging, RestartTooSoon, restart_deployment
from ambit.store.client import StoreClient
from ambit.store.display import resource_name
from ambit.store.labels import LABEL_RETRIES as _RETRIES
from ambit.store.types import Conflict, NotFound, Obj, StoreError, Unavailable

POLL_SECONDS = 0.5
CHANGE_CAUSE = "kubernetes.io/change-cause"
_REVISION = "deployment.kubernetes.io/revision"
_TIMED_OUT = "error: timed out waiting for the condition"
_DEPLOYMENTS = 'deployments.apps "{}"'

# --- arguments -----------------------------------------------------------------------------------


_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _watch_flag(arg: str) -> str:
    flag, eq, value = arg.partition("=")
    if eq and flag in ("--watch", "-w") and value in _GO_TRUE | _GO_FALSE:
        return "--watch" if value in _GO_TRUE else "--no-watch"
    return arg


class _KubectlFlags(click.Command):
    """Accept pflag's ``--watch=false`` / ``-w=false`` for the ``--watch/--no-watch`` flag."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, [_watch_flag(arg) for arg in args])


def deployment_name(args: Sequence[str], what: str) -> str:
    """``deployment NAME``, ``deploy/NAME``, ``deployments.apps NAME`` → NAME (kubectl's errors otherwise).

    `what` is how kubectl names the missing feature for another kind (``status viewer``, ...)."""
    from ambit.resources import kind_info, resolve_kind

    if not args:
        fail("error: required resource not specified")
    if len(args) == 1 and "/" in args[0]:
        kind_text, _, name = args[0].partition("/")
    elif len(args) == 2 and "/" not in args[0] + args[1]:
        kind_text, name = args
    elif len(args) == 1:
        fail(f"error: you must specify the name of the deployment: {args[0]} NAME (or {args[0]}/NAME)")
    else:
        fail("error: give one resource: deployment NAME (or deployment/NAME)")
    kind = resolve_kind(kind_text)
    if kind_info(kind) is None:
        fail(f'error: the server doesn\'t have a resource type "{kind_text}"')
    if kind != "Deployment":
        fail(f'error: no {what} has been implemented for "{kind}"')
    if not name:
        fail("error: required resource not specified")
    return name


async def _deployment(client: StoreClient, name: str, namespace: str) -> Obj:
    try:
        return await client.get("Deployment", name, namespace)
    except NotFound:
        fail(f"Error from server (NotFound): {_DEPLOYMENTS.format(name)} not found")


async def _replica_sets(client: StoreClient, deployment: Mapping[str, Any], namespace: str) -> list[Obj]:
    """The ReplicaSets `deployment` controls (its uid in their controller ``ownerReference``)."""
    items = (await client.list("ReplicaSet", namespace)).items
    return [rs for rs in items if controlled_by(rs, deployment)]


async def _write(client: StoreClient, obj: Obj) -> bool:
    """Compare-and-swap `obj`; False on a conflict (read again), kubectl's errors otherwise."""
    name = str((obj.get("metadata") or {}).get("name"))
    try:
        await client.update(obj)
    except Conflict:
        return False
    except NotFound:
        fail(f"Error from server (NotFound): {_DEPLOYMENTS.format(name)} not found")
    except Unavailable:
        raise
    except StoreError as exc:
        server_error(exc)
    return True


# --- the commands --------------------------------------------------------------------------------


@click.group("rollout")
def rollout() -> None:
    """Manage the rollout of a Deployment: status, restart, undo, history.

    \b
      ambit rollout status deployment/web --timeout 2m
      ambit rollout restart deploy web
      ambit rollout undo deployment/web --to-revision 2
      ambit rollout history deployment/web
    """


@rollout.command("status", cls=_KubectlFlags)
@click.argument("args", nargs=-1)
@click.option(
    "-w",
    "--watch/--no-watch",
    default=True,
    help="Watch until the rollout finishes (default); --watch=false prints the current status once.",
)
@click.option(
    "--timeout",
    type=GoDuration(),
    default="0s",
    show_default=True,
    help="How long to watch before giving up (90s, 2m, 1h; 0: forever).",
)
@click.option("--revision", type=int, default=0, help="Pin to this revision (default: the current one).")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@store_options
def status(
    *,
    args: tuple[str, ...],
    watch: bool,
    timeout: int,
    revision: int,
    namespace: str | None,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Follow a Deployment's rollout until it is done.

    \b
      ambit rollout status deployment/web [--timeout 2m]
      ambit rollout status deploy web --watch=false
    """
    name = deployment_name(args, "status viewer")
    target = store_target(cluster_override, store_socket)
    ns = namespace or "default"

    async def work(client: StoreClient) -> None:
        deadline = time.monotonic() + timeout / SECOND if timeout > 0 else None
        uid: object = None
        last: str | None = None
        while True:
            if uid is None:
                obj = await _deployment(client, name, ns)
                uid = (obj.get("metadata") or {}).get("uid")
            else:
                try:
                    obj = await client.get("Deployment", name, ns)
                except NotFound:
                    obj = {}
                if (obj.get("metadata") or {}).get("uid") != uid:
                    fail("error: object has been deleted")
            try:
                line, done = rollout_status(obj, revision)
            except RolloutError as exc:
                fail(f"error: {exc}")
            if line != last:
                click.echo(line)
                last = line
            if done or not watch:
                return
            wait = POLL_SECONDS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(_TIMED_OUT)
                wait = min(wait, left)
            await asyncio.sleep(wait)

    run_on_store(target, work)


@rollout.command("restart")
@click.argument("args", nargs=-1)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@store_options
def restart(
    *, args: tuple[str, ...], namespace: str | None, cluster_override: str | None, store_socket: Path | None
) -> None:
    """Restart a Deployment's pods by a new rollout.

    Sets the template's kubectl.kubernetes.io/restartedAt, as kubectl does: deployment NAME (or
    deployment/NAME).
    """
    name = deployment_name(args, "restarter")
    target = store_target(cluster_override, store_socket)
    ns = namespace or "default"

    async def work(client: StoreClient) -> str:
        try:
            obj = await restart_deployment(client, name, ns, rfc3339(time.time()))
        except NotFound:
            fail(f"Error from server (NotFound): {_DEPLOYMENTS.format(name)} not found")
        except RestartTooSoon:
            fail(
                f"error: failed to create patch for {name}: if restart has already been triggered within "
                "the past second, please wait before attempting to trigger another"
            )
        except KeptChanging:
            fail(f"error: {_DEPLOYMENTS.format(name)} kept changing; gave up after {_RETRIES} attempts")
        except RolloutError as exc:
            fail(f"error: {_DEPLOYMENTS.format(name)} {exc}")
        except Unavailable:
            raise
        except StoreError as exc:
            server_error(exc)
        return f"{resource_name(obj)} restarted"

    click.echo(run_on_store(target, work))


@rollout.command("undo")
@click.argument("args", nargs=-1)
@click.option(
    "--to-revision", type=int, default=0, help="The revision to roll back to (default 0: the previous one)."
)
@click.option("-n", "--namespace", help="Namespace (default: default).")
@store_options
def undo(
    *,
    args: tuple[str, ...],
    to_revision: int,
    namespace: str | None,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Roll a Deployment back to its previous revision (or to --to-revision).

    The ReplicaSet of that revision gives the template back: deployment NAME (or deployment/NAME).
    """
    name = deployment_name(args, "rollbacker")
    target = store_target(cluster_override, store_socket)
    ns = namespace or "default"

    async def work(client: StoreClient) -> str:
        for _ in range(_RETRIES):
            obj = await _deployment(client, name, ns)
            try:
                result = rollback(obj, await _replica_sets(client, obj, ns), to_revision)
            except RolloutError as exc:
                fail(f"error: {exc}")
            if result.skipped:
                return f"{resource_name(obj)} {result.message}"
            obj["spec"] = {**(obj.get("spec") or {}), "template": result.template}
            obj["metadata"] = {**(obj.get("metadata") or {}), "annotations": result.annotations}
            if await _write(client, obj):
                return f"{resource_name(obj)} {result.message}"
        fail(f"error: {_DEPLOYMENTS.format(name)} kept changing; gave up after {_RETRIES} attempts")

    click.echo(run_on_store(target, work))


def history_of(replica_sets: Sequence[Mapping[str, Any]]) -> dict[int, Obj]:
    """kubectl's history (``DeploymentHistoryViewer.GetHistory``): revision → pod template, its
    ``kubernetes.io/change-cause`` annotation taken from the ReplicaSet when that has one. A ReplicaSet
    without a revision annotation is revision 0; one whose revision is not a number is left out."""
    out: dict[int, Obj] = {}
    for rs in replica_sets:
        meta = rs.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        try:
            revision = int(annotations.get(_REVISION) or 0)
        except (TypeError, ValueError):
            continue
        template: Obj = dict((rs.get("spec") or {}).get("template") or {})
        tmeta = dict(template.get("metadata") or {})
        cause = annotations.get(CHANGE_CAUSE)
        if cause:
            tmeta["annotations"] = {**(tmeta.get("annotations") or {}), CHANGE_CAUSE: str(cause)}
        template["metadata"] = tmeta
        out[revision] = template
    return out


def history_table(history: Mapping[int, Mapping[str, Any]]) -> str:
    """``REVISION  CHANGE-CAUSE`` rows, as kubectl's tabwriter pads them (two spaces after the widest)."""
    if not history:
        return "No rollout history found."
    rows = [("REVISION", "CHANGE-CAUSE")]
    for revision in sorted(history):
        annotations = (history[revision].get("metadata") or {}).get("annotations") or {}
        rows.append((str(revision), str(annotations.get(CHANGE_CAUSE) or "<none>")))
    width = max(len(first) for first, _ in rows) + 2
    return "".join(f"{first.ljust(width)}{second}\n" for first, second in rows)


@rollout.command("history")
@click.argument("args", nargs=-1)
@click.option("--revision", type=int, default=0, help="Show this revision's pod template.")
@click.option("-n", "--namespace", help="Namespace (default: default).")
@store_options
def history(
    *,
    args: tuple[str, ...],
    revision: int,
    namespace: str | None,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """List a Deployment's revisions (REVISION, CHANGE-CAUSE).

    With --revision N, that revision's pod template as YAML: deployment NAME (or deployment/NAME).
    """
    name = deployment_name(args, "history viewer")
    if revision < 0:
        fail(f"error: revision must be a positive integer: {revision}")
    target = store_target(cluster_override, store_socket)
    ns = namespace or "default"

    async def work(client: StoreClient) -> tuple[Obj, dict[int, Obj]]:
        obj = await _deployment(client, name, ns)
        return obj, history_of(await _replica_sets(client, obj, ns))

    obj, found = run_on_store(target, work)
    if revision > 0:
        if revision not in found:
            fail("error: unable to find the specified revision")
        text = yaml.safe_dump(found[revision], sort_keys=False, default_flow_style=False, allow_unicode=True)
        click.echo(f"{resource_name(obj)} with revision #{revision}\n{text}")
    else:  # kubectl's name printer: "<type>/<name> <operation>", the operation being "\n" + the table
        click.echo(f"{resource_name(obj)} \n{history_table(found)}")
