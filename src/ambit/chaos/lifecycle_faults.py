"""Two operations as chaos experiments, done on the probe workload under load the way an operator does
them: a node drained for maintenance (:func:`node_drain`, as ``ambit drain``) and a rolling restart of
the probe's servers (:func:`app_rollout`, as ``ambit rollout restart``). Both drive the same cores as
the CLI (:mod:`ambit.runtime.drain`, :mod:`ambit.runtime.rollout`) through the cluster's store, and wait
for their own recovery, so ``FaultEvents.end`` is observed (see :mod:`ambit.chaos.experiments`).

The claim they measure: graceful termination takes a pod out of every proxy before it stops (the
kubelet waits until the control plane's proxies ACKed the pod's removal, then SIGTERM; the sample app
drains), so a pod that goes refuses no request sent through a Service that has another ready endpoint.
Only what really loses its server may fail: a pod IP whose pod is gone, a Service whose one endpoint was
evicted until its replacement is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ambit.chaos import workload
from ambit.chaos.experiments import ExperimentError, FaultPlan, enrolled, now, wait_until
from ambit.net.tasks import spawn
from ambit.reliability.flows import FaultEvents
from ambit.resources.durations import SECOND
from ambit.resources.objects import (
    controller_of,
    is_ready,
    labels,
    name_of,
    namespace_of,
    selector_matches,
    uid_of,
)
from ambit.runtime.deployment_revisions import RolloutError
from ambit.runtime.drain import DrainEvents, DrainFailed, DrainOptions, cordon, drain_pods, pods_for_deletion
from ambit.runtime.handle import ClusterHandle, HandleError
from ambit.runtime.replica_sets import rfc3339
from ambit.runtime.rollout import restart_deployment, rolled_out
from ambit.store.client import StoreClient
from ambit.store.types import NotFound, Obj, StoreError, TooManyRequests

T = TypeVar("T")

LOAD_APP = workload.LOAD_APP
ECHO_APP = workload.ECHO_APP
NOT_PROBE_LOAD: Mapping[str, Any] = {
    "matchExpressions": [{"key": "app", "operator": "NotIn", "values": [LOAD_APP]}]
}
"""The drain's pod selector (``ambit drain --pod-selector app!=chaos-load``): the probe's load pods stay."""

BUDGET_RETRY = 0.5  # seconds between evictions a budget refused (``ambit drain`` waits kubectl's 5 s)
POLL = 0.2  # seconds between looks at the store while waiting


# --- pure parts --------------------------------------------------------------------------------------


def echo_budget(node: str) -> Obj:
    """A PodDisruptionBudget ``echo-<node>`` over the node's echo pod: ``minAvailable: 1`` on a
    Deployment of one replica, so it allows no voluntary disruption at all."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": workload.echo(node),
            "namespace": workload.NAMESPACE,
            "labels": dict(workload.PART_OF),
        },
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": ECHO_APP, "chaos-node": node}}},
    }


def drain_options(timeout: float) -> DrainOptions:
    """``ambit drain --ignore-daemonsets --delete-emptydir-data --pod-selector app!=chaos-load
    --timeout <timeout>``, with a shorter retry after a budget's refusal and a finer poll for the pods
    still to go."""
    return DrainOptions(
        ignore_daemonsets=True,
        delete_emptydir_data=True,  # as operators drain: bookinfo's pods keep an emptyDir
        pod_selector=NOT_PROBE_LOAD,
        timeout_ns=int(timeout * SECOND),
        retry_delay=BUDGET_RETRY,
        poll_interval=POLL,
    )


def replacements(evicted: Sequence[Obj], pods: Iterable[Obj]) -> dict[str, list[Obj]]:
    """For each controller (by uid) of an evicted pod, its pods now: not one of the evicted, not
    terminating. A pod with no controller is not replaced, so it has no entry."""
    gone = {uid_of(p) for p in evicted}
    owners = {str(ref.get("uid")) for p in evicted if (ref := controller_of(p)) is not None}
    found: dict[str, list[Obj]] = {owner: [] for owner in owners}
    for pod in pods:
        owner = str((controller_of(pod) or {}).get("uid"))
        if (
            owner in found
            and uid_of(pod) not in gone
            and not (pod.get("metadata") or {}).get("deletionTimestamp")
        ):
            found[owner].append(pod)
    return found


def replacements_ready(evicted: Sequence[Obj], pods: Iterable[Obj]) -> bool:
    """Every evicted pod that had a controller has a Ready replacement (:func:`replacements`)."""
    return all(any(is_ready(p) for p in group) for group in replacements(evicted, pods).values())


def old_pods_gone(pods: Iterable[Obj], deployments: Iterable[str]) -> bool:
    """No pod of these Deployments (pod label ``chaos-pod: <deployment>``) is terminating any more."""
    names = set(deployments)
    return not any(
        labels(p).get("chaos-pod") in names and (p.get("metadata") or {}).get("deletionTimestamp")
        for p in pods
    )


# --- the store ---------------------------------------------------------------------------------------


