"""``ambit drain NODE``: cordon a node, evict its pods and wait until they are gone, as ``kubectl drain``.

What it does and prints follows kubectl (kubernetes/kubectl ``pkg/drain/drain.go``, ``filters.go`` and
``pkg/cmd/drain/drain.go``, read for the facts only):

1. **Cordon** the node (:func:`ambit.cli.cordon.set_unschedulable`): ``node/NODE cordoned`` (or
   ``already cordoned``). A missing node stops here.
2. **Choose the pods** bound to the node (``spec.nodeName``, narrowed by ``--pod-selector``), each
   through kubectl's filters in kubectl's order, the first that holds a pod back deciding:
   DaemonSet-managed pods (controller ``apps/v1`` ``DaemonSet``) are never evicted and refuse the drain
   unless ``--ignore-daemonsets`` (ambit has no DaemonSets yet; the rule is kubectl's all the same);
   mirror pods (annotation ``kubernetes.io/config.mirror``: ambit's control-plane pods, see
   ``runtime/bootstrap.py``) are skipped without a word; pods with an ``emptyDir`` volume refuse the
   drain unless ``--delete-emptydir-data``; pods without a controller ``ownerReference`` refuse it
   unless ``--force``. A finished pod (Succeeded/Failed) passes the DaemonSet, local-storage and
   controller rules. The refusals are ``cannot delete <what> (use --<flag> ...): ns/a, ns/b``; what the
   flags let through is named on stderr as ``Warning: <what>: ns/a, ...``.
3. **Evict** them concurrently (``evicting pod NS/NAME``, once per attempt). A refusal by a
   PodDisruptionBudget (429) prints ``error when evicting pods/"NAME" -n "NS" (will retry after 5s):
   <the store's message, naming the budget>`` and is retried every :data:`EVICTION_RETRY_DELAY`
   seconds; any other error fails that pod. ``--disable-eviction`` deletes the pods instead (no budget
   is consulted), one after the other.
4. **Wait** until each pod is gone (its uid no longer in the store; polled every
   :data:`DELETE_POLL_INTERVAL` s): ``pod/NAME evicted`` (``deleted``); then ``node/NODE drained``.

A failure (a refusal by the filters, an eviction that failed, ``--timeout`` reached) prints kubectl's
lines on stderr and exits 1: after an eviction error ``There are pending pods in node "NODE" when an
error occurred: <error>`` and ``pod/NAME`` for each pod still to go; then always ``error: unable to
drain node "NODE" due to error: <error>, continuing command...``, ``There are pending nodes to be
drained:``, `` NODE`` and the error(s) once more, one per line. The timeout of an eviction that is
still being refused reads ``error when evicting pods/"NAME" -n "NS": global timeout reached: 1s``; the
refusal before it named the budget. ``--dry-run=client`` changes nothing and prints ``(dry run)``
after each line (``evicting pod NS/NAME (dry run)``).

Where ambit differs from kubectl: the wait before a retry ends at the ``--timeout`` deadline (kubectl
sleeps its full 5 s first); the 429's message carries the budget's cause (kubectl prints only the
status message, the cause is in the details); one node by name (no ``--selector``), no
``--dry-run=server``, ``--skip-wait-for-delete-timeout`` or ``--chunk-size``, and no retry on a
terminating namespace's Forbidden (ambit's namespaces do not terminate).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import click

from ambit.cli.cordon import set_unschedulable
from ambit.cli.go_duration import GoDuration
from ambit.cli.store_session import fail, run_on_store, store_options, store_target
from ambit.resources.durations import SECOND
from ambit.resources.objects import (
    annotations_of,
    controller_of,
    labels,
    mapping,
    name_of,
    namespace_or_default,
    node_name,
    phase,
    selector_matches,
    uid_of,
)
from ambit.store.client import StoreClient
from ambit.store.selector import SelectorError, label_selector
from ambit.store.types import NotFound, Obj, StoreError, TooManyRequests

MIRROR_POD_ANNOTATION: Final = "kubernetes.io/config.mirror"
EVICTION_RETRY_DELAY: Final = 5.0  # seconds between evictions a PodDisruptionBudget refused (kubectl's)
DELETE_POLL_INTERVAL: Final = 1.0  # seconds between looks for the evicted pods (kubectl's)

_FINISHED: Final = frozenset({"Succeeded", "Failed"})
_DAEMONSET_FATAL: Final = "DaemonSet-managed Pods (use --ignore-daemonsets to ignore)"
_DAEMONSET_WARNING: Final = "ignoring DaemonSet-managed Pods"
_LOCAL_STORAGE_FATAL: Final = "Pods with local storage (use --delete-emptydir-data to override)"
_LOCAL_STORAGE_WARNING: Final = "deleting Pods with local storage"
_UNMANAGED_FATAL: Final = "Pods that declare no controller (use --force to override)"
_UNMANAGED_WARNING: Final = "deleting Pods that declare no controller"
_DEADLINE_EXCEEDED: Final = "context deadline exceeded"  # Go's context.DeadlineExceeded

OKAY: Final = "Okay"
SKIP: Final = "Skip"
WARNING: Final = "Warning"
ERROR: Final = "Error"


@dataclass(frozen=True, slots=True)
class DrainOptions:
    """The flags of ``ambit drain`` that decide which pods go and how."""

    force: bool = False
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    pod_selector: Mapping[str, Any] | None = None  # a LabelSelector; None: every pod
    grace_period: int | None = None  # None: each pod's own terminationGracePeriodSeconds
    timeout_ns: int = 0  # 0: no limit
    disable_eviction: bool = False
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class PodDelete:
    """A pod on the node and what the filters decided (kubectl's ``PodDelete``/``PodDeleteStatus``)."""

    pod: Obj
    delete: bool
    reason: str = OKAY
    message: str = ""


class DrainFailed(Exception):
    """The drain of the node failed: `text` is the error as kubectl's ``err.Error()``, `lines` what its
    ``CheckErr`` prints for it at the end."""

    def __init__(self, text: str, lines: Sequence[str]) -> None:
        super().__init__(text)
        self.text = text
        self.lines = list(lines)


# -- choosing the pods (pure) -----------------------------------------------------------------------


def _daemonset_ref(pod: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the DaemonSet controlling `pod`, if one does."""
    ref = controller_of(pod)
    if ref is None or ref.get("kind") != "DaemonSet" or ref.get("apiVersion") != "apps/v1":
        return None
    return namespace_or_default(pod), str(ref.get("name") or "")


def _finished(pod: Obj) -> bool:
    return phase(pod) in _FINISHED


def _has_local_storage(pod: Obj) -> bool:
    volumes = mapping(pod, "spec").get("volumes") or ()
    return any(isinstance(v, Mapping) and v.get("emptyDir") is not None for v in volumes)


def classify(pod: Obj, options: DrainOptions, daemonsets: Mapping[tuple[str, str], str | None]) -> PodDelete:
    """kubectl's filters in order (DaemonSet, mirror, local storage, controller); the first that holds
    the pod back decides, else the last one's word stands. `daemonsets` maps each controlling
    DaemonSet to None (it exists), ``"notfound"`` or the error of looking it up."""
    status = PodDelete(pod, True)
    for check in (_daemonset_filter, _mirror_filter, _local_storage_filter, _unreplicated_filter):
        status = check(pod, options, daemonsets)
        if not status.delete:
            break
    return status


def _daemonset_filter(
    pod: Obj, options: DrainOptions, daemonsets: Mapping[tuple[str, str], str | None]
) -> PodDelete:
    owner = _daemonset_ref(pod)
    if owner is None or _finished(pod):
        return PodDelete(pod, True)
    problem = daemonsets.get(owner)
    if problem == "notfound":
        message = f'daemonsets.apps "{owner[1]}" not found'
        if options.force:  # an orphan of a deleted DaemonSet goes with --force
            return PodDelete(pod, True, WARNING, message)
        return PodDelete(pod, False, ERROR, message)
    if problem is not None:
        return PodDelete(pod, False, ERROR, problem)
    if not options.ignore_daemonsets:
        return PodDelete(pod, False, ERROR, _DAEMONSET_FATAL)
    return PodDelete(pod, False, WARNING, _DAEMONSET_WARNING)


def _mirror_filter(
    pod: Obj, options: DrainOptions, daemonsets: Mapping[tuple[str, str], str | None]
) -> PodDelete:
    if MIRROR_POD_ANNOTATION in annotations_of(pod):
        return PodDelete(pod, False, SKIP)
    return PodDelete(pod, True)


def _local_storage_filter(
    pod: Obj, options: DrainOptions, daemonsets: Mapping[tuple[str, str], str | None]
) -> PodDelete:
    if not _has_local_storage(pod) or _finished(pod):
        return PodDelete(pod, True)
    if not options.delete_emptydir_data:
        return PodDelete(pod, False, ERROR, _LOCAL_STORAGE_FATAL)
    return PodDelete(pod, True, WARNING, _LOCAL_STORAGE_WARNING)


def _unreplicated_filter(
    pod: Obj, options: DrainOptions, daemonsets: Mapping[tuple[str, str], str | None]
) -> PodDelete:
    if _finished(pod) or controller_of(pod) is not None:
        return PodDelete(pod, True)
    if options.force:
        return PodDelete(pod, True, WARNING, _UNMANAGED_WARNING)
    return PodDelete(pod, False, ERROR, _UNMANAGED_FATAL)


def _ref(pod: Obj) -> str:
    return f"{namespace_or_default(pod)}/{name_of(pod)}"


def _grouped(decisions: Sequence[PodDelete], reason: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for decision in decisions:
        if decision.reason == reason:
            grouped.setdefault(decision.message or "unexpected error", []).append(_ref(decision.pod))
    return grouped


def warnings(decisions: Sequence[PodDelete]) -> str:
    """kubectl's ``PodDeleteList.Warnings``: ``<what>: ns/a, ns/b; <what>: ...`` ("" when none)."""
    return "; ".join(f"{what}: {', '.join(pods)}" for what, pods in _grouped(decisions, WARNING).items())


def refusals(decisions: Sequence[PodDelete]) -> list[str]:
    """kubectl's ``PodDeleteList.errors``: ``cannot delete <what>: ns/a, ns/b``, one per reason."""
    return [f"cannot delete {what}: {', '.join(pods)}" for what, pods in _grouped(decisions, ERROR).items()]


def aggregate(messages: Sequence[str]) -> str:
    """How Kubernetes' ``utilerrors.Aggregate`` reads: one error as itself, more as ``[a, b]``."""
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def go_duration(nanos: int) -> str:
    """A duration as Go's ``time.Duration.String()`` writes it: ``5s``, ``1m30s``, ``1h0m0s``, ``500ms``."""
    if nanos == 0:
        return "0s"
    sign, n = ("-" if nanos < 0 else ""), abs(nanos)

    def fraction(value: int, unit: int) -> str:
        whole, rest = divmod(value, unit)
        digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
        return f"{whole}.{digits}" if digits else str(whole)

    if n < SECOND:
        for suffix, unit in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= unit:
                return f"{sign}{fraction(n, unit)}{suffix}"
    hours, rest = divmod(n, 3600 * SECOND)
    minutes, rest = divmod(rest, 60 * SECOND)
    text = f"{fraction(rest, SECOND)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _quoted(text: str) -> str:
    """Go's ``%q`` of a name (which needs no escapes beyond JSON's)."""
    return json.dumps(text, ensure_ascii=False)


# -- talking to the store ---------------------------------------------------------------------------


def _server_line(exc: StoreError) -> str:
    return f"Error from server ({exc.reason}): {exc.message}"


async def pods_for_deletion(client: StoreClient, node: str, options: DrainOptions) -> list[PodDelete]:
    """Every pod bound to `node` (and matching ``--pod-selector``) with the filters' decision, in the
    order of their keys (namespace, name)."""
    listed = (await client.list("Pod")).items
    pods = sorted(
        (
            pod
            for pod in listed
            if node_name(pod) == node
            and (options.pod_selector is None or selector_matches(options.pod_selector, labels(pod)))
        ),
        key=lambda pod: (namespace_or_default(pod), name_of(pod)),
    )
    daemonsets: dict[tuple[str, str], str | None] = {}
    for pod in pods:
        owner = _daemonset_ref(pod)
        if owner is None or owner in daemonsets or _finished(pod):
            continue
        try:
            await client.get("DaemonSet", owner[1], owner[0])
            daemonsets[owner] = None
        except NotFound:
            daemonsets[owner] = "notfound"
        except StoreError as exc:
            daemonsets[owner] = exc.message
    return [classify(pod, options, daemonsets) for pod in pods]


def _expired(deadline: float | None) -> bool:
    return deadline is not None and asyncio.get_running_loop().time() >= deadline


def _until(delay: float, deadline: float | None) -> float:
    """`delay`, cut short at `deadline`."""
    if deadline is None:
        return delay
    return max(0.0, min(delay, deadline - asyncio.get_running_loop().time()))


async def _wait_gone(
    client: StoreClient, pods: Sequence[Obj], deadline: float | None, done: str, failed: str
) -> StoreError | str | None:
    """Poll until every pod of `pods` is gone (absent, or its name taken by another uid), printing
    ``pod/NAME <done>`` for each; the store's error (after ``pod/NAME <failed>``), the deadline
    (Go's ``context deadline exceeded``), or None."""
    pending = list(pods)
    while True:
        left: list[Obj] = []
        for pod in pending:
            try:
                current: Obj | None = await client.get("Pod", name_of(pod), namespace_or_default(pod))
            except NotFound:
                current = None
            except StoreError as exc:
                click.echo(f"pod/{name_of(pod)} {failed}")
                return exc
            if current is None or uid_of(current) != uid_of(pod):
                click.echo(f"pod/{name_of(pod)} {done}")
            else:
                left.append(pod)
        pending = left
        if not pending:
            return None
        if _expired(deadline):
            return _DEADLINE_EXCEEDED
        await asyncio.sleep(_until(DELETE_POLL_INTERVAL, deadline))


async def _evict_one(
    client: StoreClient, pod: Obj, options: DrainOptions, deadline: float | None
) -> str | None:
    """Evict `pod` (retrying while a budget refuses) and wait until it is gone; the error, or None."""
    name, namespace = name_of(pod), namespace_or_default(pod)
    where = f"pods/{_quoted(name)} -n {_quoted(namespace)}"
    active = pod
    while True:
        click.echo(f"evicting pod {namespace}/{name}")
        if _expired(deadline):
            return f"error when evicting {where}: global timeout reached: {go_duration(options.timeout_ns)}"
        try:
            await client.evict(name, namespace, grace_period=options.grace_period)
            break
        except NotFound:
            return None  # already gone: nothing to wait for (kubectl prints nothing more either)
        except TooManyRequests as exc:
            retry = go_duration(int(EVICTION_RETRY_DELAY * SECOND))
            click.echo(f"error when evicting {where} (will retry after {retry}): {exc.message}", err=True)
            await asyncio.sleep(_until(EVICTION_RETRY_DELAY, deadline))
        except StoreError as exc:
            return f"error when evicting {where}: {exc.message}"
        with contextlib.suppress(StoreError):  # a failed look is left to the next eviction to sort out
            active = await client.get("Pod", name, namespace)
    problem = await _wait_gone(client, [active], deadline, "evicted", "eviction failed")
    if problem is None:
        return None
    detail = problem.message if isinstance(problem, StoreError) else problem
    return (
        f"error when waiting for pod {_quoted(name)} in namespace {_quoted(namespace)} to terminate: {detail}"
    )


async def _evict_pods(client: StoreClient, pods: Sequence[Obj], options: DrainOptions) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout_ns / SECOND if options.timeout_ns else None
    errors: list[str] = []  # in the order the pods finish, as kubectl collects them

    async def one(pod: Obj) -> None:
        error = await _evict_one(client, pod, options, deadline)
        if error is not None:
            errors.append(error)

    async with asyncio.TaskGroup() as group:
        for pod in pods:
            group.create_task(one(pod))
    if errors:
        raise DrainFailed(aggregate(errors), errors)


async def _delete_pods(client: StoreClient, pods: Sequence[Obj], options: DrainOptions) -> None:
    for pod in pods:
        try:
            await client.delete(
                "Pod", name_of(pod), namespace_or_default(pod), grace_period=options.grace_period
            )
        except NotFound:
            pass
        except StoreError as exc:
            raise DrainFailed(exc.message, [_server_line(exc)]) from exc
    loop = asyncio.get_running_loop()
    deadline = loop.time() + options.timeout_ns / SECOND if options.timeout_ns else None
    problem = await _wait_gone(client, pods, deadline, "deleted", "deletion failed")
    if isinstance(problem, StoreError):
        raise DrainFailed(problem.message, [_server_line(problem)])
    if problem is not None:
        raise DrainFailed(problem, [f"error: {problem}"])


async def drain_pods(client: StoreClient, node: str, options: DrainOptions) -> None:
    """Evict (or delete) the pods of `node` that may go and wait until they are gone; DrainFailed if not.
    The node is cordoned by the caller."""
    try:
        decisions = await pods_for_deletion(client, node, options)
    except StoreError as exc:
        raise DrainFailed(exc.message, [_server_line(exc)]) from exc
    refused = refusals(decisions)
    if refused:
        raise DrainFailed(aggregate(refused), refused)
    warned = warnings(decisions)
    if warned:
        click.echo(f"Warning: {warned}", err=True)
    pods = [decision.pod for decision in decisions if decision.delete]
    if options.dry_run:
        for pod in pods:
            click.echo(f"evicting pod {_ref(pod)} (dry run)")
        return
    if not pods:
        return
    try:
        if options.disable_eviction:
            await _delete_pods(client, pods, options)
        else:
            await _evict_pods(client, pods, options)
    except DrainFailed as failure:
        await _report_pending(client, node, options, failure)
        raise


async def _report_pending(
    client: StoreClient, node: str, options: DrainOptions, failure: DrainFailed
) -> None:
    """After a failed eviction: the pods that would still have to go, as kubectl lists them."""
    try:
        decisions = await pods_for_deletion(client, node, options)
    except StoreError as exc:
        decisions, problems = [], [_server_line(exc)]
    else:
        problems = refusals(decisions)
    pending = [decision.pod for decision in decisions if decision.delete]
    if pending:
        click.echo(
            f"There are pending pods in node {_quoted(node)} when an error occurred: {failure.text}", err=True
        )
        for pod in pending:
            click.echo(f"pod/{name_of(pod)}", err=True)
    if problems:
        click.echo("Following errors occurred while getting the list of pods to delete:", err=True)
        click.echo(aggregate(problems), err=True)


# -- the command ------------------------------------------------------------------------------------


@click.command("drain")
@click.argument("node")
@click.option(
    "--force", is_flag=True, help="Evict pods that declare no controller too (they are not replaced)."
)
@click.option(
    "--ignore-daemonsets", is_flag=True, help="Leave DaemonSet-managed pods alone instead of refusing."
)
@click.option(
    "--delete-emptydir-data", is_flag=True, help="Evict pods with emptyDir volumes too (their data is lost)."
)
@click.option(
    "--grace-period",
    type=int,
    default=-1,
    show_default=True,
    help="Seconds each pod gets to terminate (negative: the pod's own terminationGracePeriodSeconds).",
)
@click.option(
    "--timeout",
    type=GoDuration(),
    default="0s",
    show_default=True,
    help="Give up after this long (a Go duration: 30s, 5m, 1h30m); 0 waits forever.",
)
@click.option("--pod-selector", default="", help="Only the pods of the node matching this label selector.")
@click.option(
    "--disable-eviction",
    is_flag=True,
    help="Delete the pods instead of evicting them: PodDisruptionBudgets are not consulted.",
)
@click.option(
    "--dry-run",
    type=click.Choice(["none", "client"]),
    default="none",
    is_flag=False,
    flag_value="client",
    show_default=True,
    help="client: only print what would be cordoned and evicted.",
)
@store_options
def drain(
    *,
    node: str,
    force: bool,
    ignore_daemonsets: bool,
    delete_emptydir_data: bool,
    grace_period: int,
    timeout: int,
    pod_selector: str,
    disable_eviction: bool,
    dry_run: str,
    cluster_override: str | None,
    store_socket: Path | None,
) -> None:
    """Drain NODE for maintenance: cordon it, then evict its pods (as PodDisruptionBudgets allow, retried
    every 5 s) and wait until they are gone. `ambit uncordon NODE` puts it back into service.

    \b
      ambit drain node2
      ambit drain node2 --force --timeout 2m
      ambit drain node2 --pod-selector app=web --dry-run=client
    """
    target = store_target(cluster_override, store_socket)
    try:
        selector = label_selector(pod_selector) if pod_selector.strip() else None
    except SelectorError:
        fail("error: --pod-selector=<pod_selector> must be a valid label selector")
    options = DrainOptions(
        force=force,
        ignore_daemonsets=ignore_daemonsets,
        delete_emptydir_data=delete_emptydir_data,
        pod_selector=selector,
        grace_period=grace_period if grace_period >= 0 else None,
        timeout_ns=timeout,
        disable_eviction=disable_eviction,
        dry_run=dry_run == "client",
    )
    suffix = " (dry run)" if options.dry_run else ""

    async def work(client: StoreClient) -> bool:
        cordoned = await set_unschedulable(client, node, True, dry_run=options.dry_run)
        click.echo(f"node/{node} {cordoned}{suffix}")
        try:
            await drain_pods(client, node, options)
        except DrainFailed as failure:
            why = f"due to error: {failure.text}, continuing command..."
            click.echo(f"error: unable to drain node {_quoted(node)} {why}", err=True)
            click.echo("There are pending nodes to be drained:", err=True)
            click.echo(f" {node}", err=True)
            for line in failure.lines:
                click.echo(line, err=True)
            return False
        click.echo(f"node/{node} drained{suffix}")
        return True

    if not run_on_store(target, work):
        click.get_current_context().exit(1)
