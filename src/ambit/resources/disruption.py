"""PodDisruptionBudget rules: which budgets cover a pod, a budget's status, and the Eviction decision.

The one home of Kubernetes' PDB semantics, used by the store's Eviction subresource (API server role)
and by the runtime's disruption controller (which writes each PDB's ``status``). Both call the same
:func:`pdb_status`, so an eviction decides on exactly the numbers the controller would write.

Sources (kubernetes/kubernetes, read for the facts only):

* ``pkg/controller/disruption/disruption.go``: ``getExpectedPodCount`` / ``getExpectedScale`` (the
  expected count and desired healthy count), ``countHealthyPods``, ``buildDisruptedPodMap``
  (``DeletionTimeout`` of 2 minutes), ``updatePdbStatus`` (``disruptionsAllowed`` is 0 unless
  ``expectedPods`` > 0) and ``failSafe`` (a budget that cannot be computed allows no disruption);
* ``staging/src/k8s.io/component-helpers/apps/poddisruptionbudget/helpers.go``:
  ``UpdateDisruptionAllowedCondition`` (condition ``DisruptionAllowed``, reasons ``SufficientPods`` /
  ``InsufficientPods``; ``SyncFailed`` comes from ``failSafe``), with apimachinery's
  ``meta.SetStatusCondition`` (``lastTransitionTime`` moves only when the condition's status changes);
* ``pkg/registry/core/pod/storage/eviction.go``: ``Create``, ``canIgnorePDB``,
  ``getPodDisruptionBudgets``, ``checkAndDecrement``, ``createTooManyRequestsError`` and
  ``addConditionAndDeletePod`` (the pod's ``DisruptionTarget`` condition); the status cause type
  ``DisruptionBudget`` is ``policyv1.DisruptionBudgetCause``;
* the PodDisruptionBudget API reference (policy/v1): a null selector matches no pods, an empty
  selector ``{}`` matches every pod of the namespace; ``unhealthyPodEvictionPolicy`` is
  ``IfHealthyBudget`` (the default) or ``AlwaysAllow``.

The rules, as implemented here:

* **Budget.** ``maxUnavailable`` (integer or percentage) and a percentage ``minAvailable`` take the
  expected count from the pods' controllers: the sum of the desired replicas of every distinct
  controller (``expected_scale(pod)``, one call per controller ``ownerReference``); pods without a
  controller are left out of that count (Kubernetes' "unmanaged pods") but still count as healthy.
  Percentages round up. ``desiredHealthy`` is ``minAvailable`` or ``expectedPods - maxUnavailable``
  (at least 0). An integer ``minAvailable`` takes ``expectedPods`` as the number of selected pods.
  A PDB with neither field expects 0 pods and so allows no disruption.
* **Healthy.** A selected pod that is Ready, not terminating (no ``deletionTimestamp``) and not
  listed in ``disruptedPods``.
* **disruptedPods.** An entry is kept while its pod is selected, not yet terminating and less than 2
  minutes old; the entry of a deleted or terminating pod is dropped (the controller has seen the
  deletion), and so is an expired one (the eviction never turned into a deletion).
* **disruptionsAllowed** = ``max(0, currentHealthy - desiredHealthy)``, 0 when ``expectedPods`` is 0.
* **Eviction.** A pod that is Pending, Succeeded, Failed or already terminating is deleted without
  looking at budgets. Otherwise more than one matching PDB is a 500 and none allows the eviction.
  A pod that is not Ready is let go without spending the budget when the policy is ``AlwaysAllow``,
  or when ``currentHealthy >= desiredHealthy > 0`` (``IfHealthyBudget``, also for an unset or unknown
  policy, as the API server does); otherwise ``checkAndDecrement``: a status whose
  ``observedGeneration`` is behind the PDB's ``generation`` is a 429 ("still being processed", retry
  after 10 s), more than 2000 ``disruptedPods`` a 403, ``disruptionsAllowed`` 0 a 429 naming the
  budget; else the budget drops by one and the pod is recorded in ``disruptedPods`` at ``now``.

Where ambit differs, and why:

* :func:`evaluate_eviction` computes the status fresh (``pdb_status`` over the given pods, carrying
  the stored ``disruptedPods``) instead of trusting the controller's last write, so its
  ``observedGeneration`` always equals the PDB's ``generation`` and the "still being processed" 429
  happens only when the budget cannot be computed at all (a controller whose scale is unknown: the
  fail-safe status keeps the previous ``observedGeneration``, exactly as Kubernetes' ``failSafe``).
  The caller writes the pod's deletion and ``updated_pdb_status`` in one transaction, so there is no
  optimistic-concurrency retry and no resourceVersion precondition on the deletion of an unready pod.
* ``expected_scale`` returns a replica count, not the controller's identity, so controllers are told
  apart by the pod's controller ``ownerReference``: two ReplicaSets of one Deployment in mid-rollout
  count the Deployment's replicas twice (Kubernetes counts them once). That errs on the safe side: a
  larger expected count only raises ``desiredHealthy``.
* At exactly 2 minutes a ``disruptedPods`` entry is expired (Kubernetes keeps the entry for that one
  instant but already counts the pod healthy); an entry whose time cannot be read restarts at ``now``.
* Dry-run is the caller's: it simply does not write ``updated_pdb_status``.

Times are RFC3339 strings (the store's clock, ``ambit.store.core.now_rfc3339``); ``now`` is copied
as given into ``disruptedPods`` and ``lastTransitionTime``, so the same inputs give the same status,
and a status fed back in with a later ``now`` comes out unchanged until something really changes.

Pure: no I/O, stdlib and ``ambit.resources.objects`` only.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ambit.resources.objects import (
    JSON,
    SelectorError,
    condition,
    controller_of,
    is_ready,
    items,
    labels,
    mapping,
    metadata,
    name_of,
    namespace_or_default,
    phase,
    selector_matches,
    string_map,
    text,
)

ExpectedScale = Callable[[JSON], int | None]
"""The desired replica count of the workload that controls a pod (a ReplicaSet resolved to its
Deployment, a StatefulSet...), or None when that controller cannot be found."""

DELETION_TIMEOUT: Final = timedelta(minutes=2)
MAX_DISRUPTED_POD_SIZE: Final = 2000
EVICTION_RETRY_AFTER_SECONDS: Final = 10

DISRUPTION_ALLOWED: Final = "DisruptionAllowed"
SUFFICIENT_PODS: Final = "SufficientPods"
INSUFFICIENT_PODS: Final = "InsufficientPods"
SYNC_FAILED: Final = "SyncFailed"

IF_HEALTHY_BUDGET: Final = "IfHealthyBudget"
ALWAYS_ALLOW: Final = "AlwaysAllow"

DISRUPTION_BUDGET_CAUSE: Final = "DisruptionBudget"
DISRUPTION_TARGET: Final = "DisruptionTarget"
EVICTION_BY_EVICTION_API: Final = "EvictionByEvictionAPI"
EVICTING_MESSAGE: Final = "Eviction API: evicting"

VIOLATION_MESSAGE: Final = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE_PDBS_MESSAGE: Final = (
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
)

# Phases in which a pod is deleted without consulting any budget (eviction.go canIgnorePDB).
_PHASES_IGNORING_PDB: Final = frozenset({"Pending", "Succeeded", "Failed"})
_PERCENT: Final = re.compile(r"([0-9]+)%")
# Field order of what this module writes, Kubernetes' own (so the JSON is stable and familiar).
_CONDITION_FIELDS: Final = (
    "type",
    "status",
    "observedGeneration",
    "lastProbeTime",
    "lastTransitionTime",
    "reason",
    "message",
)
_STATUS_FIELDS: Final = (
    "observedGeneration",
    "disruptedPods",
    "disruptionsAllowed",
    "currentHealthy",
    "desiredHealthy",
    "expectedPods",
    "conditions",
)


# --- which budgets, which pods ------------------------------------------------------------------


def _selects(pdb: Mapping[str, Any], pod_labels: Mapping[str, str]) -> bool:
    """policy/v1: a null selector matches nothing, ``{}`` everything; an invalid one nothing."""
    selector = mapping(pdb, "spec").get("selector")
    if not isinstance(selector, dict):
        return False
    try:
        return selector_matches(selector, pod_labels)
    except SelectorError:
        return False


def expected_scale_of(objects: Iterable[Mapping[str, Any]], namespace: str) -> ExpectedScale:
    """``expected_scale`` over a namespace's workload objects (Deployments and ReplicaSets): a
    ReplicaSet owned by a Deployment counts the Deployment's ``spec.replicas``, another ReplicaSet its
    own, a Deployment owning pods directly its own; None when the controller is not among them."""
    by_uid: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in objects:
        if (metadata(obj).get("namespace") or "default") == namespace and metadata(obj).get("uid"):
            by_uid[(str(obj.get("kind")), str(metadata(obj).get("uid")))] = obj

    def replicas(obj: Mapping[str, Any]) -> int:
        value = mapping(obj, "spec").get("replicas")
        return 1 if value is None else int(value)

    def controller(obj: Mapping[str, Any]) -> tuple[str, str] | None:
        ref = controller_of(obj)
        return None if ref is None else (str(ref.get("kind")), str(ref.get("uid")))

    def scale(pod: JSON) -> int | None:
        key = controller(pod)
        found = by_uid.get(key) if key is not None else None
        if found is None:
            return None
        if found.get("kind") == "ReplicaSet":
            up = controller(found)
            if up is not None and up[0] == "Deployment":
                deployment = by_uid.get(up)
                return None if deployment is None else replicas(deployment)
        return replicas(found)

    return scale


def pdbs_for_pod(pod: Mapping[str, Any], pdbs: Iterable[JSON]) -> list[JSON]:
    """The PodDisruptionBudgets of the pod's namespace whose selector matches the pod's labels."""
    namespace, pod_labels = namespace_or_default(pod), labels(pod)
    return [pdb for pdb in pdbs if namespace_or_default(pdb) == namespace and _selects(pdb, pod_labels)]


def pods_for_pdb(pdb: Mapping[str, Any], pods: Iterable[JSON]) -> list[JSON]:
    """The pods a PodDisruptionBudget selects: its namespace, its selector."""
    namespace = namespace_or_default(pdb)
    return [pod for pod in pods if namespace_or_default(pod) == namespace and _selects(pdb, labels(pod))]


def is_terminating(pod: Mapping[str, Any]) -> bool:
    """The pod has a ``deletionTimestamp``: it is being deleted."""
    return bool(metadata(pod).get("deletionTimestamp"))


def _controller_key(pod: Mapping[str, Any]) -> str | None:
    """The pod's controller ``ownerReference`` (uid, else kind/name), or None for an unmanaged pod."""
    ref = controller_of(pod)
    if ref is None:
        return None
    return text(ref, "uid") or f"{text(ref, 'kind')}/{text(ref, 'name')}"


