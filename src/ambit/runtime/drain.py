"""Draining a node, as ``kubectl drain`` does it: cordon, choose the node's pods, evict them (retried
while a PodDisruptionBudget refuses) and wait until they are gone. ``ambit drain`` (:mod:`ambit.cli.drain`,
which documents the command's lines and exit) and the chaos experiment ``node-drain``
(:mod:`ambit.chaos.lifecycle_faults`) both drive this core through one :class:`StoreClient`.

What it does follows kubectl (kubernetes/kubectl ``pkg/drain/drain.go``, ``filters.go`` and
``pkg/cmd/drain/drain.go``, read for the facts only):

* :func:`cordon` sets ``spec.unschedulable`` (retried on a conflict).
* :func:`pods_for_deletion` takes the pods bound to the node (``spec.nodeName``, narrowed by
  ``DrainOptions.pod_selector``) through kubectl's filters in kubectl's order, the first that holds a
  pod back deciding (:func:`classify`): DaemonSet-managed pods are never evicted and refuse the drain
  unless ``ignore_daemonsets``; mirror pods (annotation ``kubernetes.io/config.mirror``: ambit's
  control-plane pods, see ``runtime/bootstrap.py``) are skipped without a word; pods with an
  ``emptyDir`` volume refuse it unless ``delete_emptydir_data``; pods without a controller
  ``ownerReference`` refuse it unless ``force``. A finished pod (Succeeded/Failed) passes the
  DaemonSet, local-storage and controller rules.
* :func:`drain_pods` evicts the chosen pods concurrently; a refusal by a budget (429) is reported
  (:meth:`DrainEvents.refused`) and retried every ``DrainOptions.retry_delay`` seconds, any other error
  fails that pod; ``disable_eviction`` deletes the pods instead (no budget is consulted). It then
  waits until each pod is gone (its uid no longer in the store) and returns the pods it took.

Every line kubectl would print goes to :meth:`DrainEvents.line` (stdout, or ``err``: stderr); the base
:class:`DrainEvents` drops them, the CLI prints them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

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
from ambit.store.labels import LABEL_RETRIES
from ambit.store.types import Conflict, NotFound, Obj, StoreError, TooManyRequests

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
    """What decides which pods go and how (the flags of ``ambit drain``, and two pacing knobs)."""

    force: bool = False
    ignore_daemonsets: bool = False
    delete_emptydir_data: bool = False
    pod_selector: Mapping[str, Any] | None = None  # a LabelSelector; None: every pod
    grace_period: int | None = None  # None: each pod's own terminationGracePeriodSeconds
    timeout_ns: int = 0  # 0: no limit
    disable_eviction: bool = False
    dry_run: bool = False
    retry_delay: float = EVICTION_RETRY_DELAY  # after a budget's refusal
    poll_interval: float = DELETE_POLL_INTERVAL  # between looks for the pods still to go


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


class DrainEvents:
    """Where a drain reports. The base drops every line and lets each refusal be retried."""

    def line(self, text: str, *, err: bool = False) -> None:
        """One line kubectl prints (on stderr with `err`)."""

    async def refused(self, pod: Obj, error: TooManyRequests) -> None:
        """A PodDisruptionBudget refused `pod`'s eviction (after its line was reported); the eviction is
        retried ``DrainOptions.retry_delay`` seconds after this returns."""


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


def pod_ref(pod: Obj) -> str:
    """``namespace/name``."""
    return f"{namespace_or_default(pod)}/{name_of(pod)}"


def _grouped(decisions: Sequence[PodDelete], reason: str) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for decision in decisions:
        if decision.reason == reason:
            grouped.setdefault(decision.message or "unexpected error", []).append(pod_ref(decision.pod))
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


def quoted(text: str) -> str:
    """Go's ``%q`` of a name (which needs no escapes beyond JSON's)."""
    return json.dumps(text, ensure_ascii=False)


# -- talking to the store ---------------------------------------------------------------------------


def server_line(exc: StoreError) -> str:
    """How kubectl prints an API server's error."""
    return f"Error from server ({exc.reason}): {exc.message}"


async def cordon(client: StoreClient, node: str, unschedulable: bool = True) -> bool:
    """Set (or, with ``unschedulable=False``, clear) ``spec.unschedulable`` of `node`; whether it
    changed. Retried on a conflict; ``NotFound`` and other store errors propagate, ``Conflict`` after
    :data:`LABEL_RETRIES` attempts too."""
    for _ in range(LABEL_RETRIES):
        obj = await client.get("Node", node, None)
        spec = dict(obj.get("spec") or {})
        if bool(spec.get("unschedulable")) == unschedulable:
            return False
        if unschedulable:
            spec["unschedulable"] = True
        else:
            spec.pop("unschedulable", None)
        try:
            await client.update({**obj, "spec": spec})
        except Conflict:
            continue
        return True
    raise Conflict(f'node "{node}" kept changing; gave up after {LABEL_RETRIES} attempts', status=409)


async def pods_for_deletion(client: StoreClient, node: str, options: DrainOptions) -> list[PodDelete]:
    """Every pod bound to `node` (and matching ``pod_selector``) with the filters' decision, in the
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
    client: StoreClient,
    pods: Sequence[Obj],
    deadline: float | None,
    options: DrainOptions,
    events: DrainEvents,
    *,
    done: str,
    failed: str,
) -> StoreError | str | None:
    """Poll until every pod of `pods` is gone (absent, or its name taken by another uid), reporting
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
                events.line(f"pod/{name_of(pod)} {failed}")
                return exc
            if current is None or uid_of(current) != uid_of(pod):
                events.line(f"pod/{name_of(pod)} {done}")
            else:
                left.append(pod)
        pending = left
        if not pending:
            return None
        if _expired(deadline):
            return _DEADLINE_EXCEEDED
        await asyncio.sleep(_until(options.poll_interval, deadline))


