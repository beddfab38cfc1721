"""ReplicaSets → Pods (pure): the part of Kubernetes' ReplicaSet controller the local runtime needs.

Kubernetes is the spec (``pkg/controller/replicaset/replica_set.go``, ``pkg/controller/controller_utils.go``,
``pkg/api/v1/pod/util.go``):

- A ReplicaSet owns the pods whose controller ``ownerReference`` carries its uid. Only *active* pods count
  (not Succeeded/Failed, no ``deletionTimestamp``: :func:`ambit.runtime.scheduler.is_active`).
- :func:`pods_for_replica_set` is ``manageReplicas``: too few active pods → new ones (at most 500 a pass,
  ``burstReplicas``) named ``<rs>-<5 random chars>`` (``generateName``; the prefix cut to 58 characters),
  with the template's labels (``pod-template-hash`` included), annotations and finalizers and a controller
  ``ownerReference`` to the ReplicaSet; too many → the surplus, best candidates first in the order of
  ``ActivePodsWithRanks`` (:func:`deletion_order`): unassigned before assigned; Pending before Unknown
  before Running; not ready before ready; lower ``controller.kubernetes.io/pod-deletion-cost`` first;
  more active sibling pods on the same node first; ready for a shorter time first; more container
  restarts first; newer first. A ReplicaSet being deleted is left alone.
- :func:`replica_set_status` is ``calculateStatus``: ``replicas`` (active owned pods),
  ``fullyLabeledReplicas`` (those carrying every template label), ``readyReplicas``, ``availableReplicas``
  and ``observedGeneration``. A pod is available once Ready for ``minReadySeconds``
  (``IsPodAvailable``), measured from the Ready condition's ``lastTransitionTime``; a Ready pod without
  one is available only when ``minReadySeconds`` is 0. :func:`next_available_in` says when the next
  Ready pod becomes available (Kubernetes requeues the ReplicaSet after ``minReadySeconds``).

Simplified: pods are never adopted or released by label selector (every pod here is made by its
ReplicaSet, so the ``ownerReference`` is the whole story); the colocation rank counts the ReplicaSet's
own active pods (Kubernetes counts the pods of every ReplicaSet of the same Deployment); ready and
creation times compare exactly (no ``LogarithmicScaleDown`` buckets, ties by name); a pod becomes
available at the instant ``minReadySeconds`` have passed (Kubernetes: strictly after), so the requeue
delay is exact. No I/O; randomness is injected.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ambit.resources.objects import controller_of
from ambit.runtime.scheduler import is_active, random_suffix

Obj = dict[str, Any]

HASH_LABEL = "pod-template-hash"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"
BURST_REPLICAS = 500  # Kubernetes' burstReplicas: creations or deletions a pass
_MAX_NAME_PREFIX = 58  # maxGeneratedNameLength: 63 minus the 5 random characters
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}  # a missing phase sorts as Pending (Go's zero)


def meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("spec")
    return value if isinstance(value, Mapping) else {}


def status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    value = obj.get("status")
    return value if isinstance(value, Mapping) else {}


def replicas_of(obj: Mapping[str, Any]) -> int:
    """``spec.replicas``; absent means 1, the API default."""
    value = spec(obj).get("replicas")
    return 1 if value is None else int(value)


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of the ``ownerReference`` marked ``controller: true``, if any."""
    ref = controller_of(obj)
    return str(ref["uid"]) if ref is not None and ref.get("uid") else None


def controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    uid = meta(owner).get("uid")
    return uid is not None and controller_uid(obj) == str(uid)


