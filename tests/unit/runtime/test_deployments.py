"""Deployment → ReplicaSet → Pods, pass by pass, on a fake clock (Kubernetes' controller semantics)."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

import pytest

from ambit.runtime.deployment_revisions import (
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    RESTARTED_AT,
    REVISION,
    REVISION_HISTORY,
    ProgressDeadlineExceeded,
    RevisionNotFound,
    RolloutError,
    fnv1a_32,
    restart_template,
    revision_of,
    rollback,
    rollback_template,
    rollout_status,
    template_hash,
)
from ambit.runtime.deployments import DeploymentPlan, reconcile
from ambit.runtime.replica_sets import (
    HASH_LABEL,
    deletion_order,
    is_available,
    next_available_in,
    pods_for_replica_set,
    replica_set_status,
    rfc3339,
)
from ambit.runtime.scheduler import NAME_ALPHABET, is_active

Obj = dict[str, Any]
T0 = 1_700_000_000.0


def make_deployment(replicas: int = 3, image: str = "v1", **extra: Any) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-web", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
            **extra,
        },
    }


def image_of(obj: Obj) -> str:
    """The image of a Deployment's, a ReplicaSet's or a Pod's (first) container."""
    pod_spec = obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"]
    return str(pod_spec["containers"][0]["image"])


def condition(status: Obj, ctype: str) -> Obj:
    return next(c for c in status["conditions"] if c["type"] == ctype)


class Cluster:
    """The store, the ReplicaSet controller and a kubelet, driven by hand."""

    def __init__(self, deployment: Obj, *, graceful: bool = False) -> None:
        self.now = T0
        self.rng = random.Random(7)
        self.serial = 0
        self.graceful = graceful  # deleted pods linger with a deletionTimestamp until finish_terminating()
        self.dep = deployment
        self.rs: dict[str, Obj] = {}
        self.pods: dict[str, Obj] = {}
        self.sizes: list[tuple[int, int]] = []  # (new RS, old RSs) replicas after each change
        self.plans: list[DeploymentPlan] = []

    def _store(self, obj: Obj) -> Obj:
        self.serial += 1
        obj = copy.deepcopy(obj)
        obj["metadata"].update(
            uid=f"uid-{self.serial}",
            resourceVersion=str(self.serial),
            generation=1,
            creationTimestamp=rfc3339(self.now),
        )
        return obj

    def set_spec(self, **changes: Any) -> None:
        self.dep["spec"].update(changes)
        self.dep["metadata"]["generation"] += 1

    def set_image(self, image: str) -> None:
        template = copy.deepcopy(self.dep["spec"]["template"])
        template["spec"]["containers"][0]["image"] = image
        self.set_spec(template=template)

    def reconcile(self) -> DeploymentPlan:
        return reconcile(self.dep, self.rs.values(), self.pods.values(), now=self.now)

    def apply(self, plan: DeploymentPlan) -> bool:
        self.plans.append(plan)
        for obj in plan.create:
            stored = self._store(obj)
            self.rs[stored["metadata"]["name"]] = stored
        for obj in plan.update:
            current = self.rs[obj["metadata"]["name"]]
            assert obj["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
            self.serial += 1
            updated = copy.deepcopy(obj)
            updated["metadata"]["resourceVersion"] = str(self.serial)
            self.rs[obj["metadata"]["name"]] = updated
        for name in plan.delete:
            del self.rs[name]
        if plan.deployment_annotations:
            self.dep["metadata"].setdefault("annotations", {}).update(plan.deployment_annotations)
        if plan.status_changed:
            self.dep["status"] = copy.deepcopy(plan.status)
        if plan.create or plan.update:
            self.sizes.append(self.split())
        return plan.changed

    def run_replica_sets(self) -> bool:
        changed = False
        for rs in list(self.rs.values()):
            pod_plan = pods_for_replica_set(rs, self.pods.values(), self.rng)
            for pod in pod_plan.create:
                stored = self._store(pod)
                stored["status"] = {"phase": "Pending"}
                self.pods[stored["metadata"]["name"]] = stored
            for name in pod_plan.delete:
                if self.graceful:
                    self.pods[name]["metadata"]["deletionTimestamp"] = rfc3339(self.now)
                else:
                    del self.pods[name]
            changed |= bool(pod_plan.create or pod_plan.delete)
        return changed

    def settle(self, check: Callable[[Cluster], None] | None = None) -> DeploymentPlan:
        for _ in range(40):
            plan = self.reconcile()
            changed = self.apply(plan)
            if check:
                check(self)
            changed |= self.run_replica_sets()
            if check:
                check(self)
            if not changed:
                return plan
        raise AssertionError("the controllers never settled")

    def make_ready(self) -> None:
        for pod in self.pods.values():
            if is_active(pod) and pod["status"]["phase"] == "Pending":
                pod["spec"]["nodeName"] = "node1"
                pod["status"] = {
                    "phase": "Running",
                    "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(self.now)}
                    ],
                }

    def finish_terminating(self) -> None:
        self.pods = {n: p for n, p in self.pods.items() if not p["metadata"].get("deletionTimestamp")}

    def active(self) -> list[Obj]:
        return [p for p in self.pods.values() if is_active(p)]

    def available(self) -> int:
        mrs = int(self.dep["spec"].get("minReadySeconds") or 0)
        return sum(1 for p in self.active() if is_available(p, mrs, self.now))

    def new_and_old(self) -> tuple[Obj | None, list[Obj]]:
        image = image_of(self.dep)
        new = next((rs for rs in self.rs.values() if image_of(rs) == image), None)
        return new, [rs for rs in self.rs.values() if rs is not new]

    def split(self) -> tuple[int, int]:
        new, olds = self.new_and_old()
        return (new["spec"]["replicas"] if new else 0, sum(rs["spec"]["replicas"] for rs in olds))

    def roll(self, check: Callable[[Cluster], None] | None = None, step: float = 1.0) -> None:
        """Settle, let the new pods become ready, advance the clock; until the rollout is done."""
        for _ in range(40):
            self.settle(check)
            if rollout_status(self.dep)[1]:
                return
            self.now += step
            self.make_ready()
            if check:
                check(self)
        raise AssertionError("the rollout never finished")


