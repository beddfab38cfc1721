"""The synthetic cluster of ``ambit bench controlplane``: Nodes, ambient Namespaces, Services and Pods.

Pure: plain dicts as a user would ``ambit apply`` them (the store validates and normalizes them).

* Node ``node-<i>`` (i = 0..nodes-1): labels ``kubernetes.io/hostname`` and
  ``topology.kubernetes.io/region`` / ``zone`` (zones ``zone-a`` .. ``zone-c``), an InternalIP;
* Namespace ``bench-<k>``, each labelled ``istio.io/dataplane-mode: ambient``;
* Service ``svc-<j>`` in namespace ``bench-<j mod namespaces>``: ClusterIP ``10.96.<j // 250>.<j % 250 + 1>``
  set explicitly, selector ``app: svc-<j>``, one port ``http`` 80 → 8080;
* Pod ``svc-<j>-<r>``: pods are dealt round-robin over the services (pod p belongs to service
  p mod services) and over the nodes (pod p runs on node p mod nodes), phase Running, condition
  Ready True, ``podIP`` ``10.<244 + n // 250>.<n % 250>.<m + 2>`` for the m-th pod of node n
  (unique as long as a node has at most 250 pods), service account ``svc-<j>``, one container port
  ``http`` 8080.

Each Pod matches exactly one Service (its own ``app`` label) in its own namespace.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ambit.resources.objects import DATAPLANE_MODE

Obj = dict[str, Any]

AMBIENT_LABEL = DATAPLANE_MODE
ZONES = ("zone-a", "zone-b", "zone-c")
REGION = "bench-region"
MAX_PODS_PER_NODE = 250


@dataclass(frozen=True, slots=True)
class Shape:
    """How big the synthetic cluster is."""

    nodes: int
    pods: int
    services: int
    namespaces: int

    def __post_init__(self) -> None:
        if min(self.nodes, self.pods, self.services, self.namespaces) < 1:
            raise ValueError("nodes, pods, services and namespaces must all be at least 1")
        if self.namespaces > self.services:
            raise ValueError("need at least one service per namespace")
        if self.services > 250 * 250:
            raise ValueError("at most 62,500 services (ClusterIPs come from 10.96.0.0/16)")
        if -(-self.pods // self.nodes) > MAX_PODS_PER_NODE:
            raise ValueError(f"at most {MAX_PODS_PER_NODE} pods per node")
        if self.nodes > 250 * 11:
            raise ValueError("at most 2,750 nodes (pod CIDRs 10.244.0.0 .. 10.254.249.0)")


def namespace_name(k: int) -> str:
    return f"bench-{k}"


def node_name(i: int) -> str:
    return f"node-{i}"


def node(i: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node_name(i),
            "labels": {
                "kubernetes.io/hostname": node_name(i),
                "topology.kubernetes.io/region": REGION,
                "topology.kubernetes.io/zone": ZONES[i % len(ZONES)],
            },
        },
        "status": {"addresses": [{"type": "InternalIP", "address": f"172.18.{i // 250}.{i % 250 + 1}"}]},
    }


def namespace(k: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace_name(k), "labels": {AMBIENT_LABEL: "ambient"}},
    }


def service(j: int, shape: Shape) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{j}", "namespace": namespace_name(j % shape.namespaces)},
        "spec": {
            "clusterIP": f"10.96.{j // 250}.{j % 250 + 1}",
            "selector": {"app": f"svc-{j}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def pod(p: int, shape: Shape) -> Obj:
    j = p % shape.services
    n = p % shape.nodes
    m = p // shape.nodes  # the m-th pod on node n
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"svc-{j}-{p // shape.services}",
            "namespace": namespace_name(j % shape.namespaces),
            "labels": {"app": f"svc-{j}", "version": "v1"},
        },
        "spec": {
            "nodeName": node_name(n),
            "serviceAccountName": f"svc-{j}",
            "containers": [
                {
                    "name": "app",
                    "image": "bench/app:1",
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                }
            ],
        },
        "status": {
            "phase": "Running",
            "podIP": f"10.{244 + n // 250}.{n % 250}.{m + 2}",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }


def objects(shape: Shape) -> Iterator[Obj]:
    """Every object, in dependency order (namespaces and nodes first)."""
    for k in range(shape.namespaces):
        yield namespace(k)
    for i in range(shape.nodes):
        yield node(i)
    for j in range(shape.services):
        yield service(j, shape)
    for p in range(shape.pods):
        yield pod(p, shape)


def with_readiness(stored: Obj, ready: bool) -> Obj:
    """A copy of a stored pod with its Ready condition set to `ready` (nothing else changes)."""
    changed = copy.deepcopy(stored)
    status = changed.setdefault("status", {})
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
    conditions.append({"type": "Ready", "status": "True" if ready else "False"})
    status["conditions"] = conditions
    return changed


def is_ready(stored: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (stored.get("status") or {}).get("conditions") or []
    )
