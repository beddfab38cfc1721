"""Scheduling (pure): Pods get a node (Deployments → ReplicaSets → Pods is :mod:`.deployments` and
:mod:`.replica_sets`).

- :func:`place` picks a node for one pod: ``spec.nodeName`` when set (as in Kubernetes, that bypasses
  the scheduler, cordoned or not); otherwise among the nodes that are not cordoned
  (``spec.unschedulable``; Kubernetes' ``node.kubernetes.io/unschedulable`` taint, with no tolerations
  here), match ``spec.nodeSelector`` and satisfy every ``DoNotSchedule`` topology spread constraint
  (``maxSkew`` over the domains of ``topologyKey``, e.g. ``kubernetes.io/hostname`` or
  ``topology.kubernetes.io/zone``), the one with the fewest pods of the same labels (default spread,
  plus the skew of ``ScheduleAnyway`` constraints), then the fewest pods, then the lowest name.

No I/O; randomness is injected.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ambit.resources.objects import selector_matches

HOSTNAME_KEY = "kubernetes.io/hostname"
ZONE_KEY = "topology.kubernetes.io/zone"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' random suffix alphabet (no vowels)
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})

Obj = dict[str, Any]


@dataclass(frozen=True)
class NodeInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    unschedulable: bool = False  # spec.unschedulable: cordoned, no new pods (a set nodeName still binds)


@dataclass(frozen=True)
class PlacedPod:
    """What placement needs to know about a pod already bound to a node."""

    namespace: str
    labels: Mapping[str, str]
    node: str


def random_suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(NAME_ALPHABET) for _ in range(length))


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def is_active(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") not in TERMINAL_PHASES and not _meta(pod).get("deletionTimestamp")


def _domains(nodes: Sequence[NodeInfo], key: str) -> dict[str, str]:
    """node name → its value of label ``key`` (nodes without it are not in any domain)."""
    return {n.name: n.labels[key] for n in nodes if key in n.labels}


def _skew_counts(
    constraint: Mapping[str, Any],
    namespace: str,
    pod_labels: Mapping[str, str],
    eligible: Sequence[NodeInfo],
    placed: Sequence[PlacedPod],
) -> tuple[dict[str, str], dict[str, int]]:
    key = str(constraint.get("topologyKey"))
    selector = constraint.get("labelSelector")
    if selector is None:
        selector = {"matchLabels": dict(pod_labels)}
    node_domain = _domains(eligible, key)
    counts = dict.fromkeys(node_domain.values(), 0)
    for pod in placed:
        domain = node_domain.get(pod.node)
        if domain is not None and pod.namespace == namespace and selector_matches(selector, pod.labels):
            counts[domain] += 1
    return node_domain, counts


def place(pod: Mapping[str, Any], nodes: Sequence[NodeInfo], placed: Sequence[PlacedPod]) -> str | None:
    """The node for ``pod``, or None when no node fits (the pod stays Pending)."""
    spec = pod.get("spec") or {}
    meta = _meta(pod)
    namespace = str(meta.get("namespace") or "default")
    labels: Mapping[str, str] = meta.get("labels") or {}
    by_name = {n.name: n for n in nodes}
    node_name = spec.get("nodeName")
    if node_name:
        return str(node_name) if node_name in by_name else None
    selector: Mapping[str, str] = spec.get("nodeSelector") or {}
    eligible = [
        n for n in nodes if not n.unschedulable and all(n.labels.get(k) == v for k, v in selector.items())
    ]
    candidates = list(eligible)
    soft: list[tuple[dict[str, str], dict[str, int]]] = []
    for constraint in spec.get("topologySpreadConstraints") or ():
        node_domain, counts = _skew_counts(constraint, namespace, labels, eligible, placed)
        if constraint.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule":
            if not counts:
                return None
            low = min(counts.values())
            max_skew = int(constraint.get("maxSkew", 1))
            candidates = [
                n
                for n in candidates
                if n.name in node_domain and counts[node_domain[n.name]] + 1 - low <= max_skew
            ]
        else:
            soft.append((node_domain, counts))
    if not candidates:
        return None

    def score(node: NodeInfo) -> tuple[int, int, int, tuple[int, str]]:
        same = sum(
            1
            for p in placed
            if p.node == node.name and p.namespace == namespace and dict(p.labels) == dict(labels)
        )
        skew = sum(counts.get(nd.get(node.name, ""), 0) for nd, counts in soft)
        total = sum(1 for p in placed if p.node == node.name)
        return (skew, same, total, node_sort_key(node.name))

    return min(candidates, key=score).name


def node_sort_key(name: str) -> tuple[int, str]:
    """``node2`` before ``node10``."""
    digits = name.lstrip("abcdefghijklmnopqrstuvwxyz")
    return (int(digits) if digits.isdigit() else 0, name)
