"""The Eviction subresource (``POST /objects/Pod/{ns}/{name}/eviction``): a pod delete that respects
PodDisruptionBudgets, as kube-apiserver's ``pods/eviction``.

:func:`eviction_ops` decides with :func:`ambit.resources.disruption.evaluate_eviction` against the
store's current objects and returns the transaction that carries the decision out, all or nothing:
the pod gets the ``DisruptionTarget`` condition, is deleted (gracefully: it is bound, so it is marked
and its kubelet terminates it) and the budget's status records the disruption (``disruptionsAllowed``
one lower, the pod in ``disruptedPods``), so two evictions racing cannot both spend the last
disruption: the second is prepared after the first is committed (the server's write lock) and sees
the lower budget. A refusal raises :class:`TooManyRequests` (429) naming the budget, as Kubernetes.

A budget's expected count comes from the pods' controllers
(:func:`ambit.resources.disruption.expected_scale_of`). Pure: reads a mapping of stored objects.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from ambit.resources import disruption
from ambit.store.types import Key, NotFound, Obj, Op, StoreError, TooManyRequests


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    found = obj.get("metadata")
    return found if isinstance(found, Mapping) else {}


def eviction_ops(
    objects: Mapping[Key, Obj], namespace: str, name: str, *, grace_period: int | None, now: str
) -> tuple[list[Op], disruption.EvictionDecision]:
    """The transaction that evicts pod ``namespace/name``, or the refusal (raised)."""
    pod = objects.get(("Pod", namespace, name))
    if pod is None:
        raise NotFound(f'pods "{name}" not found')
    in_namespace = [o for (k, ns, _), o in objects.items() if ns == namespace and k == "Pod"]
    pdbs = [o for (k, ns, _), o in objects.items() if ns == namespace and k == "PodDisruptionBudget"]
    owners = [o for (k, ns, _), o in objects.items() if ns == namespace and k in ("Deployment", "ReplicaSet")]
    decision = disruption.evaluate_eviction(
        pod, pdbs, in_namespace, expected_scale=disruption.expected_scale_of(owners, namespace), now=now
    )
    if not decision.allowed:
        causes = "; ".join(str(c.get("message")) for c in decision.causes if c.get("message"))
        message = f"{decision.message} {causes}".strip() if causes else decision.message
        details = decision.status_body().get("details")
        if decision.status_code == 429:
            raise TooManyRequests(message, details=details)
        raise StoreError(message, status=decision.status_code, details=details)
    ops: list[Op] = []
    if decision.pod_condition is not None:
        marked = copy.deepcopy(pod)
        status = marked.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "DisruptionTarget"]
        status["conditions"] = [*conditions, decision.pod_condition]
        ops.append(Op("update", marked))
    ref = {"kind": "Pod", "metadata": {"name": name, "namespace": namespace, "uid": _meta(pod).get("uid")}}
    ops.append(Op("delete", ref, grace_period=grace_period))
    if decision.updated_pdb_status is not None and decision.pdb is not None:
        budget = objects[("PodDisruptionBudget", namespace, decision.pdb)]
        ops.append(Op("update", {**budget, "status": decision.updated_pdb_status}))
    return ops, decision
