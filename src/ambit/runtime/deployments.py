"""Deployments → ReplicaSets (pure): Kubernetes' deployment controller for the local runtime.

Kubernetes is the spec: ``pkg/controller/deployment/{deployment_controller,sync,rolling,recreate,
progress}.go`` and ``util/deployment_util.go``. The revision side kubectl sees (the template hash,
revision numbers, ``rollout status|undo|restart``) is :mod:`.deployment_revisions`. One
:func:`reconcile` is one ``syncDeployment`` pass; the caller applies the plan and calls again on the
next change (or after ``requeue_after``), as the controller is requeued by watch events.

- **Ownership**: a Deployment owns the ReplicaSets whose controller ``ownerReference`` carries its uid
  (no adoption by selector). The *new* ReplicaSet is the oldest whose template equals the Deployment's,
  ignoring ``pod-template-hash`` (``FindNewReplicaSet``, ``EqualIgnoreHash``); the others are *old*.
- **New ReplicaSet** (``getNewReplicaSet``): named ``<deployment>-<hash>`` (:func:`template_hash`;
  a name taken by another template bumps ``status.collisionCount``), labels, selector and template
  labels plus ``pod-template-hash``, a controller ``ownerReference``, the Deployment's annotations
  (but not ``last-applied-configuration`` and the ``deployment.kubernetes.io/*`` ones), ``revision`` =
  the highest old revision + 1, ``desired-replicas`` and ``max-replicas`` (replicas + maxSurge),
  ``spec.minReadySeconds``. An existing new ReplicaSet gets the same annotations and, when its revision
  is behind, the next revision (its old one appended to ``revision-history``): that is how ``rollout
  undo`` brings an old ReplicaSet back. The Deployment's ``revision`` annotation follows the new one.
- **Order of a pass** (``syncDeployment``): being deleted → status only; ``spec.paused`` → Progressing
  ``Unknown``/``DeploymentPaused`` (``DeploymentResumed`` on resume) and scaling only; a *scaling event*
  (an active ReplicaSet's ``desired-replicas`` differs from ``spec.replicas``) → scaling only; else the
  strategy. Scaling (``scale``): the one active (or newest) ReplicaSet takes ``spec.replicas``; a
  saturated new one → old ones to 0; else, for RollingUpdate, proportional scaling: ``replicas +
  maxSurge`` minus what all active ReplicaSets hold is shared by their ``max-replicas`` proportions,
  largest first, the rounding leftover to the largest.
- **RollingUpdate** (``rolloutRolling``): maxSurge (default 25 %, rounded up) and maxUnavailable
  (default 25 %, rounded down; both 0 → maxUnavailable 1; never above replicas). Scale the new
  ReplicaSet up within ``replicas + maxSurge`` pods in all; if it did not scale, scale old ones down:
  at most ``all - (replicas - maxUnavailable) - unavailable new``, first their unhealthy replicas, then
  while more than ``replicas - maxUnavailable`` are available, oldest ReplicaSet first. Old
  ReplicaSets beyond ``revisionHistoryLimit`` (default 10) with no replicas are deleted once the
  Deployment is complete.
- **Recreate** (``rolloutRecreate``): old ReplicaSets to 0; wait until no old pod is left that is not
  Succeeded/Failed (terminating ones count); then create or scale the new one to ``spec.replicas``.
- **Status** (``calculateStatus``, ``syncRolloutStatus``): counts from the ReplicaSets' pods;
  ``Available`` (MinimumReplicasAvailable when ``available >= replicas - maxUnavailable``) and, with a
  ``progressDeadlineSeconds`` (default 600), ``Progressing``: NewReplicaSetCreated /
  FoundNewReplicaSet, ReplicaSetUpdated whenever counts move, NewReplicaSetAvailable when complete,
  ProgressDeadlineExceeded after the deadline without progress. A condition whose status and reason do
  not change keeps its timestamps, so an unchanged Deployment gets back exactly the status it has.

Differences, all small: the hash is taken over canonical JSON, not over Go's struct dump, so names
differ from a real cluster's (same length and alphabet); availability and counts come from the pods
themselves rather than from the ReplicaSets' (possibly stale) status; the Deployment's revision
annotation follows the new ReplicaSet, and a hash collision is resolved, in the same pass;
``unavailableReplicas`` counts against the ReplicaSets' sizes after this pass's scaling; deadlines and
availability fall due at their instant (Kubernetes: strictly after), so ``requeue_after`` is exact;
``terminatingReplicas``, ``spec.rollbackTo`` (extensions/v1beta1) and ReplicaFailure conditions do not
exist here. As in Kubernetes, an old ReplicaSet that still has more available pods than replicas (its
surplus not deleted yet) stops this pass's scale-down. No I/O; time is injected; an invalid
``maxSurge``/``maxUnavailable`` raises ``ValueError``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ambit.runtime.deployment_revisions import (
    ANNOTATIONS_NOT_COPIED,
    AVAILABLE,
    DESIRED_REPLICAS,
    FOUND_NEW_RS,
    MAX_HISTORY_CHARS,
    MAX_REPLICAS,
    NEW_RS_AVAILABLE,
    NEW_RS_CREATED,
    PAUSED,
    PROGRESSING,
    RESUMED,
    REVISION,
    REVISION_HISTORY,
    RS_UPDATED,
    TIMED_OUT,
    equal_ignore_hash,
    find_condition,
    quoted,
    revision_of,
    template_hash,
)
from ambit.runtime.replica_sets import (
    HASH_LABEL,
    Obj,
    controlled_by,
    controller_ref,
    controller_uid,
    is_available,
    is_ready,
    meta,
    min_ready_seconds,
    next_available_in,
    parse_time,
    replicas_of,
    rfc3339,
    spec,
    status,
)
from ambit.runtime.scheduler import is_active

_MAX_INT32 = 2**31 - 1  # progressDeadlineSeconds / revisionHistoryLimit: "no limit"


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    """``intstr.GetValueFromIntOrPercent``: a number, or ``N%`` of ``total`` rounded up or down."""
    try:
        if isinstance(value, str) and value.endswith("%"):
            scaled = int(value[:-1]) * total
            return -(-scaled // 100) if round_up else scaled // 100
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"invalid value for IntOrString: {value!r} (a number or a percentage)") from None


# --- the deployment's spec -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Spec:
    name: str
    generation: int
    replicas: int
    recreate: bool
    max_surge: int
    max_unavailable: int
    min_ready: int
    paused: bool
    deadline: int | None  # progressDeadlineSeconds; None: no deadline
    history: int | None  # revisionHistoryLimit; None: keep all

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> _Spec:
        s = spec(d)
        replicas = replicas_of(d)
        strategy = s.get("strategy") or {}
        recreate = strategy.get("type") == "Recreate"
        surge = unavailable = 0
        if not recreate:
            rolling = strategy.get("rollingUpdate") or {}
            surge_v, unavail_v = rolling.get("maxSurge"), rolling.get("maxUnavailable")
            surge = _int_or_percent("25%" if surge_v is None else surge_v, replicas, True)
            unavailable = _int_or_percent("25%" if unavail_v is None else unavail_v, replicas, False)
            if surge == 0 and unavailable == 0:
                unavailable = 1
            unavailable = min(unavailable, replicas)
        deadline = s.get("progressDeadlineSeconds")
        deadline = 600 if deadline is None else int(deadline)
        history = s.get("revisionHistoryLimit")
        history = 10 if history is None else int(history)
        return cls(
            name=str(meta(d).get("name")),
            generation=int(meta(d).get("generation") or 0),
            replicas=replicas,
            recreate=recreate,
            max_surge=surge,
            max_unavailable=unavailable,
            min_ready=min_ready_seconds(d),
            paused=bool(s.get("paused")),
            deadline=None if deadline == _MAX_INT32 else deadline,
            history=None if history == _MAX_INT32 else history,
        )


# --- one ReplicaSet as this pass sees it ---------------------------------------------------------


class _RS:
    def __init__(self, obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: float, created: bool):
        self.before = copy.deepcopy(dict(obj))
        self.obj: Obj = copy.deepcopy(dict(obj))
        self.created = created
        self.name = str(meta(obj).get("name"))
        self.pods = list(pods)
        active = [p for p in pods if is_active(p)]
        mrs = min_ready_seconds(obj)
        self.actual = len(active)
        self.ready = sum(1 for p in active if is_ready(p))
        self.available = sum(1 for p in active if is_available(p, mrs, now))
        self.next_available = None if created else next_available_in(obj, pods, now=now)
        stamp = now if created else parse_time(meta(obj).get("creationTimestamp"))
        self.order = (stamp or 0.0, self.name)  # oldest first, ties by name (a missing time is the oldest)

    @property
    def replicas(self) -> int:
        return replicas_of(self.obj)

    @replicas.setter
    def replicas(self, value: int) -> None:
        self.obj.setdefault("spec", {})["replicas"] = value

    def annotation(self, key: str) -> str | None:
        value = (meta(self.obj).get("annotations") or {}).get(key)
        return None if value is None else str(value)

    def annotate(self, key: str, value: str) -> bool:
        if self.annotation(key) == value:
            return False
        md = self.obj.setdefault("metadata", {})
        if not isinstance(md.get("annotations"), dict):
            md["annotations"] = {}
        md["annotations"][key] = value
        return True

    @property
    def revision(self) -> int:
        return revision_of(self.obj)

    def int_annotation(self, key: str) -> int | None:
        try:
            return int(self.annotation(key) or "")
        except ValueError:
            return None


@dataclass
class DeploymentPlan:
    create: list[Obj]  # new ReplicaSets
    update: list[Obj]  # changed ReplicaSets, full objects with their resourceVersion (compare-and-swap)
    delete: list[str]  # old ReplicaSets beyond revisionHistoryLimit
    deployment_annotations: dict[str, str] | None  # {revision annotation: value} when it changes
    status: Obj  # the Deployment's status; equal to the current one when nothing changed
    status_changed: bool
    requeue_after: float | None  # run again after this many seconds even if nothing changes

    @property
    def changed(self) -> bool:
        return bool(
            self.create or self.update or self.delete or self.deployment_annotations or self.status_changed
        )


def _condition(ctype: str, cstatus: str, reason: str, message: str, now: float) -> Obj:
    stamp = rfc3339(now)
    return {
        "type": ctype,
        "status": cstatus,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def _remove(conditions: list[Obj], ctype: str) -> None:
    conditions[:] = [c for c in conditions if c.get("type") != ctype]


def _set(conditions: list[Obj], cond: Obj) -> None:
    """``SetDeploymentCondition``: same status and reason → unchanged; same status → transition time kept."""
    current = find_condition(conditions, cond["type"])
    if (
        current is not None
        and current.get("status") == cond["status"]
        and current.get("reason") == cond["reason"]
    ):
        return
    if current is not None and current.get("status") == cond["status"]:
        cond["lastTransitionTime"] = current.get("lastTransitionTime")
    _remove(conditions, cond["type"])
    conditions.append(cond)


class _Pass:
    def __init__(
        self,
        d: Mapping[str, Any],
        replica_sets: Iterable[Mapping[str, Any]],
        pods: Iterable[Mapping[str, Any]],
        now: float,
    ):
        self.d, self.s, self.now = d, _Spec.of(d), now
        namespace = meta(d).get("namespace") or "default"
        every = [rs for rs in replica_sets if (meta(rs).get("namespace") or "default") == namespace]
        self.names = {str(meta(rs).get("name")): rs for rs in every}
        by_owner: dict[str, list[Mapping[str, Any]]] = {}
        for pod in pods:
            if (uid := controller_uid(pod)) is not None:
                by_owner.setdefault(uid, []).append(pod)
        self.sets = [
            _RS(rs, by_owner.get(str(meta(rs).get("uid")), []), now, created=False)
            for rs in every
            if controlled_by(rs, d)
        ]
        self.status0 = status(d)
        self.conditions: list[Obj] = copy.deepcopy(list(self.status0.get("conditions") or []))
        self.collisions = int(self.status0.get("collisionCount") or 0)
        self.deleted: list[str] = []
        self.revision: str | None = None
        self.requeue: list[float] = [rs.next_available for rs in self.sets if rs.next_available is not None]
        template = spec(d).get("template") or {}
        matching = sorted(
            (rs for rs in self.sets if equal_ignore_hash(spec(rs.obj).get("template") or {}, template)),
            key=lambda rs: rs.order,
        )
        self.new: _RS | None = matching[0] if matching else None
        self.olds = [rs for rs in self.sets if rs is not self.new]

    # -- revisions and the new ReplicaSet (getNewReplicaSet) --

    def _next_revision(self) -> int:
        return max((rs.revision for rs in self.olds), default=0) + 1

    def _replica_annotations(self, rs: _RS) -> bool:
        desired = rs.annotate(DESIRED_REPLICAS, str(self.s.replicas))
        return rs.annotate(MAX_REPLICAS, str(self.s.replicas + self.s.max_surge)) or desired

    def _annotate_new(self, rs: _RS, revision: int, exists: bool) -> None:
        """``SetNewReplicaSetAnnotations``."""
        for key, value in (meta(self.d).get("annotations") or {}).items():
            if key not in ANNOTATIONS_NOT_COPIED:
                rs.annotate(str(key), str(value))
        old = rs.annotation(REVISION)
        try:
            old_number = int(old) if old else 0
        except ValueError:
            return
        if old_number < revision:
            rs.annotate(REVISION, str(revision))
            if old:  # rolled back to this ReplicaSet: keep the revisions it served
                history = rs.annotation(REVISION_HISTORY) or ""
                parts = history.split(",") if history else []
                while parts and len(",".join([*parts, old])) > MAX_HISTORY_CHARS:
                    parts.pop(0)
                rs.annotate(REVISION_HISTORY, ",".join([*parts, old]))
        if not exists:
            self._replica_annotations(rs)

    def _follow_revision(self, revision: str | None) -> None:
        if revision is not None and (meta(self.d).get("annotations") or {}).get(REVISION) != revision:
            self.revision = revision

    def _sync_new(self) -> None:
        rs = self.new
        if rs is None:
            return
        self._annotate_new(rs, self._next_revision(), exists=True)
        if min_ready_seconds(rs.obj) != self.s.min_ready:
            rs.obj.setdefault("spec", {})["minReadySeconds"] = self.s.min_ready
        self._follow_revision(rs.annotation(REVISION))
        if self.s.deadline is not None and find_condition(self.conditions, PROGRESSING) is None:
            msg = f"Found new replica set {quoted(rs.name)}"
            _set(self.conditions, _condition(PROGRESSING, "True", FOUND_NEW_RS, msg, self.now))

    def _create_new(self) -> _RS:
        template = copy.deepcopy(dict(spec(self.d).get("template") or {}))
        while True:
            digest = template_hash(template, self.collisions)
            name = f"{self.s.name}-{digest}"
            if name not in self.names:
                break
            self.collisions += 1  # taken by another template: Kubernetes bumps collisionCount
        if not isinstance(template.get("metadata"), dict):
            template["metadata"] = {}
        labels = {**(template["metadata"].get("labels") or {}), HASH_LABEL: digest}
        template["metadata"]["labels"] = labels
        selector = copy.deepcopy(dict(spec(self.d).get("selector") or {}))
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), HASH_LABEL: digest}
        obj: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": meta(self.d).get("namespace") or "default",
                "labels": dict(labels),
                "ownerReferences": [controller_ref(self.d, "Deployment")],
            },
            "spec": {
                "replicas": 0,
                "minReadySeconds": self.s.min_ready,
                "selector": selector,
                "template": template,
            },
        }
        rs = _RS(obj, [], self.now, created=True)
        self.sets.append(rs)
        self.names[name] = obj
        rs.replicas = self._new_rs_replicas(rs)
        revision = self._next_revision()
        self._annotate_new(rs, revision, exists=False)
        self._follow_revision(str(revision))
        if self.s.deadline is not None:
            msg = f"Created new replica set {quoted(name)}"
            _set(self.conditions, _condition(PROGRESSING, "True", NEW_RS_CREATED, msg, self.now))
        self.new = rs
        return rs

    # -- scaling --

    def _scale(self, rs: _RS, size: int, always_annotate: bool = False) -> bool:
        """``scaleReplicaSetAndRecordEvent`` (``always_annotate``: ``scaleReplicaSet``)."""
        if rs.replicas == size and not always_annotate:
            return False
        changed = rs.replicas != size
        rs.replicas = size
        self._replica_annotations(rs)
        return changed

    def _new_rs_replicas(self, new: _RS) -> int:
        """``NewRSNewReplicas``."""
        if self.s.recreate:
            return self.s.replicas
        most = self.s.replicas + self.s.max_surge
        current = sum(rs.replicas for rs in self.sets)
        if current >= most:
            return new.replicas
        return new.replicas + min(most - current, self.s.replicas - new.replicas)

    def _is_scaling_event(self) -> bool:
        for rs in self.sets:
            desired = rs.int_annotation(DESIRED_REPLICAS)
            if rs.replicas > 0 and desired is not None and desired != self.s.replicas:
                return True
        return False

    def _scale_all(self) -> None:
        """``scale``: a scaling event or a paused Deployment."""
        new, s = self.new, self.s
        olds = sorted(self.olds, key=lambda rs: rs.order, reverse=True)
        active = [rs for rs in [*olds, new] if rs is not None and rs.replicas > 0]
        if len(active) <= 1:
            target = active[0] if active else (new or (olds[0] if olds else None))
            if target is not None:
                self._scale(target, s.replicas)
            return
        if new is not None and (
            new.int_annotation(DESIRED_REPLICAS) == s.replicas == new.replicas == new.available
        ):
            for rs in olds:
                if rs.replicas > 0:
                    self._scale(rs, 0)
            return
        if s.recreate:
            return
        allowed = s.replicas + s.max_surge if s.replicas > 0 else 0
        to_add = allowed - sum(rs.replicas for rs in active)
        if to_add > 0:  # largest first; ties: newer first when growing, older first when shrinking
            active.sort(key=lambda rs: (-rs.replicas, -rs.order[0], rs.name))
        elif to_add < 0:
            active.sort(key=lambda rs: (-rs.replicas, rs.order))
        sizes: list[int] = []
        added = 0
        for rs in active:
            share = self._proportion(rs, to_add, added)
            sizes.append(rs.replicas + share)
            added += share
        if to_add:
            sizes[0] = max(0, sizes[0] + to_add - added)
        for rs, size in zip(active, sizes, strict=True):
            self._scale(rs, size, always_annotate=True)

    def _proportion(self, rs: _RS, to_add: int, added: int) -> int:
        """``GetProportion``."""
        if rs.replicas == 0 or to_add in (0, added):
            return 0
        if self.s.replicas == 0:
            fraction = -rs.replicas
        else:
            annotated = rs.int_annotation(MAX_REPLICAS)
            if annotated is None:
                annotated = int(self.status0.get("replicas") or 0)
            if annotated <= 0:
                return 0
            exact = rs.replicas * (self.s.replicas + self.s.max_surge) / annotated
            fraction = int(exact + 0.5) - rs.replicas  # math.Round: half away from zero (exact > 0)
        allowed = to_add - added
        return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)

    # -- strategies --

    def _rolling(self) -> Obj:
        new = self.new or self._create_new()
        if self._reconcile_new(new) or self._reconcile_old(new):
            return self._rollout_status()
        if self._complete(self.status0):
            self._cleanup()
        return self._rollout_status()

    def _reconcile_new(self, new: _RS) -> bool:
        if new.replicas == self.s.replicas:
            return False
        if new.replicas > self.s.replicas:
            return self._scale(new, self.s.replicas)
        return self._scale(new, self._new_rs_replicas(new))

    def _reconcile_old(self, new: _RS) -> bool:
        olds = sorted((rs for rs in self.olds if rs.replicas > 0), key=lambda rs: rs.order)
        if not olds:
            return False
        min_available = self.s.replicas - self.s.max_unavailable
        every = [*self.olds, new]
        budget = sum(rs.replicas for rs in every) - min_available - (new.replicas - new.available)
        if budget <= 0:
            return False
        cleaned = 0  # cleanupUnhealthyReplicas: old replicas that are not available go first
        for rs in olds:
            if cleaned >= budget:
                break
            if rs.replicas == rs.available:
                continue
            if rs.available > rs.replicas:  # its surplus pods are not gone yet: Kubernetes errors out
                return False
            count = min(budget - cleaned, rs.replicas - rs.available)
            self._scale(rs, rs.replicas - count)
            cleaned += count
        available = sum(rs.available for rs in every)  # scaleDownOldReplicaSetsForRollingUpdate
        scaled = 0
        if available > min_available:
            for rs in olds:
                if scaled >= available - min_available:
                    break
                if rs.replicas == 0:
                    continue
                count = min(rs.replicas, available - min_available - scaled)
                self._scale(rs, rs.replicas - count)
                scaled += count
        return cleaned + scaled > 0

    def _recreate(self) -> Obj:
        scaled = [self._scale(rs, 0) for rs in self.olds if rs.replicas > 0]
        if any(scaled) or self._old_pods_running():
            return self._rollout_status()
        new = self.new or self._create_new()
        self._scale(new, self.s.replicas)
        if self._complete(self.status0):
            self._cleanup()
        return self._rollout_status()

    def _old_pods_running(self) -> bool:
        if sum(rs.actual for rs in self.olds) > 0:
            return True
        return any(status(p).get("phase") not in ("Succeeded", "Failed") for rs in self.olds for p in rs.pods)

    def _cleanup(self) -> None:
        """``cleanupDeployment``: old ReplicaSets beyond revisionHistoryLimit, lowest revision first."""
        if self.s.history is None:
            return
        cleanable = [rs for rs in self.olds if not meta(rs.obj).get("deletionTimestamp")]
        excess = len(cleanable) - self.s.history
        if excess <= 0:
            return
        cleanable.sort(key=lambda rs: (rs.revision, rs.order))
        for rs in cleanable[:excess]:
            if rs.actual == 0 and rs.replicas == 0 and int(status(rs.obj).get("replicas") or 0) == 0:
                self.deleted.append(rs.name)

    # -- status --

    def _complete(self, st: Mapping[str, Any]) -> bool:
        """``DeploymentComplete``."""
        want = self.s.replicas
        return (
            int(st.get("updatedReplicas") or 0) == want
            and int(st.get("replicas") or 0) == want
            and int(st.get("availableReplicas") or 0) == want
            and int(st.get("observedGeneration") or 0) >= self.s.generation
        )

    def _calculate_status(self) -> Obj:
        available = sum(rs.available for rs in self.sets)
        result: Obj = {
            "observedGeneration": self.s.generation,
            "replicas": sum(rs.actual for rs in self.sets),
            "updatedReplicas": self.new.actual if self.new is not None else 0,
            "readyReplicas": sum(rs.ready for rs in self.sets),
            "availableReplicas": available,
            "unavailableReplicas": max(0, sum(rs.replicas for rs in self.sets) - available),
            "conditions": copy.deepcopy(self.conditions),
        }
        if self.collisions or "collisionCount" in self.status0:
            result["collisionCount"] = self.collisions
        if available >= self.s.replicas - self.s.max_unavailable:
            cond = _condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                self.now,
            )
        else:
            msg = "Deployment does not have minimum availability."
            cond = _condition(AVAILABLE, "False", "MinimumReplicasUnavailable", msg, self.now)
        _set(result["conditions"], cond)
        return result

    def _rollout_status(self) -> Obj:
        """``syncRolloutStatus``."""
        result = self._calculate_status()
        conditions: list[Obj] = result["conditions"]
        _remove(conditions, "ReplicaFailure")  # no ReplicaSet here reports one
        if self.s.deadline is None:
            _remove(conditions, PROGRESSING)
            return result
        current = find_condition(self.conditions, PROGRESSING)
        what = (
            f"ReplicaSet {quoted(self.new.name)}"
            if self.new is not None
            else f"Deployment {quoted(self.s.name)}"
        )
        settled = result["replicas"] == result["updatedReplicas"] and (
            current is not None and current.get("reason") == NEW_RS_AVAILABLE
        )
        if not settled:
            if self._complete(result):
                msg = f"{what} has successfully progressed."
                _set(conditions, _condition(PROGRESSING, "True", NEW_RS_AVAILABLE, msg, self.now))
            elif self._progressed(result):
                cond = _condition(PROGRESSING, "True", RS_UPDATED, f"{what} is progressing.", self.now)
                if current is not None and current.get("status") == "True":
                    cond["lastTransitionTime"] = current.get("lastTransitionTime")
                _remove(conditions, PROGRESSING)
                _set(conditions, cond)
            elif self._timed_out(conditions):
                msg = f"{what} has timed out progressing."
                _set(conditions, _condition(PROGRESSING, "False", TIMED_OUT, msg, self.now))
        final = find_condition(conditions, PROGRESSING)
        if (
            final is not None
            and final.get("reason") not in (TIMED_OUT, NEW_RS_AVAILABLE)
            and not self._complete(result)
        ):
            since = parse_time(final.get("lastUpdateTime"))
            if since is not None and since + self.s.deadline > self.now:
                self.requeue.append(since + self.s.deadline - self.now)  # requeueStuckDeployment
        return result

    def _progressed(self, new: Mapping[str, Any]) -> bool:
        """``DeploymentProgressing``: more updated, fewer old, more ready or more available replicas."""
        old = self.status0

        def n(st: Mapping[str, Any], key: str) -> int:
            return int(st.get(key) or 0)

        return (
            n(new, "updatedReplicas") > n(old, "updatedReplicas")
            or n(new, "replicas") - n(new, "updatedReplicas") < n(old, "replicas") - n(old, "updatedReplicas")
            or n(new, "readyReplicas") > n(old, "readyReplicas")
            or n(new, "availableReplicas") > n(old, "availableReplicas")
        )

    def _timed_out(self, conditions: Sequence[Mapping[str, Any]]) -> bool:
        cond = find_condition(conditions, PROGRESSING)
        if cond is None or self.s.deadline is None or cond.get("reason") == NEW_RS_AVAILABLE:
            return False
        if cond.get("reason") == TIMED_OUT:
            return True
        since = parse_time(cond.get("lastUpdateTime"))
        return since is not None and since + self.s.deadline <= self.now

    def _paused_conditions(self) -> None:
        """``checkPausedConditions``."""
        if self.s.deadline is None:
            return
        current = find_condition(self.conditions, PROGRESSING)
        reason = current.get("reason") if current is not None else None
        if reason == TIMED_OUT:
            return
        if self.s.paused and reason != PAUSED:
            _set(
                self.conditions, _condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused", self.now)
            )
        elif not self.s.paused and reason == PAUSED:
            _set(
                self.conditions,
                _condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed", self.now),
            )

    # -- the pass --

    def run(self) -> DeploymentPlan:
        if meta(self.d).get("deletionTimestamp"):
            self._sync_new()
            result = self._calculate_status()
        else:
            self._paused_conditions()
            self._sync_new()
            if self.s.paused or self._is_scaling_event():
                self._scale_all()
                if self.s.paused:
                    self._cleanup()
                result = self._calculate_status()
            elif self.s.recreate:
                result = self._recreate()
            else:
                result = self._rolling()
        gone = set(self.deleted)
        return DeploymentPlan(
            create=[rs.obj for rs in self.sets if rs.created],
            update=[
                rs.obj for rs in self.sets if not rs.created and rs.name not in gone and rs.obj != rs.before
            ],
            delete=list(self.deleted),
            deployment_annotations=None if self.revision is None else {REVISION: self.revision},
            status=result,
            status_changed=result != dict(self.status0),
            requeue_after=min(self.requeue) if self.requeue else None,
        )


def reconcile(
    deployment: Mapping[str, Any],
    replica_sets: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    *,
    now: float,
) -> DeploymentPlan:
    """One pass of the deployment controller over ``deployment`` at ``now`` (epoch seconds).

    ``replica_sets``: the ReplicaSets of the namespace (the Deployment's own are picked by owner uid;
    the others only reserve names); ``pods``: at least the pods of those ReplicaSets.
    """
    return _Pass(deployment, replica_sets, pods, now).run()


# --- kubectl rollout -----------------------------------------------------------------------------
