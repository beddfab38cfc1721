"""Status conditions written deterministically (pure): the one rule for every status the control plane writes.

A condition is ``type``, ``status``, ``reason``, ``message``, ``observedGeneration`` (the object's
``metadata.generation``) and ``lastTransitionTime``. The time is taken from the condition of the same
type the object already carries, unless the condition *transitioned*; only then is ``now`` used. So
the same object and inputs give the same status on every control-plane replica at any clock, and a
writer that compares before writing writes nothing when nothing changed: two replicas never flap it.

What counts as a transition is the caller's choice, one of:

* ``ON_STATUS``: the ``status`` changed: Kubernetes' convention (``metav1.Condition``: "the last time
  the condition transitioned from one status to another") and Istio's
  (``pilot/pkg/model/kstatus/helper.go::UpdateConditionIfChanged`` retains ``LastTransitionTime``
  while the status is unchanged). The waypoint Gateway status uses it;
* ``ON_STATUS_OR_REASON``: the ``status`` or the ``reason`` changed, so a route whose
  ``ResolvedRefs`` goes from ``False``/``RefNotPermitted`` to ``False``/``BackendNotFound`` shows
  when the new problem began. The route status uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ambit.resources.objects import metadata

JSON = dict[str, Any]
Verdict = tuple[str, str, str]  # a condition's status, reason, message

ON_STATUS: tuple[str, ...] = ("status",)
ON_STATUS_OR_REASON: tuple[str, ...] = ("status", "reason")


def generation_of(obj: Any) -> int:
    """The object's ``metadata.generation`` (1 when it has none yet)."""
    return int(metadata(obj).get("generation") or 1)


def find_condition(conditions: Iterable[Any], kind: str) -> JSON | None:
    """The entry of type ``kind`` in a list of conditions, or None."""
    return next((c for c in conditions if isinstance(c, dict) and c.get("type") == kind), None)


def stamped(
    kind: str,
    verdict: Verdict,
    *,
    before: Mapping[str, Any] | None,
    generation: int,
    now: str,
    moves_on: tuple[str, ...] = ON_STATUS,
) -> JSON:
    """The condition ``kind`` with ``verdict``; ``before`` is the condition of that type the object carries.

    ``lastTransitionTime`` is ``before``'s unless a field in ``moves_on`` differs from it (or it has
    none), then ``now`` (RFC 3339).
    """
    status, reason, message = verdict
    fields = {"status": status, "reason": reason}
    since = before.get("lastTransitionTime") if before is not None else None
    if before is None or any(before.get(field) != fields[field] for field in moves_on):
        since = None
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since if isinstance(since, str) and since else now,
    }
