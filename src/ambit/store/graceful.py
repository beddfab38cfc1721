"""Graceful deletion of Pods, as kube-apiserver does it (the pod strategy's ``CheckGracefulDelete``).

Deleting a Pod that is bound to a node and still running does not remove it: the store sets
``metadata.deletionTimestamp`` (now + the grace period) and ``metadata.deletionGracePeriodSeconds``,
and the node's kubelet stops the pod (endpoints out first, ``preStop``, SIGTERM, SIGKILL at the end
of the grace period) and then deletes it with a grace period of 0. The grace period is the delete
request's ``gracePeriodSeconds``, else the pod's ``spec.terminationGracePeriodSeconds``, else 30 s.
A pod that is not bound to a node, or has finished (Succeeded/Failed), or is deleted with a grace
period of 0, is removed at once. A second delete may shorten a pending grace period, never lengthen
it, and the shorter one counts from when the deletion began (kube-apiserver's ``BeforeDelete``).

The two deletion fields are server-owned: a write never sets, changes or clears them.

Pure: the wall clock is passed in.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

DEFAULT_GRACE_SECONDS: Final = 30
DELETION_FIELDS: Final = ("deletionTimestamp", "deletionGracePeriodSeconds")
_FINISHED = frozenset({"Succeeded", "Failed"})


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def grace_seconds(pod: dict[str, Any], requested: int | None) -> int:
    """The grace period a delete of ``pod`` gets (0: remove at once)."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in _FINISHED:
        return 0
    if requested is not None:
        return max(0, int(requested))
    configured = spec.get("terminationGracePeriodSeconds")
    return DEFAULT_GRACE_SECONDS if configured is None else max(0, int(configured))


def terminating(pod: dict[str, Any], grace: int, now: datetime) -> dict[str, Any] | None:
    """``pod`` marked for deletion in ``grace`` seconds, or None when nothing changes. A pod already
    terminating only takes a *shorter* grace period, counted from when its deletion began, as
    kube-apiserver's ``BeforeDelete`` does (new deadline = old deadline - old grace + new grace)."""
    meta = pod.get("metadata") or {}
    pending, old_grace = meta.get("deletionTimestamp"), meta.get("deletionGracePeriodSeconds")
    deadline = now + timedelta(seconds=grace)
    if pending:
        try:
            old_deadline = parse_rfc3339(str(pending))
        except ValueError:
            old_deadline = None  # an unreadable deadline is replaced
        if old_deadline is not None:
            if isinstance(old_grace, int) and grace >= old_grace:
                return None
            if not isinstance(old_grace, int):
                if old_deadline <= deadline:
                    return None
            else:
                deadline = old_deadline - timedelta(seconds=old_grace) + timedelta(seconds=grace)
    return {
        **pod,
        "metadata": {**meta, "deletionTimestamp": rfc3339(deadline), "deletionGracePeriodSeconds": grace},
    }