# --- time ---------------------------------------------------------------------------------------


def parse_time(value: str) -> datetime | None:
    """An RFC3339 time (``2025-01-01T00:00:00Z``) as an aware datetime, or None when unreadable."""
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _parse_now(now: str) -> datetime:
    moment = parse_time(now)
    if moment is None:
        raise ValueError(f"now must be an RFC3339 time, got {now!r}")
    return moment


def next_recheck(status: Mapping[str, Any]) -> str | None:
    """When the earliest ``disruptedPods`` entry of a status expires (RFC3339), or None.

    The controller recomputes the budget then, as Kubernetes' recheck queue does.
    """
    moments = [parse_time(stamp) for stamp in string_map(status.get("disruptedPods")).values()]
    known = [moment for moment in moments if moment is not None]
    if not known:
        return None
    return (min(known) + DELETION_TIMEOUT).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the budget ---------------------------------------------------------------------------------


class _SyncFailed(Exception):
    """The budget cannot be computed; the message goes into the SyncFailed condition."""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _scaled(value: Any, total: int) -> int:
    """An IntOrString against ``total``: an integer as is, a percentage of it rounded up."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _SyncFailed(f"invalid value for IntOrString: invalid value {value!r}")
    return -(-int(match.group(1)) * total // 100)


def _expected_scale(pods: Sequence[JSON], expected_scale: ExpectedScale | None) -> int:
    """The sum of the desired replicas of the selected pods' distinct controllers."""
    scales: dict[str, int] = {}
    for pod in pods:
        key = _controller_key(pod)
        if key is None or key in scales:
            continue  # unmanaged (Kubernetes warns and leaves it out), or already counted
        replicas = expected_scale(pod) if expected_scale is not None else None
        if replicas is None:
            raise _SyncFailed(f'found no controllers for pod "{name_of(pod)}"')
        scales[key] = replicas
    return sum(scales.values())


