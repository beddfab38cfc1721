"""The pure parts of the node-drain and app-rollout experiments: which pods the drain takes, the echo
pod's budget, when replacements count as ready, and the budget released after its refusal."""

from __future__ import annotations

import asyncio
import copy
import math
import time
from typing import Any, cast

import pytest

from ambit.chaos import lifecycle_faults as lf
from ambit.chaos import workload
from ambit.chaos.experiments import FaultPlan
from ambit.reliability.flows import Destination, FlowKey, Timing, Topology
from ambit.reliability.predict import predict
from ambit.resources import disruption
from ambit.resources.objects import labels, selector_matches
from ambit.runtime.drain import SKIP, pods_for_deletion
from ambit.runtime.handle import ClusterHandle
from ambit.store.client import StoreClient
from ambit.store.types import ListResult, NotFound, TooManyRequests

NOW = "2030-01-01T00:00:00Z"
NODES = ("node1", "node2", "node3")
TOPOLOGY = Topology(
    NODES,
    NODES,
    (
        *(Destination(f"echo-{n}", "service", (n,)) for n in NODES),
        Destination("pod-node2", "pod", ("node2",)),
        Destination("spread", "service", ("node1", "node2")),
    ),
)
RS_UID = "rs-echo-node2"


def pod(
    name: str,
    node: str,
    pod_labels: dict[str, str],
    *,
    uid: str | None = None,
    owner: str | None = RS_UID,
    ready: bool = True,
    terminating: bool = False,
    namespace: str = workload.NAMESPACE,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": pod_labels, "uid": uid or name}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}
        ]
    if terminating:
        meta["deletionTimestamp"] = NOW
    if annotations:
        meta["annotations"] = annotations
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "ambit/sample"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def echo_pod(node: str, **kw: Any) -> dict[str, Any]:
    kw.setdefault("owner", f"rs-echo-{node}")
    return pod(
        kw.pop("name", f"echo-{node}-abc"),
        node,
        {"app": "chaos-echo", "chaos-node": node, "chaos-pod": f"echo-{node}", "spread": "yes"},
        **kw,
    )


def load_pod(node: str) -> dict[str, Any]:
    load = {"app": "chaos-load", "chaos-node": node, "chaos-pod": f"load-{node}"}
    return pod(f"load-{node}-abc", node, load, owner=f"rs-load-{node}")


def controlplane_pod(node: str) -> dict[str, Any]:
    return pod(
        f"controlplane-{node}",
        node,
        {"app": "ambit-controlplane"},
        owner=None,
        namespace="ambit-system",
        annotations={"kubernetes.io/config.mirror": "mirror"},
    )