def controller_ref(owner: Mapping[str, Any], kind: str) -> Obj:
    """A controller ``ownerReference`` to ``owner`` (``metav1.NewControllerRef``)."""
    return {
        "apiVersion": str(owner.get("apiVersion") or "apps/v1"),
        "kind": kind,
        "name": str(meta(owner).get("name")),
        "uid": meta(owner).get("uid"),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def parse_time(value: object) -> float | None:
    """RFC 3339 → epoch seconds; None when absent or unreadable (Go's zero time)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def rfc3339(epoch: float) -> str:
    """Epoch seconds → RFC 3339 at second precision, as ``metav1.Time`` is serialized."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ready_condition(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for cond in status(pod).get("conditions") or ():
        if isinstance(cond, Mapping) and cond.get("type") == "Ready":
            return cond
    return None


def is_ready(pod: Mapping[str, Any]) -> bool:
    cond = _ready_condition(pod)
    return cond is not None and cond.get("status") == "True"


def ready_since(pod: Mapping[str, Any]) -> float | None:
    """When a Ready pod became ready (its Ready condition's ``lastTransitionTime``)."""
    cond = _ready_condition(pod)
    if cond is None or cond.get("status") != "True":
        return None
    return parse_time(cond.get("lastTransitionTime"))


def is_available(pod: Mapping[str, Any], min_ready_seconds: int, now: float) -> bool:
    """Ready for at least ``min_ready_seconds`` (``podutil.IsPodAvailable``)."""
    if not is_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and since + min_ready_seconds <= now


def min_ready_seconds(obj: Mapping[str, Any]) -> int:
    return int(spec(obj).get("minReadySeconds") or 0)


def owned_pods(rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Every pod ``rs`` controls, terminating and finished ones included."""
    uid = meta(rs).get("uid")
    if uid is None:
        return []
    return [p for p in pods if controller_uid(p) == str(uid)]


def _template_labels(rs: Mapping[str, Any]) -> Mapping[str, str]:
    template = spec(rs).get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}


def replica_set_status(rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], *, now: float) -> Obj:
    """The ReplicaSet's ``status`` as its controller computes it (conditions already there are kept)."""
    active = [p for p in owned_pods(rs, pods) if is_active(p)]
    wanted = _template_labels(rs)
    mrs = min_ready_seconds(rs)
    result: Obj = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(
            1 for p in active if all((meta(p).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ),
        "readyReplicas": sum(1 for p in active if is_ready(p)),
        "availableReplicas": sum(1 for p in active if is_available(p, mrs, now)),
        "observedGeneration": int(meta(rs).get("generation") or 0),
    }
    conditions = status(rs).get("conditions")
    if conditions:
        result["conditions"] = copy.deepcopy(conditions)
    return result


def next_available_in(
    rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], *, now: float
) -> float | None:
    """Seconds until the next Ready, not yet available pod of ``rs`` becomes available (None: none will)."""
    mrs = min_ready_seconds(rs)
    if mrs <= 0:
        return None
    waits = [
        since + mrs - now
        for p in owned_pods(rs, pods)
        if is_active(p) and (since := ready_since(p)) is not None and since + mrs > now
    ]
    return min(waits) if waits else None


def _deletion_cost(pod: Mapping[str, Any]) -> int:
    raw = (meta(pod).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
    try:
        return int(raw) if raw is not None else 0
    except (TypeError, ValueError):
        return 0


def _max_restarts(pod: Mapping[str, Any]) -> int:
    counts = [int(c.get("restartCount") or 0) for c in status(pod).get("containerStatuses") or ()]
    return max(counts, default=0)


def _node(pod: Mapping[str, Any]) -> str:
    return str(spec(pod).get("nodeName") or "")


def deletion_order(
    pods: Sequence[Mapping[str, Any]], related: Iterable[Mapping[str, Any]] | None = None
) -> list[Mapping[str, Any]]:
    """``pods`` sorted best-to-delete first (Kubernetes' ``ActivePodsWithRanks``).

    The colocation rank of a pod is the number of active pods of ``related`` (default: ``pods``) on its
    node.
    """
    on_node = Counter(_node(p) for p in (pods if related is None else related) if is_active(p))

    def key(pod: Mapping[str, Any]) -> tuple[Any, ...]:
        ready = is_ready(pod)
        since = ready_since(pod) if ready else None
        created = parse_time(meta(pod).get("creationTimestamp"))
        return (
            1 if _node(pod) else 0,
            _PHASE_ORDER.get(str(status(pod).get("phase")), 0),
            1 if ready else 0,
            _deletion_cost(pod),
            -on_node[_node(pod)],
            (0, 0.0) if since is None else (1, -since),  # a zero ready time first, then the latest
            -_max_restarts(pod),
            (0, 0.0) if created is None else (1, -created),  # a zero creation time first, then newest
            str(meta(pod).get("name")),
        )

    return sorted(pods, key=key)


@dataclass
class PodPlan:
    create: list[Obj] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def _new_pod(rs: Mapping[str, Any], name: str) -> Obj:
    template = spec(rs).get("template") or {}
    tmeta = template.get("metadata") or {}
    pod_meta: Obj = {
        "name": name,
        "namespace": str(meta(rs).get("namespace") or "default"),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_ref(rs, "ReplicaSet")],
    }
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])
    if tmeta.get("finalizers"):
        pod_meta["finalizers"] = list(tmeta["finalizers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": pod_meta,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def pods_for_replica_set(
    rs: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], rng: random.Random
) -> PodPlan:
    """The pods to create and the pod names to delete so ``rs`` has ``spec.replicas`` active pods."""
    plan = PodPlan()
    if meta(rs).get("deletionTimestamp"):
        return plan
    every = list(pods)
    active = [p for p in owned_pods(rs, every) if is_active(p)]
    diff = len(active) - replicas_of(rs)
    if diff > 0:
        plan.delete = [str(meta(p).get("name")) for p in deletion_order(active)[: min(diff, BURST_REPLICAS)]]
    elif diff < 0:
        prefix = f"{meta(rs).get('name')}-"[:_MAX_NAME_PREFIX]
        taken = {str(meta(p).get("name")) for p in every}
        for _ in range(min(-diff, BURST_REPLICAS)):
            name = prefix + random_suffix(rng)
            while name in taken:
                name = prefix + random_suffix(rng)
            taken.add(name)
            plan.create.append(_new_pod(rs, name))
    return plan