def _expected_and_desired(
    pdb: Mapping[str, Any], pods: Sequence[JSON], expected_scale: ExpectedScale | None
) -> tuple[int, int]:
    """(expectedPods, desiredHealthy), Kubernetes' getExpectedPodCount."""
    spec = mapping(pdb, "spec")
    max_unavailable, min_available = spec.get("maxUnavailable"), spec.get("minAvailable")
    if max_unavailable is not None:
        expected = _expected_scale(pods, expected_scale)
        return expected, max(0, expected - _scaled(max_unavailable, expected))
    if min_available is None:
        return 0, 0
    if isinstance(min_available, int) and not isinstance(min_available, bool):
        return len(pods), min_available
    expected = _expected_scale(pods, expected_scale)
    return expected, _scaled(min_available, expected)


def _kept_disruptions(
    recorded: Mapping[str, str], pods: Sequence[JSON], now: datetime, now_text: str
) -> dict[str, str]:
    """The ``disruptedPods`` entries still pending: pod selected, not terminating, under 2 minutes."""
    kept: dict[str, str] = {}
    for pod in pods:
        name = name_of(pod)
        stamp = recorded.get(name)
        if stamp is None or is_terminating(pod):
            continue
        moment = parse_time(stamp)
        if moment is None:
            kept[name] = now_text  # unreadable: restart the clock rather than forget the eviction
        elif moment + DELETION_TIMEOUT > now:
            kept[name] = stamp
    return dict(sorted(kept.items()))