def _on_store(handle: ClusterHandle, work: Callable[[StoreClient], Awaitable[T]]) -> T:
    async def run() -> T:
        async with StoreClient(handle.layout.store_socket, timeout=handle.timeout) as client:
            return await work(client)

    return asyncio.run(run())


class BudgetRelease(DrainEvents):
    """The drain's lines, kept; a refusal by the experiment's own budget is noted, then the budget is
    deleted so the next try goes through. A refusal by any other budget is left to be retried (the
    drain then ends at its timeout, as ``ambit drain`` would)."""

    def __init__(self, client: StoreClient, budget: Obj) -> None:
        self.client = client
        self.budget = budget
        self.lines: list[str] = []
        self.refused_at: float | None = None
        self.released_at: float | None = None

    def line(self, text: str, *, err: bool = False) -> None:
        self.lines.append(text)

    async def refused(self, pod: Obj, error: TooManyRequests) -> None:
        if not selector_matches(self.budget["spec"]["selector"], labels(pod)):
            return
        if self.refused_at is None:
            self.refused_at = now()
        with contextlib.suppress(NotFound):
            await self.client.delete("PodDisruptionBudget", name_of(self.budget), workload.NAMESPACE)
        if self.released_at is None:
            self.released_at = now()


@dataclass(frozen=True, slots=True)
class Drained:
    """What draining the node saw: when the cordon was sent, the pods evicted, when they were all gone,
    when their replacements were first seen Ready and then meshed, and the drain's record."""

    start: float
    evicted: list[Obj]
    gone: float
    ready: float
    meshed: float
    events: BudgetRelease


def _meshed(handle: ClusterHandle, pods: set[tuple[str, str]]) -> bool:
    """Every (namespace, name) of ``pods`` captured and served by its node's ztunnel: the drain moves
    the user's pods too (bookinfo's, in `make chaos`), not only the probe's."""
    try:
        states = {ns: handle.meshed(ns) for ns in {ns for ns, _ in pods}}
    except (HandleError, OSError):
        return False
    return all(states[ns].get(name) is True for ns, name in pods)


async def _replaced(
    handle: ClusterHandle, client: StoreClient, evicted: Sequence[Obj]
) -> tuple[float, float]:
    """Poll until every evicted pod's replacement is Ready, then until those replacements are captured
    and served by their ztunnel; the two instants."""
    while True:
        pods = (await client.list("Pod")).items
        if replacements_ready(evicted, pods):
            break
        await asyncio.sleep(POLL)
    ready = now()
    ready_pods = [p for group in replacements(evicted, pods).values() for p in group if is_ready(p)]
    # A waypoint replica among them is never captured (it is the mesh): wait for the enrolled ones.
    names = {(namespace_of(p), name_of(p)) for p in await asyncio.to_thread(enrolled, handle, ready_pods)}
    while True:
        if await asyncio.to_thread(_meshed, handle, names):
            break
        await asyncio.sleep(POLL)
    return ready, now()


async def _drain(
    handle: ClusterHandle, client: StoreClient, node: str, plan: FaultPlan, budget: Obj
) -> Drained:
    """Cordon `node` and drain it, watching for the replacements of the pods it evicts meanwhile (an
    echo pod's replacement is Ready long before the evicted one has finished its graceful stop)."""
    events = BudgetRelease(client, budget)
    options = drain_options(plan.recovery_timeout)
    start = now()
    try:
        await cordon(client, node)
        chosen = [d.pod for d in await pods_for_deletion(client, node, options) if d.delete]
        watch = spawn(_replaced(handle, client, chosen))
        try:
            evicted = await drain_pods(client, node, options, events)
            gone = now()
            if sorted(map(uid_of, evicted)) != sorted(map(uid_of, chosen)):  # the node changed meanwhile
                watch.cancel()
                watch = spawn(_replaced(handle, client, evicted))
            ready, meshed = await asyncio.wait_for(watch, plan.recovery_timeout)
        finally:
            watch.cancel()
    except StoreError as exc:
        raise ExperimentError(f"draining {node}: {exc}") from exc
    except DrainFailed as failure:
        said = "; ".join(events.lines[-5:])
        raise ExperimentError(f"draining {node} failed: {failure.text} ({said})") from failure
    except TimeoutError as exc:
        what = ", ".join(sorted(name_of(p) for p in chosen))
        raise ExperimentError(
            f"timed out after {plan.recovery_timeout:.0f} s waiting for the replacements of {what} to be "
            "ready and meshed"
        ) from exc
    return Drained(start, evicted, gone, ready, meshed, events)


def _uncordon(handle: ClusterHandle, node: str) -> float:
    try:
        _on_store(handle, lambda c: cordon(c, node, False))
    except (StoreError, OSError) as exc:
        raise ExperimentError(f"uncordoning {node} failed: {exc}") from exc
    return now()


def _remove_budget(handle: ClusterHandle, budget: Obj) -> None:
    with contextlib.suppress(StoreError, OSError):
        handle.delete("PodDisruptionBudget", name_of(budget), workload.NAMESPACE)