async def _evict_one(
    client: StoreClient, pod: Obj, options: DrainOptions, deadline: float | None, events: DrainEvents
) -> str | None:
    """Evict `pod` (retrying while a budget refuses) and wait until it is gone; the error, or None."""
    name, namespace = name_of(pod), namespace_or_default(pod)
    where = f"pods/{quoted(name)} -n {quoted(namespace)}"
    active = pod
    while True:
        events.line(f"evicting pod {namespace}/{name}")
        if _expired(deadline):
            return f"error when evicting {where}: global timeout reached: {go_duration(options.timeout_ns)}"
        try:
            await client.evict(name, namespace, grace_period=options.grace_period)
            break
        except NotFound:
            return None  # already gone: nothing to wait for (kubectl prints nothing more either)
        except TooManyRequests as exc:
            retry = go_duration(int(options.retry_delay * SECOND))
            events.line(f"error when evicting {where} (will retry after {retry}): {exc.message}", err=True)
            await events.refused(pod, exc)
            await asyncio.sleep(_until(options.retry_delay, deadline))
        except StoreError as exc:
            return f"error when evicting {where}: {exc.message}"
        with contextlib.suppress(StoreError):  # a failed look is left to the next eviction to sort out
            active = await client.get("Pod", name, namespace)
    problem = await _wait_gone(
        client, [active], deadline, options, events, done="evicted", failed="eviction failed"
    )
    if problem is None:
        return None
    detail = problem.message if isinstance(problem, StoreError) else problem
    subject = f"pod {quoted(name)} in namespace {quoted(namespace)}"
    return f"error when waiting for {subject} to terminate: {detail}"


def _deadline(options: DrainOptions) -> float | None:
    loop = asyncio.get_running_loop()
    return loop.time() + options.timeout_ns / SECOND if options.timeout_ns else None


async def _evict_pods(
    client: StoreClient, pods: Sequence[Obj], options: DrainOptions, events: DrainEvents
) -> None:
    deadline = _deadline(options)
    errors: list[str] = []  # in the order the pods finish, as kubectl collects them

    async def one(pod: Obj) -> None:
        error = await _evict_one(client, pod, options, deadline, events)
        if error is not None:
            errors.append(error)

    async with asyncio.TaskGroup() as group:
        for pod in pods:
            group.create_task(one(pod))
    if errors:
        raise DrainFailed(aggregate(errors), errors)


async def _delete_pods(
    client: StoreClient, pods: Sequence[Obj], options: DrainOptions, events: DrainEvents
) -> None:
    for pod in pods:
        try:
            await client.delete(
                "Pod", name_of(pod), namespace_or_default(pod), grace_period=options.grace_period
            )
        except NotFound:
            pass
        except StoreError as exc:
            raise DrainFailed(exc.message, [server_line(exc)]) from exc
    problem = await _wait_gone(
        client, pods, _deadline(options), options, events, done="deleted", failed="deletion failed"
    )
    if isinstance(problem, StoreError):
        raise DrainFailed(problem.message, [server_line(problem)])
    if problem is not None:
        raise DrainFailed(problem, [f"error: {problem}"])


async def drain_pods(
    client: StoreClient, node: str, options: DrainOptions, events: DrainEvents | None = None
) -> list[Obj]:
    """Evict (or delete) the pods of `node` that may go and wait until they are gone; the pods taken
    (with ``dry_run``: those that would be). :class:`DrainFailed` if not. The caller cordons the node."""
    events = events or DrainEvents()
    try:
        decisions = await pods_for_deletion(client, node, options)
    except StoreError as exc:
        raise DrainFailed(exc.message, [server_line(exc)]) from exc
    refused = refusals(decisions)
    if refused:
        raise DrainFailed(aggregate(refused), refused)
    warned = warnings(decisions)
    if warned:
        events.line(f"Warning: {warned}", err=True)
    pods = [decision.pod for decision in decisions if decision.delete]
    if options.dry_run:
        for pod in pods:
            events.line(f"evicting pod {pod_ref(pod)} (dry run)")
        return pods
    if not pods:
        return pods
    try:
        if options.disable_eviction:
            await _delete_pods(client, pods, options, events)
        else:
            await _evict_pods(client, pods, options, events)
    except DrainFailed as failure:
        await _report_pending(client, node, options, failure, events)
        raise
    return pods


async def _report_pending(
    client: StoreClient, node: str, options: DrainOptions, failure: DrainFailed, events: DrainEvents
) -> None:
    """After a failed eviction: the pods that would still have to go, as kubectl lists them."""
    try:
        decisions = await pods_for_deletion(client, node, options)
    except StoreError as exc:
        decisions, problems = [], [server_line(exc)]
    else:
        problems = refusals(decisions)
    pending = [decision.pod for decision in decisions if decision.delete]
    if pending:
        events.line(
            f"There are pending pods in node {quoted(node)} when an error occurred: {failure.text}", err=True
        )
        for pod in pending:
            events.line(f"pod/{name_of(pod)}", err=True)
    if problems:
        events.line("Following errors occurred while getting the list of pods to delete:", err=True)
        events.line(aggregate(problems), err=True)