def _set_condition(conditions: Sequence[JSON], new: JSON, now: str) -> list[JSON]:
    """``conditions`` with ``new`` set, as apimachinery's SetStatusCondition: the transition time
    moves only when the condition's status changes; other conditions are kept as they are."""
    result: list[JSON] = []
    found = False
    for old in conditions:
        if old.get("type") != new["type"]:
            result.append(copy.deepcopy(old))
            continue
        found = True
        result.append(_with_transition_time(new, old, now))
    if not found:
        result.append(_with_transition_time(new, None, now))
    return result


def _with_transition_time(new: JSON, old: Mapping[str, Any] | None, now: str) -> JSON:
    """``new`` with the ``lastTransitionTime`` of ``old`` if its status is the same, else ``now``."""
    previous = text(old, "lastTransitionTime")
    unchanged = old is not None and old.get("status") == new["status"] and bool(previous)
    stamped = {**new, "lastTransitionTime": previous if unchanged else now}
    return {key: stamped[key] for key in _CONDITION_FIELDS if key in stamped}


def _disruption_allowed(allowed: int, observed_generation: int) -> JSON:
    return {
        "type": DISRUPTION_ALLOWED,
        "status": "True" if allowed > 0 else "False",
        "observedGeneration": observed_generation,
        "reason": SUFFICIENT_PODS if allowed > 0 else INSUFFICIENT_PODS,
        "message": "",
    }