class FakeStore:
    """Just what the drain's pod choice and the budget release call."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = pods
        self.deleted: list[tuple[str, str, str | None]] = []

    async def list(self, kind: str) -> ListResult:
        assert kind == "Pod"
        return ListResult(list(self.pods), "1")

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        raise NotFound(f"{kind} {name} not found")

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.deleted.append((kind, name, namespace))
        return {}


def test_the_drain_takes_the_echo_pod_and_leaves_the_load_pod_and_the_control_plane() -> None:
    store = FakeStore([echo_pod("node2"), load_pod("node2"), controlplane_pod("node2"), echo_pod("node1")])
    decisions = asyncio.run(pods_for_deletion(cast(StoreClient, store), "node2", lf.drain_options(90.0)))
    by_name = {d.pod["metadata"]["name"]: d for d in decisions}
    assert set(by_name) == {"echo-node2-abc", "controlplane-node2"}, "the load pod is not even considered"
    assert by_name["echo-node2-abc"].delete
    assert not by_name["controlplane-node2"].delete and by_name["controlplane-node2"].reason == SKIP


def test_the_drain_selector_is_app_not_chaos_load() -> None:
    assert not selector_matches(lf.NOT_PROBE_LOAD, labels(load_pod("node2")))
    assert selector_matches(lf.NOT_PROBE_LOAD, labels(echo_pod("node2")))
    assert selector_matches(lf.NOT_PROBE_LOAD, {}), "pods without an app label go too"
    options = lf.drain_options(90.0)
    assert options.ignore_daemonsets and not options.force and not options.disable_eviction
    assert options.timeout_ns == 90 * 10**9


def test_the_echo_budget_covers_the_nodes_echo_pod_only_and_refuses_its_eviction() -> None:
    budget = lf.echo_budget("node2")
    echo2, echo1, load2 = echo_pod("node2"), echo_pod("node1"), load_pod("node2")
    assert disruption.pods_for_pdb(budget, [echo2, echo1, load2]) == [echo2]
    decision = disruption.evaluate_eviction(
        echo2, [budget], [echo2, echo1, load2], expected_scale=lambda _pod: 1, now=NOW
    )
    assert not decision.allowed and decision.status_code == 429 and decision.pdb == "echo-node2"
    assert disruption.evaluate_eviction(echo1, [budget], [echo2, echo1], expected_scale=None, now=NOW).allowed


def test_replacements_count_once_a_new_pod_of_the_same_controller_is_ready() -> None:
    old = echo_pod("node2", uid="old")
    evicted = [old]
    assert not lf.replacements_ready(
        evicted, [{**old, "metadata": {**old["metadata"], "deletionTimestamp": NOW}}]
    )
    starting = echo_pod("node2", name="echo-node2-new", uid="new", ready=False)
    assert not lf.replacements_ready(evicted, [starting, echo_pod("node1", uid="other")])
    ready = echo_pod("node2", name="echo-node2-new", uid="new")
    assert lf.replacements_ready(evicted, [ready])
    assert lf.replacements(evicted, [ready, echo_pod("node1", uid="other")]) == {RS_UID: [ready]}
    # a pod without a controller is not replaced: nothing to wait for
    assert lf.replacements_ready([pod("bare", "node2", {}, owner=None)], [])


def test_old_pods_gone_once_no_pod_of_the_deployments_is_terminating() -> None:
    names = ["echo-node1", "echo-node2"]
    new = echo_pod("node2", name="echo-node2-new")
    assert lf.old_pods_gone([new, echo_pod("node1")], names)
    assert not lf.old_pods_gone([new, echo_pod("node2", terminating=True)], names)
    assert lf.old_pods_gone([echo_pod("node3", terminating=True)], names), "not one of the rolled ones"


def test_a_refusal_by_the_experiments_budget_releases_it_once() -> None:
    store = FakeStore([])
    release = lf.BudgetRelease(cast(StoreClient, store), lf.echo_budget("node2"))
    refusal = TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.")
    asyncio.run(release.refused(load_pod("node2"), refusal))
    assert release.refused_at is None and store.deleted == [], "another budget's refusal is waited out"
    asyncio.run(release.refused(echo_pod("node2"), refusal))
    first = release.refused_at
    assert first is not None and release.released_at is not None and first <= release.released_at
    assert store.deleted == [("PodDisruptionBudget", "echo-node2", workload.NAMESPACE)]
    asyncio.run(release.refused(echo_pod("node2"), refusal))
    assert release.refused_at == first, "the first refusal is the one marked"


# --- the experiments against a simulated cluster -----------------------------------------------------


class SimulatedNode:
    """A store and a handle at once, just enough for `node_drain`: the node's echo pod, evicted as the
    Eviction API does (refused while the budget stands), replaced at once by its ReplicaSet (Ready a
    moment later) and gone once its graceful stop is over."""

    READY_AFTER = 0.05
    GONE_AFTER = 0.3

    def __init__(self) -> None:
        self.node: dict[str, Any] = {"kind": "Node", "metadata": {"name": "node2"}, "spec": {}}
        self.pods: dict[str, dict[str, Any]] = {
            p["metadata"]["name"]: p for p in (echo_pod("node2", uid="old"), load_pod("node2"))
        }
        self.budgets: set[str] = set()
        self.evicted_at: float | None = None
        self.node_states: list[bool] = []

    def _advance(self) -> None:
        if self.evicted_at is None:
            return
        elapsed = time.monotonic() - self.evicted_at
        if elapsed >= self.READY_AFTER:
            self.pods["echo-node2-new"] = echo_pod("node2", name="echo-node2-new", uid="new")
        if elapsed >= self.GONE_AFTER:
            self.pods.pop("echo-node2-abc", None)

    # the store
    async def list(self, kind: str) -> ListResult:
        self._advance()
        return ListResult(copy.deepcopy(list(self.pods.values())), "1")

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        self._advance()
        if kind == "Node":
            return copy.deepcopy(self.node)
        if kind == "Pod" and name in self.pods:
            return copy.deepcopy(self.pods[name])
        raise NotFound(f"{kind} {name} not found")

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.node = obj
        self.node_states.append(bool(obj["spec"].get("unschedulable")))
        return obj

    async def delete(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if name not in self.budgets:
            raise NotFound(f"{kind} {name} not found")
        self.budgets.discard(name)
        return {}

    async def evict(self, name: str, namespace: str | None = None, *, grace_period: int | None = None) -> Any:
        if name.startswith("echo-") and "echo-node2" in self.budgets:
            raise TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.")
        self.pods[name]["metadata"]["deletionTimestamp"] = NOW
        self.pods[name]["metadata"].setdefault("annotations", {})
        self.pods["echo-node2-new"] = echo_pod("node2", name="echo-node2-new", uid="new", ready=False)
        self.evicted_at = time.monotonic()
        return {}

    # the handle
    def apply(self, objects: list[dict[str, Any]]) -> None:
        self.budgets.update(o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget")

    def meshed(self, namespace: str) -> dict[str, bool]:
        return {name: True for name in self.pods}

    def objects(self, kinds: list[str]) -> list[dict[str, Any]]:
        namespace = {"kind": "Namespace", "metadata": {"name": "ambit-chaos"}}
        namespace["metadata"]["labels"] = {"istio.io/dataplane-mode": "ambient"}
        return [namespace] if "Namespace" in kinds else []


def test_node_drain_cordons_is_refused_by_the_budget_evicts_and_ends_when_the_replacement_is_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = SimulatedNode()
    monkeypatch.setattr(lf, "POLL", 0.01)
    monkeypatch.setattr(lf, "BUDGET_RETRY", 0.01)
    monkeypatch.setattr(lf, "_on_store", lambda _handle, work: asyncio.run(work(cluster)))
    monkeypatch.setattr(lf, "_remove_budget", lambda _handle, budget: cluster.budgets.discard("echo-node2"))
    events = lf.node_drain(cast(ClusterHandle, cluster), FaultPlan("node2", 0.0, recovery_timeout=10.0))
    marks = dict(events.marks)
    assert list(marks) == ["eviction refused", "budget removed", "ready", "meshed", "evicted", "uncordoned"]
    assert (events.experiment, events.target, events.target_node) == ("node-drain", "node2", "node2")
    assert events.start <= marks["eviction refused"] <= marks["budget removed"] <= events.end
    assert events.end == marks["ready"] < marks["evicted"], (
        "the replacement is ready before the old pod is gone"
    )
    assert marks["evicted"] - events.start >= SimulatedNode.GONE_AFTER
    assert cluster.node_states == [True, False], "cordoned, then uncordoned"
    assert "load-node2-abc" in cluster.pods and "metadata" in cluster.pods["load-node2-abc"]
    assert "deletionTimestamp" not in cluster.pods["load-node2-abc"]["metadata"], "the load pod stays"
    assert not cluster.budgets
    prediction = predict(TOPOLOGY, events, Timing())
    service = prediction.windows[FlowKey("node1", "echo-node2", "new")]
    assert [(w.start, w.end) for w in service] == [(events.start, events.end + 4.0)]
    assert prediction.windows[FlowKey("node3", "pod-node2", "keepalive")][0].end == math.inf
    assert FlowKey("node1", "echo-node1", "new") not in prediction.windows


def test_node_drain_fails_when_the_budget_does_not_refuse_and_still_uncordons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = SimulatedNode()
    monkeypatch.setattr(lf, "POLL", 0.01)
    monkeypatch.setattr(lf, "_on_store", lambda _handle, work: asyncio.run(work(cluster)))
    monkeypatch.setattr(lf, "_remove_budget", lambda _handle, budget: None)
    monkeypatch.setattr(cluster, "apply", lambda objects: None)  # a budget the store ignores
    with pytest.raises(lf.ExperimentError, match="budgets are not respected"):
        lf.node_drain(cast(ClusterHandle, cluster), FaultPlan("node2", 0.0, recovery_timeout=10.0))
    assert cluster.node_states == [True, False]


class SimulatedRollouts:
    """Deployments whose controller finishes a rollout a moment after the restart is written."""

    DONE_AFTER = 0.05

    def __init__(self, nodes: tuple[str, ...]) -> None:
        self.node_names = list(nodes)
        self.deployments = {
            workload.echo(n): {
                "kind": "Deployment",
                "metadata": {"name": workload.echo(n), "namespace": workload.NAMESPACE, "generation": 1},
                "spec": {
                    "replicas": 1,
                    "template": {"metadata": {"labels": {"chaos-pod": workload.echo(n)}}},
                },
                "status": {
                    "observedGeneration": 1,
                    "replicas": 1,
                    "updatedReplicas": 1,
                    "availableReplicas": 1,
                },
            }
            for n in nodes
        }
        self.written: dict[str, float] = {}
        self.order: list[str] = []

    def nodes(self) -> list[str]:
        return self.node_names

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        name = obj["metadata"]["name"]
        obj["metadata"]["generation"] += 1
        self.deployments[name] = obj
        self.written[name] = time.monotonic()
        self.order.append(name)
        return obj

    async def _get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.get(kind, name, namespace)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        obj = copy.deepcopy(self.deployments[name])
        if name in self.written and time.monotonic() - self.written[name] >= self.DONE_AFTER:
            obj["status"]["observedGeneration"] = obj["metadata"]["generation"]
        return obj

    def pods(self, namespace: str | None = "default") -> list[dict[str, Any]]:
        return []


def test_app_rollout_restarts_each_echo_deployment_after_the_previous_rolled_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = SimulatedRollouts(("node1", "node2", "node3"))

    class Store:
        get = cluster._get
        update = cluster.update

    monkeypatch.setattr(lf, "POLL", 0.01)
    monkeypatch.setattr(lf, "_on_store", lambda _handle, work: asyncio.run(work(Store())))
    events = lf.app_rollout(cast(ClusterHandle, cluster), FaultPlan("node2", 0.0, recovery_timeout=10.0))
    assert cluster.order == ["echo-node1", "echo-node2", "echo-node3"]
    names = [name for name, _ in events.marks]
    assert names == [
        "restart echo-node1",
        "rolled out echo-node1",
        "restart echo-node2",
        "rolled out echo-node2",
        "restart echo-node3",
        "rolled out echo-node3",
        "old pods gone",
    ]
    times = [t for _, t in events.marks]
    assert times == sorted(times)
    assert events.start == times[0] and events.end == times[5]
    assert times[1] - times[0] >= SimulatedRollouts.DONE_AFTER
    assert (events.experiment, events.target_node) == ("app-rollout", "")
    prediction = predict(TOPOLOGY, events, Timing())
    assert {k.destination for k in prediction.windows} == {"pod-node2"}, "no window for any Service"
    for deployment in cluster.deployments.values():
        assert (
            "kubectl.kubernetes.io/restartedAt" in deployment["spec"]["template"]["metadata"]["annotations"]
        )
