"""A Deployment's revisions as kubectl sees them (pure): the ``pod-template-hash``, revision numbers,
``rollout undo`` / ``restart`` and the ``rollout status`` lines; the deployment controller itself is
:mod:`ambit.runtime.deployments`.

Follows kubernetes/kubernetes ``pkg/controller/deployment/util/deployment_util.go`` (revisions,
``ComputeHash`` with ``rand.SafeEncodeString``) and kubectl's ``rollback.go``, ``objectrestarter.go`` and
``rollout_status.go``. The hash is FNV-1a over a canonical JSON of the template (not Go's struct dump),
so ReplicaSet names differ from a real cluster's while their length and alphabet match.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ambit.runtime.replica_sets import HASH_LABEL, Obj, controlled_by, meta, replicas_of, spec, status
from ambit.runtime.scheduler import NAME_ALPHABET

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
ANNOTATIONS_NOT_COPIED = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        REVISION,
        REVISION_HISTORY,
        DESIRED_REPLICAS,
        MAX_REPLICAS,
        "deprecated.deployment.rollback.to",
    }
)
MAX_HISTORY_CHARS = 2000
PROGRESSING, AVAILABLE = "Progressing", "Available"
NEW_RS_CREATED, FOUND_NEW_RS, RS_UPDATED = "NewReplicaSetCreated", "FoundNewReplicaSet", "ReplicaSetUpdated"
NEW_RS_AVAILABLE, TIMED_OUT = "NewReplicaSetAvailable", "ProgressDeadlineExceeded"
PAUSED, RESUMED = "DeploymentPaused", "DeploymentResumed"


class RolloutError(ValueError):
    """What kubectl reports as an error for a rollout command."""


class RevisionNotFound(RolloutError):
    pass


class ProgressDeadlineExceeded(RolloutError):
    pass


# --- templates and revisions ---------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    """Maps with sorted keys, nulls and empty maps/lists dropped (Go's zero values compare equal)."""
    if isinstance(value, Mapping):
        out = {str(k): _canonical(v) for k, v in value.items()}
        return {k: v for k, v in sorted(out.items()) if v is not None and v not in ({}, [])}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _without_hash(template: Mapping[str, Any]) -> Any:
    t = copy.deepcopy(dict(template))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    return _canonical(t)


def fnv1a_32(data: bytes) -> int:
    h = 0x811C9DC5
    for byte in data:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """The ``pod-template-hash`` (``controller.ComputeHash``): FNV-1a 32 over the canonical JSON of the
    template without that label, then the collision count as 8 little-endian bytes when non-zero,
    its decimal digits mapped through ``rand.SafeEncodeString``'s alphabet."""
    data = json.dumps(_without_hash(template), separators=(",", ":"), ensure_ascii=False).encode()
    if collision_count:
        data += (collision_count & 0xFFFFFFFF).to_bytes(8, "little")
    return "".join(NAME_ALPHABET[ord(c) % len(NAME_ALPHABET)] for c in str(fnv1a_32(data)))


def equal_ignore_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return bool(_without_hash(a) == _without_hash(b))


def _revision(obj: Mapping[str, Any]) -> int | None:
    """The revision annotation: 0 when absent, None when not a number (``deploymentutil.Revision``)."""
    try:
        return int((meta(obj).get("annotations") or {}).get(REVISION) or 0)
    except (TypeError, ValueError):
        return None


def revision_of(obj: Mapping[str, Any]) -> int:
    """The ``deployment.kubernetes.io/revision`` annotation; 0 when absent or not a number."""
    return _revision(obj) or 0


def find_condition(conditions: Sequence[Mapping[str, Any]], ctype: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def quoted(name: str) -> str:
    return json.dumps(name)  # Go's %q for a DNS name


# --- one sync pass -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rollback:
    template: Obj  # the Deployment's spec.template after the undo
    annotations: dict[str, str]  # the Deployment's metadata.annotations after the undo
    revision: int  # the revision rolled back to
    skipped: bool  # the template already matched: nothing to write
    message: str  # what kubectl prints after the name: "rolled back" / "skipped rollback (...)"


def rollback(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]], to_revision: int = 0
) -> Rollback:
    """``kubectl rollout undo [--to-revision=N]``: the previous revision's template, or revision N's."""
    if to_revision < 0:
        raise RevisionNotFound(f"unable to find specified revision {to_revision} in history")
    owned = [rs for rs in replica_sets if controlled_by(rs, deployment)]
    target: Mapping[str, Any] | None = None
    if to_revision > 0:
        target = next((rs for rs in owned if _revision(rs) == to_revision), None)
        if target is None:
            raise RevisionNotFound(f"unable to find specified revision {to_revision} in history")
    else:  # the second highest revision, as kubectl scans them
        latest: Mapping[str, Any] | None = None
        latest_number = previous_number = -1
        for rs in owned:
            number = _revision(rs)
            if number is None:
                continue
            if latest_number < number:
                target, previous_number, latest, latest_number = latest, latest_number, rs, number
            elif previous_number < number:
                target, previous_number = rs, number
        if target is None:
            name = quoted(str(meta(deployment).get("name")))
            raise RolloutError(f"no rollout history found for deployment {name}")
    if spec(deployment).get("paused"):
        raise RolloutError(
            "you cannot rollback a paused deployment; "
            "resume it first with 'kubectl rollout resume' and try again"
        )
    current: Mapping[str, Any] = spec(deployment).get("template") or {}
    own = {str(k): str(v) for k, v in (meta(deployment).get("annotations") or {}).items()}
    wanted: Mapping[str, Any] = spec(target).get("template") or {}
    if equal_ignore_hash(wanted, current):
        msg = f"skipped rollback (current template already matches revision {to_revision})"
        return Rollback(copy.deepcopy(dict(current)), own, revision_of(target), True, msg)
    template = copy.deepcopy(dict(wanted))
    labels = (template.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(HASH_LABEL, None)
    annotations = {k: v for k, v in own.items() if k in ANNOTATIONS_NOT_COPIED}
    annotations.update(
        {
            str(k): str(v)
            for k, v in (meta(target).get("annotations") or {}).items()
            if k not in ANNOTATIONS_NOT_COPIED
        }
    )
    return Rollback(template, annotations, revision_of(target), False, "rolled back")


def rollback_template(
    deployment: Mapping[str, Any], replica_sets: Iterable[Mapping[str, Any]], to_revision: int = 0
) -> Obj:
    """The template :func:`rollback` restores (the current one when it already matches)."""
    return rollback(deployment, replica_sets, to_revision).template


def restart_template(deployment: Mapping[str, Any], now_rfc3339: str) -> Obj:
    """``kubectl rollout restart``: the template with ``kubectl.kubernetes.io/restartedAt`` set."""
    if spec(deployment).get("paused"):
        raise RolloutError("can't restart paused deployment (run rollout resume first)")
    template = copy.deepcopy(dict(spec(deployment).get("template") or {}))
    if not isinstance(template.get("metadata"), dict):
        template["metadata"] = {}
    tmeta = template["metadata"]
    annotations = tmeta.get("annotations")
    tmeta["annotations"] = {
        **(annotations if isinstance(annotations, dict) else {}),
        RESTARTED_AT: now_rfc3339,
    }
    return template


def rollout_status(deployment: Mapping[str, Any], revision: int = 0) -> tuple[str, bool]:
    """``kubectl rollout status``: the line it prints (without the newline) and whether it is done.

    Raises :class:`ProgressDeadlineExceeded` as kubectl fails, and :class:`RolloutError` when
    ``revision`` is given and is not the Deployment's.
    """
    name = quoted(str(meta(deployment).get("name")))
    if revision > 0 and revision != revision_of(deployment):
        raise RolloutError(
            f"desired revision ({revision}) is different from the running revision "
            f"({revision_of(deployment)})"
        )
    st = status(deployment)
    if int(meta(deployment).get("generation") or 0) > int(st.get("observedGeneration") or 0):
        return "Waiting for deployment spec update to be observed...", False
    cond = find_condition(st.get("conditions") or [], PROGRESSING)
    if cond is not None and cond.get("reason") == TIMED_OUT:
        raise ProgressDeadlineExceeded(f"deployment {name} exceeded its progress deadline")
    replicas = replicas_of(deployment)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    available = int(st.get("availableReplicas") or 0)
    waiting = f"Waiting for deployment {name} rollout to finish: "
    if updated < replicas:
        return f"{waiting}{updated} out of {replicas} new replicas have been updated...", False
    if total > updated:
        return f"{waiting}{total - updated} old replicas are pending termination...", False
    if available < updated:
        return f"{waiting}{available} of {updated} updated replicas are available...", False
    return f"deployment {name} successfully rolled out", True