def _fail_safe(previous: Mapping[str, Any], message: str, now: str) -> JSON:
    """Kubernetes' failSafe: the previous status, no disruption allowed, condition SyncFailed."""
    status = copy.deepcopy(dict(previous))
    observed = _int(status.get("observedGeneration"))
    status["observedGeneration"] = observed
    status["disruptionsAllowed"] = 0
    for key in ("currentHealthy", "desiredHealthy", "expectedPods"):
        status[key] = _int(status.get(key))
    failed = {
        "type": DISRUPTION_ALLOWED,
        "status": "False",
        "observedGeneration": observed,
        "reason": SYNC_FAILED,
        "message": message,
    }
    status["conditions"] = _set_condition(items(previous, "conditions"), failed, now)
    return _status_in_order(status)


def pdb_status(
    pdb: Mapping[str, Any], pods: Iterable[JSON], *, expected_scale: ExpectedScale | None, now: str
) -> JSON:
    """The PodDisruptionBudget's ``status`` as Kubernetes' disruption controller would write it.

    ``pods`` may hold any pods: the PDB's namespace and selector pick its own. ``expected_scale``
    is needed only for ``maxUnavailable`` and percentage ``minAvailable``; when a controlled pod's
    scale is unknown (None, or no callback), the result is the fail-safe status (previous numbers,
    ``disruptionsAllowed`` 0, condition ``SyncFailed``). ``now`` is an RFC3339 time.
    """
    now_moment = _parse_now(now)
    previous = mapping(pdb, "status")
    generation = _int(metadata(pdb).get("generation"))
    selected = pods_for_pdb(pdb, pods)
    try:
        expected, desired = _expected_and_desired(pdb, selected, expected_scale)
    except _SyncFailed as failure:
        return _fail_safe(previous, str(failure), now)
    disrupted = _kept_disruptions(string_map(previous.get("disruptedPods")), selected, now_moment, now)
    healthy = sum(
        1 for pod in selected if is_ready(pod) and not is_terminating(pod) and name_of(pod) not in disrupted
    )
    allowed = healthy - desired if expected > 0 and healthy > desired else 0
    status: JSON = {"observedGeneration": generation}
    if disrupted:
        status["disruptedPods"] = disrupted
    status["disruptionsAllowed"] = allowed
    status["currentHealthy"] = healthy
    status["desiredHealthy"] = desired
    status["expectedPods"] = expected
    status["conditions"] = _set_condition(
        items(previous, "conditions"), _disruption_allowed(allowed, generation), now
    )
    return status