def _roll(handle: ClusterHandle, name: str, within: float) -> tuple[float, float]:
    """Restart Deployment ``name`` of the probe; (when the restart was written, when it rolled out)."""

    def restart(client: StoreClient) -> Awaitable[Obj]:
        return restart_deployment(client, name, workload.NAMESPACE, rfc3339(time.time()))

    def done() -> bool:
        return rolled_out(handle.get("Deployment", name, workload.NAMESPACE))

    began = now()
    _on_store(handle, restart)
    return began, wait_until(done, f"deployment {name} to roll out", within, POLL)


# --- the experiments ---------------------------------------------------------------------------------


def node_drain(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Drain the target node as ``ambit drain --ignore-daemonsets --delete-emptydir-data --pod-selector
    app!=chaos-load``, then put it back into service.

    * Before the fault, a PodDisruptionBudget ``echo-<node>`` (``minAvailable: 1``) covers the node's
      echo pod. With one replica it allows no disruption, so the eviction must be refused (429) and
      the pod keep serving: the drain reports the refusal (mark ``eviction refused``), the experiment
      then deletes the budget (mark ``budget removed``, as an operator who accepts the disruption) and
      the drain's next try evicts it. An eviction the budget did not refuse is an
      :class:`ExperimentError` (budgets not respected).
    * ``start``: the cordon. The drain evicts every pod of the node through the Eviction API except
      the probe's load pods (label ``app=chaos-load``): they play a DaemonSet's part (the probe
      client of that node runs in it; evicting it would end the node's probe, not measure the drain).
      The control-plane pods are mirror pods and stay, as ``ambit drain`` leaves them.
    * ``end``: every evicted pod's replacement (same controller) first seen Ready, watched while the
      drain runs. The echo pod is pinned with ``nodeName``, so its replacement comes back on the
      cordoned node itself (a set nodeName binds regardless of a cordon, in Kubernetes and here), as
      soon as the evicted pod is marked for deletion: it is Ready before the evicted pod has finished
      its graceful stop. Mark ``meshed``: the replacements captured and served by their ztunnel; mark
      ``evicted``: every evicted pod gone (the drain done, usually after ``end``). Then the node is
      uncordoned (mark ``uncordoned``; also on failure, and the budget is removed).
    """
    node = plan.target_node
    budget = echo_budget(node)
    handle.apply([budget])
    try:
        drained = _on_store(handle, lambda c: _drain(handle, c, node, plan, budget))
        refused = drained.events.refused_at
        if refused is None and any(
            labels(p).get("chaos-pod") == workload.echo(node) for p in drained.evicted
        ):
            raise ExperimentError(
                f"the eviction of {node}'s echo pod was not refused by PodDisruptionBudget "
                f"{name_of(budget)} (minAvailable 1, one replica): budgets are not respected"
            )
    except BaseException:
        with contextlib.suppress(ExperimentError):
            _uncordon(handle, node)
        _remove_budget(handle, budget)
        raise
    uncordoned = _uncordon(handle, node)
    _remove_budget(handle, budget)
    marks: list[tuple[str, float]] = []
    if refused is not None:
        marks.append(("eviction refused", refused))
    if drained.events.released_at is not None:
        marks.append(("budget removed", drained.events.released_at))
    marks += [("ready", drained.ready), ("meshed", drained.meshed), ("evicted", drained.gone)]
    marks.append(("uncordoned", uncordoned))
    return FaultEvents("node-drain", node, node, drained.start, drained.ready, marks=tuple(marks))


def app_rollout(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """A rolling restart (``ambit rollout restart deployment``) of every ``echo-<node>`` Deployment of
    the probe workload, one after another in node order, each waited for until ``rollout status``
    says it is done (the controller saw the new template, the new replica is updated and available,
    no old replica is still counted: a terminating one is not).

    ``start``: the first restart; ``end``: the last rollout complete. Marks ``restart <deployment>``
    and ``rolled out <deployment>`` for each, and ``old pods gone`` once the last replaced pod has
    terminated: after ``end``, since with the default strategy (maxSurge 1, maxUnavailable 0 for one
    replica) the new pod is available before the old one is asked to stop, and the old one then
    drains within its grace period."""
    names = [workload.echo(node) for node in handle.nodes()]
    marks: list[tuple[str, float]] = []
    try:
        for name in names:
            began, done = _roll(handle, name, plan.recovery_timeout)
            marks += [(f"restart {name}", began), (f"rolled out {name}", done)]
    except (RolloutError, StoreError) as exc:
        raise ExperimentError(f"rolling out the probe's echo Deployments: {exc}") from exc
    gone = wait_until(
        lambda: old_pods_gone(handle.pods(workload.NAMESPACE), names),
        "the replaced echo pods to terminate",
        plan.recovery_timeout,
        POLL,
    )
    start, end = marks[0][1], marks[-1][1]
    marks.append(("old pods gone", gone))
    return FaultEvents("app-rollout", ", ".join(names), "", start, end, marks=tuple(marks))