def steady(deployment: Obj, **kwargs: Any) -> Cluster:
    cluster = Cluster(deployment, **kwargs)
    cluster.roll()
    cluster.sizes.clear()
    return cluster


# --- RollingUpdate ---------------------------------------------------------------------------------


def test_rolling_update_max_surge_1_max_unavailable_0_keeps_3_available_and_at_most_4_pods() -> None:
    cluster = steady(make_deployment(strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    assert len(cluster.active()) == 3 and cluster.available() == 3
    cluster.set_image("v2")

    def invariants(c: Cluster) -> None:
        assert c.available() >= 3
        assert len(c.active()) <= 4
        assert sum(rs["spec"]["replicas"] for rs in c.rs.values()) <= 4

    cluster.roll(invariants)
    assert cluster.sizes == [(1, 3), (1, 2), (2, 2), (2, 1), (3, 1), (3, 0)]
    new, olds = cluster.new_and_old()
    assert new is not None and [rs["spec"]["replicas"] for rs in olds] == [0]
    assert {image_of(p) for p in cluster.pods.values()} == {"v2"}
    assert revision_of(new) == 2 and revision_of(olds[0]) == 1
    assert cluster.dep["metadata"]["annotations"][REVISION] == "2"
    assert new["metadata"]["name"] == f"web-{template_hash(cluster.dep['spec']['template'])}"
    assert new["metadata"]["annotations"][DESIRED_REPLICAS] == "3"
    assert new["metadata"]["annotations"][MAX_REPLICAS] == "4"
    st = cluster.dep["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (
        3,
        3,
        3,
        3,
    )
    assert st["unavailableReplicas"] == 0 and st["observedGeneration"] == 2


def test_new_replica_set_shape() -> None:
    cluster = Cluster(make_deployment(minReadySeconds=5))
    cluster.dep["metadata"]["annotations"] = {
        "team": "a",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
    }
    plan = cluster.reconcile()
    [rs] = plan.create
    digest = template_hash(cluster.dep["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{digest}"
    assert rs["metadata"]["labels"] == {"app": "web", HASH_LABEL: digest}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", HASH_LABEL: digest}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", HASH_LABEL: digest}
    assert rs["spec"]["replicas"] == 3 and rs["spec"]["minReadySeconds"] == 5
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "uid-web",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["metadata"]["annotations"] == {
        "team": "a",
        REVISION: "1",
        DESIRED_REPLICAS: "3",
        MAX_REPLICAS: "4",
    }
    assert plan.deployment_annotations == {REVISION: "1"}
    progressing = condition(plan.status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetCreated")
    assert progressing["message"] == f'Created new replica set "web-{digest}"'


def test_default_25_percent_surge_and_unavailability_with_4_replicas() -> None:
    cluster = steady(make_deployment(replicas=4))
    cluster.set_image("v2")
    first = cluster.reconcile()
    assert [rs["spec"]["replicas"] for rs in first.create] == [1]  # maxSurge 25 % of 4, rounded up
    assert [rs["spec"]["replicas"] for rs in first.update] == [
        3
    ]  # maxUnavailable 1: one old pod goes at once
    cluster.apply(first)
    cluster.run_replica_sets()

    def invariants(c: Cluster) -> None:
        assert c.available() >= 3
        assert len(c.active()) <= 5

    cluster.roll(invariants)
    assert cluster.sizes == [(1, 3), (2, 3), (2, 1), (4, 1), (4, 0)]


def test_a_pass_that_scales_up_does_not_also_scale_down() -> None:
    cluster = steady(make_deployment(replicas=4))
    cluster.set_image("v2")
    cluster.apply(cluster.reconcile())
    cluster.run_replica_sets()
    assert cluster.split() == (1, 3)
    cluster.now += 1
    cluster.make_ready()  # the new pod is ready before the next pass: old ones could go too
    plan = cluster.reconcile()
    assert [(image_of(rs), rs["spec"]["replicas"]) for rs in plan.update] == [("v2", 2)]
    cluster.apply(plan)
    plan = cluster.reconcile()
    assert [(image_of(rs), rs["spec"]["replicas"]) for rs in plan.update] == [("v1", 2)]


def unready(pod: Obj) -> None:
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False", "lastTransitionTime": rfc3339(T0)}]


def test_unhealthy_old_replicas_are_scaled_down_first() -> None:
    # Without this (kubernetes#16737) an unready old pod would block the rollout: with maxUnavailable 0
    # only 3 of the 4 pods are available once the first new pod is ready.
    cluster = steady(make_deployment(strategy={"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    sick = sorted(cluster.pods)[0]
    unready(cluster.pods[sick])
    cluster.set_image("v2")
    cluster.settle()
    assert cluster.split() == (1, 3)
    cluster.now += 1
    cluster.make_ready()
    plan = cluster.reconcile()
    assert [(image_of(rs), rs["spec"]["replicas"]) for rs in plan.update] == [("v1", 2)]
    cluster.apply(plan)
    cluster.run_replica_sets()
    assert sick not in cluster.pods  # the ReplicaSet deletes the unready pod, not a ready one
    cluster.roll()
    assert cluster.split() == (3, 0)


def test_unavailable_new_replicas_hold_back_old_scale_down() -> None:
    # rolling.go's "case 1": 10 replicas, maxSurge 3, maxUnavailable 2, the new pods never become ready,
    # then an old pod fails too: 13 pods - 8 minimum available - 5 unavailable new = nothing to scale down.
    cluster = steady(
        make_deployment(replicas=10, strategy={"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    )
    cluster.set_image("v2")
    cluster.settle()
    assert cluster.split() == (5, 8)
    _, [old] = cluster.new_and_old()
    victim = next(
        p for p in cluster.pods.values() if p["metadata"]["labels"][HASH_LABEL] in old["metadata"]["name"]
    )
    unready(victim)
    plan = cluster.reconcile()
    assert plan.update == [] and plan.create == []
    assert plan.status["availableReplicas"] == 7 and plan.status["unavailableReplicas"] == 6
    assert condition(plan.status, "Available")["reason"] == "MinimumReplicasUnavailable"


def test_fenceposts_both_zero_mean_max_unavailable_1() -> None:
    cluster = steady(
        make_deployment(replicas=2, strategy={"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "1%"}})
    )
    cluster.set_image("v2")
    plan = cluster.reconcile()
    assert [rs["spec"]["replicas"] for rs in plan.create] == [0]
    assert [rs["spec"]["replicas"] for rs in plan.update] == [1]
    cluster.apply(plan)
    cluster.run_replica_sets()

    def invariants(c: Cluster) -> None:
        assert c.available() >= 1
        assert len(c.active()) <= 2

    cluster.roll(invariants)
    assert cluster.sizes == [(0, 1), (1, 1), (1, 0), (2, 0)]


def test_min_ready_seconds_delays_availability_and_requeues() -> None:
    cluster = Cluster(make_deployment(replicas=2, minReadySeconds=10))
    cluster.settle()
    cluster.make_ready()  # ready at T0
    cluster.now += 3
    plan = cluster.reconcile()
    assert plan.status["readyReplicas"] == 2 and plan.status["availableReplicas"] == 0
    assert condition(plan.status, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert plan.requeue_after == pytest.approx(7.0)
    [rs] = cluster.rs.values()
    assert replica_set_status(rs, cluster.pods.values(), now=cluster.now) == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 0,
        "observedGeneration": 1,
    }
    assert next_available_in(rs, cluster.pods.values(), now=cluster.now) == pytest.approx(7.0)
    cluster.apply(plan)
    assert rollout_status(cluster.dep) == (
        'Waiting for deployment "web" rollout to finish: 0 of 2 updated replicas are available...',
        False,
    )
    cluster.now += 7
    final = cluster.settle()
    assert final.status["availableReplicas"] == 2 and final.requeue_after is None
    assert condition(final.status, "Available")["status"] == "True"
    assert rollout_status(cluster.dep) == ('deployment "web" successfully rolled out', True)


# --- Recreate, pause, scaling ------------------------------------------------------------------------


def test_recreate_scales_old_to_zero_and_waits_for_terminating_pods() -> None:
    cluster = steady(make_deployment(replicas=2, strategy={"type": "Recreate"}), graceful=True)
    cluster.set_image("v2")
    plan = cluster.reconcile()
    assert plan.create == [] and [rs["spec"]["replicas"] for rs in plan.update] == [0]
    cluster.apply(plan)
    cluster.run_replica_sets()  # the old pods are terminating, still Running
    assert len(cluster.pods) == 2 and cluster.active() == []
    waiting = cluster.settle()
    assert waiting.create == [] and len(cluster.rs) == 1
    cluster.finish_terminating()
    plan = cluster.reconcile()
    assert [rs["spec"]["replicas"] for rs in plan.create] == [2]
    cluster.apply(plan)
    cluster.roll()
    assert {image_of(p) for p in cluster.pods.values()} == {"v2"} and len(cluster.pods) == 2


def test_paused_deployment_scales_but_does_not_roll_out() -> None:
    cluster = steady(make_deployment())
    cluster.set_spec(paused=True)
    cluster.set_image("v2")
    plan = cluster.reconcile()
    assert plan.create == [] and plan.update == []
    progressing = condition(plan.status, "Progressing")
    assert (progressing["status"], progressing["reason"], progressing["message"]) == (
        "Unknown",
        "DeploymentPaused",
        "Deployment is paused",
    )
    assert plan.status["observedGeneration"] == 3
    cluster.apply(plan)
    cluster.set_spec(replicas=5)
    plan = cluster.reconcile()
    assert plan.create == []
    [old] = plan.update
    assert image_of(old) == "v1" and old["spec"]["replicas"] == 5
    assert old["metadata"]["annotations"][DESIRED_REPLICAS] == "5"
    cluster.apply(plan)
    cluster.set_spec(paused=False)
    plan = cluster.reconcile()
    [new] = plan.create
    assert image_of(new) == "v2" and new["spec"]["replicas"] == 2  # 5 + 25 % surge (2) - 5 old
    assert condition(plan.status, "Progressing")["reason"] == "NewReplicaSetCreated"


def test_scaling_a_steady_deployment_resizes_its_replica_set() -> None:
    cluster = steady(make_deployment())
    cluster.set_spec(replicas=5)
    plan = cluster.reconcile()
    assert plan.create == [] and plan.delete == []
    [rs] = plan.update
    assert rs["spec"]["replicas"] == 5
    assert rs["metadata"]["annotations"][DESIRED_REPLICAS] == "5"
    assert rs["metadata"]["annotations"][MAX_REPLICAS] == "7"  # 25 % of 5 rounded up
    cluster.apply(plan)
    cluster.roll()
    assert len(cluster.active()) == 5 and cluster.available() == 5
    assert condition(cluster.dep["status"], "Progressing")["reason"] == "NewReplicaSetAvailable"
    cluster.set_spec(replicas=2)
    cluster.settle()
    assert len(cluster.active()) == 2 and [rs["spec"]["replicas"] for rs in cluster.rs.values()] == [2]


def test_scaling_mid_rollout_is_proportional() -> None:
    # Kubernetes' documented example: 10 replicas, maxSurge 3, maxUnavailable 2, a stuck new template,
    # then scaled to 15: 3 more for the old ReplicaSet, 2 for the new one.
    cluster = steady(
        make_deployment(replicas=10, strategy={"rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    )
    cluster.set_image("v2")
    cluster.settle()
    assert cluster.split() == (5, 8)
    cluster.set_spec(replicas=15)
    plan = cluster.reconcile()
    sizes = {image_of(rs): rs["spec"]["replicas"] for rs in plan.update}
    assert sizes == {"v1": 11, "v2": 7}
    assert {rs["metadata"]["annotations"][MAX_REPLICAS] for rs in plan.update} == {"18"}
    assert {rs["metadata"]["annotations"][DESIRED_REPLICAS] for rs in plan.update} == {"15"}


# --- undo, history, status ---------------------------------------------------------------------------


def rolled_to_v2(**extra: Any) -> Cluster:
    cluster = steady(make_deployment(**extra))
    cluster.set_image("v2")
    cluster.roll()
    return cluster


def test_undo_adopts_the_old_replica_set_with_the_next_revision() -> None:
    cluster = rolled_to_v2()
    undo = rollback(cluster.dep, cluster.rs.values())
    assert (undo.revision, undo.skipped, undo.message) == (1, False, "rolled back")
    assert (
        HASH_LABEL not in undo.template["metadata"]["labels"]
        and image_of({"spec": {"template": undo.template}}) == "v1"
    )
    assert rollback_template(cluster.dep, cluster.rs.values()) == undo.template
    cluster.set_spec(template=undo.template)
    cluster.dep["metadata"]["annotations"] = undo.annotations
    plan = cluster.reconcile()
    assert plan.create == []
    [back] = [rs for rs in plan.update if image_of(rs) == "v1"]
    assert back["metadata"]["annotations"][REVISION] == "3"
    assert back["metadata"]["annotations"][REVISION_HISTORY] == "1"
    assert back["spec"]["replicas"] == 1  # surge 1
    assert plan.deployment_annotations == {REVISION: "3"}
    cluster.apply(plan)
    cluster.roll()
    assert len(cluster.rs) == 2 and {image_of(p) for p in cluster.pods.values()} == {"v1"}
    again = rollback(cluster.dep, cluster.rs.values(), to_revision=3)
    assert again.skipped and again.message == "skipped rollback (current template already matches revision 3)"


def test_undo_errors_like_kubectl() -> None:
    cluster = rolled_to_v2()
    with pytest.raises(RevisionNotFound, match=r"^unable to find specified revision 7 in history$"):
        rollback(cluster.dep, cluster.rs.values(), to_revision=7)
    assert issubclass(RevisionNotFound, ValueError)
    fresh = steady(make_deployment())
    with pytest.raises(RolloutError, match=r'^no rollout history found for deployment "web"$'):
        rollback(fresh.dep, fresh.rs.values())
    cluster.dep["spec"]["paused"] = True
    with pytest.raises(RolloutError, match="you cannot rollback a paused deployment"):
        rollback(cluster.dep, cluster.rs.values(), to_revision=1)


def test_history_beyond_the_limit_is_deleted_once_complete() -> None:
    cluster = rolled_to_v2(revisionHistoryLimit=1)
    assert len(cluster.rs) == 2
    v1 = next(name for name, rs in cluster.rs.items() if image_of(rs) == "v1")
    cluster.set_image("v3")
    cluster.roll()
    assert [p.delete for p in cluster.plans if p.delete] == [[v1]]
    assert sorted(revision_of(rs) for rs in cluster.rs.values()) == [2, 3]


def test_unchanged_deployment_gets_back_exactly_its_status() -> None:
    cluster = rolled_to_v2()
    written = copy.deepcopy(cluster.dep["status"])
    assert condition(written, "Available") == {
        "type": "Available",
        "status": "True",
        "lastUpdateTime": rfc3339(T0 + 1),  # when the first pods became ready, not rewritten since
        "lastTransitionTime": rfc3339(T0 + 1),
        "reason": "MinimumReplicasAvailable",
        "message": "Deployment has minimum availability.",
    }
    new, _ = cluster.new_and_old()
    assert new is not None
    progressing = condition(written, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "NewReplicaSetAvailable")
    assert progressing["message"] == f'ReplicaSet "{new["metadata"]["name"]}" has successfully progressed.'
    cluster.now += 3600
    plan = cluster.reconcile()
    assert plan.status == written and not plan.status_changed and not plan.changed
    assert (plan.create, plan.update, plan.delete, plan.deployment_annotations) == ([], [], [], None)
    assert plan.requeue_after is None


def test_progress_deadline_exceeded() -> None:
    cluster = steady(make_deployment(progressDeadlineSeconds=30))
    cluster.set_image("v2")
    plan = cluster.settle()  # the new pod never becomes ready
    assert condition(plan.status, "Progressing")["reason"] == "ReplicaSetUpdated"
    assert plan.requeue_after == pytest.approx(30.0)
    cluster.now += 29
    assert condition(cluster.reconcile().status, "Progressing")["reason"] == "ReplicaSetUpdated"
    cluster.now += 1
    plan = cluster.reconcile()
    progressing = condition(plan.status, "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["lastTransitionTime"] == rfc3339(cluster.now)
    assert progressing["message"].endswith(" has timed out progressing.")
    cluster.apply(plan)
    with pytest.raises(ProgressDeadlineExceeded, match=r'^deployment "web" exceeded its progress deadline$'):
        rollout_status(cluster.dep)


def test_invalid_surge_is_a_clear_error() -> None:
    dep = make_deployment(strategy={"rollingUpdate": {"maxSurge": "lots%"}})
    with pytest.raises(ValueError, match="invalid value for IntOrString: 'lots%'"):
        reconcile(dep, [], [], now=T0)


def test_hash_collision_bumps_collision_count() -> None:
    dep = make_deployment()
    squatter = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"web-{template_hash(dep['spec']['template'])}",
            "namespace": "default",
            "uid": "x",
        },
        "spec": {"replicas": 0, "template": {"metadata": {"labels": {"app": "other"}}}},
    }
    plan = reconcile(dep, [squatter], [], now=T0)
    [rs] = plan.create
    assert rs["metadata"]["name"] == f"web-{template_hash(dep['spec']['template'], 1)}"
    assert plan.status["collisionCount"] == 1


# --- pods ----------------------------------------------------------------------------------------------


def pod(
    name: str, node: str = "node1", phase: str = "Running", ready_at: float | None = None, **extra: Any
) -> Obj:
    obj: Obj = {
        "metadata": {"name": name, "creationTimestamp": rfc3339(extra.get("created", T0 - 1000))},
        "spec": {"nodeName": node} if node else {},
        "status": {"phase": phase},
    }
    if ready_at is not None:
        obj["status"]["conditions"] = [
            {"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(ready_at)}
        ]
    if "restarts" in extra:
        obj["status"]["containerStatuses"] = [{"name": "app", "restartCount": extra["restarts"]}]
    if "cost" in extra:
        obj["metadata"]["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": str(extra["cost"])}
    return obj


def test_deletion_ranking() -> None:
    pods = [
        pod("h-costly", ready_at=T0 - 1, cost=100),
        pod("e-ready-long-old", ready_at=T0 - 100, created=T0 - 200),
        pod("i-alone-on-node2", node="node2", ready_at=T0 - 10),
        pod("c-not-ready", phase="Running"),
        pod("g-ready-long-newer", ready_at=T0 - 100, created=T0 - 150),
        pod("a-unassigned", node="", phase="Pending"),
        pod("f-ready-long-restarts", ready_at=T0 - 100, restarts=5),
        pod("b-pending", phase="Pending"),
        pod("d-ready-recently", ready_at=T0 - 10),
    ]
    order = [p["metadata"]["name"] for p in deletion_order(pods)]
    assert order == [
        "a-unassigned",
        "b-pending",
        "c-not-ready",
        "d-ready-recently",
        "f-ready-long-restarts",
        "g-ready-long-newer",
        "e-ready-long-old",
        "i-alone-on-node2",
        "h-costly",
    ]
    rs: Obj = {"metadata": {"name": "web-abc", "uid": "rs-1"}, "spec": {"replicas": 6}}
    for p in pods:
        p["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": "rs-1", "controller": True}]
    plan = pods_for_replica_set(rs, pods, random.Random(1))
    assert plan.create == [] and plan.delete == ["a-unassigned", "b-pending", "c-not-ready"]


def test_pods_for_replica_set_creates_from_the_template() -> None:
    rs: Obj = {
        "apiVersion": "apps/v1",
        "metadata": {"name": "web-5d9c", "namespace": "shop", "uid": "rs-1"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "web", HASH_LABEL: "5d9c"}, "annotations": {"a": "b"}},
                "spec": {"containers": [{"name": "app", "image": "v1"}]},
            },
        },
    }
    gone = pod("web-5d9c-old", phase="Failed")
    gone["metadata"]["ownerReferences"] = [{"kind": "ReplicaSet", "uid": "rs-1", "controller": True}]
    plan = pods_for_replica_set(rs, [gone], random.Random(3))
    assert plan.delete == [] and len(plan.create) == 2
    first = plan.create[0]
    name = first["metadata"]["name"]
    assert name.startswith("web-5d9c-") and len(name) == len("web-5d9c-") + 5
    assert set(name.removeprefix("web-5d9c-")) <= set(NAME_ALPHABET)
    assert first["metadata"]["namespace"] == "shop"
    assert first["metadata"]["labels"] == {"app": "web", HASH_LABEL: "5d9c"}
    assert first["metadata"]["annotations"] == {"a": "b"}
    assert first["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-5d9c",
            "uid": "rs-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert first["spec"] == {"containers": [{"name": "app", "image": "v1"}]}
    assert plan.create[1]["metadata"]["name"] != name


# --- kubectl rollout -------------------------------------------------------------------------------------


def with_status(generation: int = 1, **st: Any) -> Obj:
    dep = make_deployment()
    dep["metadata"]["generation"] = generation
    dep["status"] = {"observedGeneration": 1, **st}
    return dep


def test_rollout_status_messages() -> None:
    waiting = 'Waiting for deployment "web" rollout to finish: '
    assert rollout_status(with_status(generation=2)) == (
        "Waiting for deployment spec update to be observed...",
        False,
    )
    assert rollout_status(with_status(replicas=4, updatedReplicas=1)) == (
        waiting + "1 out of 3 new replicas have been updated...",
        False,
    )
    assert rollout_status(with_status(replicas=4, updatedReplicas=3)) == (
        waiting + "1 old replicas are pending termination...",
        False,
    )
    assert rollout_status(with_status(replicas=3, updatedReplicas=3, availableReplicas=2)) == (
        waiting + "2 of 3 updated replicas are available...",
        False,
    )
    done = with_status(replicas=3, updatedReplicas=3, availableReplicas=3)
    assert rollout_status(done) == ('deployment "web" successfully rolled out', True)
    done["metadata"]["annotations"] = {REVISION: "4"}
    assert rollout_status(done, revision=4)[1]
    with pytest.raises(
        RolloutError, match=r"desired revision \(3\) is different from the running revision \(4\)"
    ):
        rollout_status(done, revision=3)


def test_restart_template_sets_restarted_at() -> None:
    dep = make_deployment()
    template = restart_template(dep, "2024-05-01T10:00:00Z")
    assert template["metadata"]["annotations"] == {RESTARTED_AT: "2024-05-01T10:00:00Z"}
    assert "annotations" not in dep["spec"]["template"]["metadata"]
    assert template_hash(template) != template_hash(dep["spec"]["template"])
    dep["spec"]["paused"] = True
    with pytest.raises(RolloutError, match=r"^can't restart paused deployment \(run rollout resume first\)$"):
        restart_template(dep, "2024-05-01T10:00:00Z")


# --- the hash -----------------------------------------------------------------------------------------------


def test_template_hash_is_stable_and_ignores_the_hash_label() -> None:
    assert fnv1a_32(b"") == 0x811C9DC5 and fnv1a_32(b"a") == 0xE40C292C  # FNV-1a 32 test vectors
    template = make_deployment()["spec"]["template"]
    digest = template_hash(template)
    assert digest == template_hash(copy.deepcopy(template))
    assert set(digest) <= set(NAME_ALPHABET) and 1 <= len(digest) <= 10
    reordered = {"spec": template["spec"], "metadata": {"labels": {"app": "web"}}}
    assert template_hash(reordered) == digest
    labelled = copy.deepcopy(template)
    labelled["metadata"]["labels"][HASH_LABEL] = digest
    assert template_hash(labelled) == digest
    changed = copy.deepcopy(template)
    changed["spec"]["containers"][0]["image"] = "v2"
    assert template_hash(changed) != digest
    assert template_hash(template, 1) not in (digest, template_hash(template, 2))
    # SafeEncodeString maps each decimal digit of the 32-bit hash: "0" → "z" … "9" → "9"
    assert template_hash({}) == "".join(NAME_ALPHABET[ord(c) % 27] for c in str(fnv1a_32(b"{}")))
    assert revision_of({"metadata": {"annotations": {REVISION: "12"}}}) == 12
    assert (
        revision_of({"metadata": {}}) == 0
        and revision_of({"metadata": {"annotations": {REVISION: "x"}}}) == 0
    )