# --- the Eviction subresource -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EvictionDecision:
    """What the Eviction subresource answers, and what the caller writes when it is allowed.

    ``status_code``: 201 allowed (the Eviction is created), 429 refused by the budget, 403 refused
    because too many evictions are unconfirmed, 500 more than one budget. ``message``, ``reason`` and
    ``details`` are the ``metav1.Status`` fields (``details.causes[].reason`` is ``DisruptionBudget``
    with the budget's name in its message); :meth:`status_body` assembles the response.

    When allowed, the caller adds ``pod_condition`` to the pod's conditions (replacing any
    ``DisruptionTarget``), deletes the pod and, when ``updated_pdb_status`` is not None, writes it as
    the budget's status, all in one transaction. ``pdb`` names the budget that decided, if any.
    """

    allowed: bool
    status_code: int
    message: str = ""
    pdb: str | None = None
    updated_pdb_status: JSON | None = None
    reason: str = ""
    details: JSON = field(default_factory=dict)
    pod_condition: JSON | None = None

    @property
    def causes(self) -> list[JSON]:
        return items(self.details, "causes")

    def status_body(self) -> JSON:
        """The ``metav1.Status`` the API server sends back."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success" if self.allowed else "Failure",
        }
        if self.message:
            body["message"] = self.message
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = copy.deepcopy(self.details)
        body["code"] = self.status_code
        return body


def _disruption_target(pod: Mapping[str, Any], now: str) -> JSON:
    """The pod condition the eviction adds before deleting (eviction.go addConditionAndDeletePod)."""
    target: JSON = {
        "type": DISRUPTION_TARGET,
        "status": "True",
        "lastProbeTime": None,
        "reason": EVICTION_BY_EVICTION_API,
        "message": EVICTING_MESSAGE,
    }
    return _with_transition_time(target, condition(pod, DISRUPTION_TARGET), now)


def _too_many_requests(pdb: str, cause: str, retry_after: int) -> EvictionDecision:
    details: JSON = {"causes": [{"reason": DISRUPTION_BUDGET_CAUSE, "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return EvictionDecision(
        allowed=False,
        status_code=429,
        message=VIOLATION_MESSAGE,
        pdb=pdb,
        reason="TooManyRequests",
        details=details,
    )


def evaluate_eviction(
    pod: Mapping[str, Any],
    pdbs: Iterable[JSON],
    pods: Iterable[JSON],
    *,
    expected_scale: ExpectedScale | None,
    now: str,
) -> EvictionDecision:
    """Kubernetes' Eviction subresource for ``pod``, against the budgets in ``pdbs``.

    ``pods`` are the namespace's pods, ``pod`` among them (each budget's status is computed fresh
    from them with :func:`pdb_status`, carrying its stored ``disruptedPods``); ``now`` is RFC3339.
    """
    _parse_now(now)

    def allow(pdb: str | None = None, updated: JSON | None = None) -> EvictionDecision:
        return EvictionDecision(
            allowed=True,
            status_code=201,
            pdb=pdb,
            updated_pdb_status=updated,
            pod_condition=_disruption_target(pod, now),
        )

    if phase(pod) in _PHASES_IGNORING_PDB or is_terminating(pod):
        return allow()
    matching = pdbs_for_pod(pod, pdbs)
    if len(matching) > 1:
        return EvictionDecision(allowed=False, status_code=500, message=MULTIPLE_PDBS_MESSAGE)
    if not matching:
        return allow()
    pdb = matching[0]
    name = name_of(pdb)
    status = pdb_status(pdb, pods, expected_scale=expected_scale, now=now)
    healthy, desired = _int(status.get("currentHealthy")), _int(status.get("desiredHealthy"))

    if not is_ready(pod):
        # Not Ready: not counted healthy, so deleting it spends no budget when the policy allows.
        if text(mapping(pdb, "spec"), "unhealthyPodEvictionPolicy") == ALWAYS_ALLOW:
            return allow(name)
        if healthy >= desired > 0:
            return allow(name)

    # checkAndDecrement
    if _int(status.get("observedGeneration")) < _int(metadata(pdb).get("generation")):
        cause = f"The disruption budget {name} is still being processed by the server."
        return _too_many_requests(name, cause, EVICTION_RETRY_AFTER_SECONDS)
    allowed = _int(status.get("disruptionsAllowed"))
    disrupted = string_map(status.get("disruptedPods"))
    if allowed < 0 or len(disrupted) > MAX_DISRUPTED_POD_SIZE:
        why = (
            "pdb disruptions allowed is negative"
            if allowed < 0
            else "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
        )
        return EvictionDecision(
            allowed=False,
            status_code=403,
            message=f'poddisruptionbudget.policy "{name}" is forbidden: {why}',
            pdb=name,
            reason="Forbidden",
            details={"name": name, "group": "policy", "kind": "poddisruptionbudget"},
        )
    if allowed == 0:
        cause = f"The disruption budget {name} needs {desired} healthy pods and has {healthy} currently"
        return _too_many_requests(name, cause, 0)

    updated = copy.deepcopy(status)
    updated["disruptionsAllowed"] = allowed - 1
    updated["disruptedPods"] = dict(sorted({**disrupted, name_of(pod): now}.items()))
    updated["conditions"] = _set_condition(
        items(status, "conditions"),
        _disruption_allowed(allowed - 1, _int(status.get("observedGeneration"))),
        now,
    )
    return allow(name, _status_in_order(updated))


def _status_in_order(status: JSON) -> JSON:
    """The status with Kubernetes' field order (stable JSON), unknown fields after."""
    known = {key: status[key] for key in _STATUS_FIELDS if key in status}
    return known | {key: value for key, value in status.items() if key not in known}
