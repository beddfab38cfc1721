"""The chaos probe workload (namespace ``ambit-chaos``) and the `Topology` read back from the cluster.

What is deployed, for nodes n1..nN (every object labelled ``app.kubernetes.io/part-of: ambit-chaos``):

* per node ``n``: Deployment ``echo-<n>`` (one sample-app server, pinned with ``nodeName`` until
  DaemonSets exist) and Service ``echo-<n>`` whose only endpoint is that pod;
* Service ``spread`` over the echo pods of every node but one (``spread_gap``, the last node by
  default): the node without a local endpoint exercises cross-node balancing and the client ztunnel's
  retry, since the router prefers same-node endpoints;
* per node ``n``: Deployment ``load-<n>``, the pod whose network namespace the probe client runs in;
* with ``waypoint``: a waypoint ``chaos-waypoint`` (two replicas) and Service ``waypointed`` over every
  echo pod, bound to it.

The probe flows from every load pod: each ``echo-<n>`` (by ClusterIP), each echo pod's IP (``pod-<n>``),
``spread``, and ``waypointed`` when there is one. `topology` reads the layout back from the stored
objects (ready endpoints only), so the prediction is computed from what the cluster really runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ambit.reliability.flows import Destination, Topology, WaypointPlacement
from ambit.resources.names import CONTROL_PLANE_NAMESPACE
from ambit.resources.objects import (
    GATEWAY_NAME_LABEL,
    USE_WAYPOINT,
    WAYPOINT_REPLICAS,
    is_ready,
    labels,
    name_of,
    namespace_of,
    node_name,
    selector_matches,
)

NAMESPACE = "ambit-chaos"
PART_OF = {"app.kubernetes.io/part-of": "ambit-chaos"}
ECHO_PORT = 8080
WAYPOINT = "chaos-waypoint"
WAYPOINT_REPLICA_COUNT = 2
ECHO_APP = "chaos-echo"  # the ``app`` label of the echo servers
LOAD_APP = "chaos-load"  # ... and of the load pods (the probe runs in their netns)
SPREAD = "spread"
WAYPOINTED = "waypointed"


Obj = dict[str, Any]


def echo(node: str) -> str:
    return f"echo-{node}"


def pod_destination(node: str) -> str:
    return f"pod-{node}"


def load(node: str) -> str:
    return f"load-{node}"


def _deployment(name: str, node: str, pod_labels: Mapping[str, str]) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(PART_OF)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"chaos-pod": name}},
            "template": {
                "metadata": {"labels": {"chaos-pod": name, **pod_labels, **PART_OF}},
                "spec": {
                    "nodeName": node,
                    "terminationGracePeriodSeconds": 5,
                    "containers": [
                        {
                            "name": "app",
                            "image": "ambit/sample",
                            "args": ["--quiet"],
                            "ports": [{"containerPort": ECHO_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/ready", "port": ECHO_PORT},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                },
            },
        },
    }


def _service(name: str, selector: Mapping[str, str], extra_labels: Mapping[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {**PART_OF, **(extra_labels or {})}},
        "spec": {
            "selector": dict(selector),
            "ports": [{"name": "http", "port": 80, "targetPort": ECHO_PORT}],
        },
    }


def spread_gap(nodes: Sequence[str]) -> str:
    """The node without a ``spread`` endpoint: the last one."""
    return nodes[-1]


def manifests(nodes: Sequence[str], *, waypoint: bool = False) -> list[Obj]:
    """The probe workload's objects for ``nodes`` (see the module docstring)."""
    gap = spread_gap(nodes) if len(nodes) > 1 else ""
    objects: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": NAMESPACE,
                "labels": {"istio.io/dataplane-mode": "ambient", **PART_OF},
            },
        }
    ]
    for node in nodes:
        pod_labels = {"app": ECHO_APP, "chaos-node": node, "spread": "no" if node == gap else "yes"}
        objects.append(_deployment(echo(node), node, pod_labels))
        objects.append(_service(echo(node), {"app": ECHO_APP, "chaos-node": node}))
        objects.append(_deployment(load(node), node, {"app": LOAD_APP, "chaos-node": node}))
    objects.append(_service(SPREAD, {"app": ECHO_APP, "spread": "yes"}))
    if waypoint:
        objects.append(
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {
                    "name": WAYPOINT,
                    "namespace": NAMESPACE,
                    "labels": dict(PART_OF),
                    "annotations": {WAYPOINT_REPLICAS: str(WAYPOINT_REPLICA_COUNT)},
                },
                "spec": {
                    "gatewayClassName": "istio-waypoint",
                    "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
                },
            }
        )
        objects.append(_service(WAYPOINTED, {"app": ECHO_APP}, {USE_WAYPOINT: WAYPOINT}))
    return objects


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One flow of the probe: its destination name and URL."""

    name: str
    url: str


@dataclass(frozen=True, slots=True)
class ProbeLayout:
    """What the engine reads back from the cluster: the topology, each flow's URL, the load pod of each
    node, and where every probe pod runs."""

    topology: Topology
    targets: tuple[ProbeTarget, ...]
    load_pods: dict[str, str]  # node -> load pod name
    placement: dict[str, str]  # pod name -> node


class LayoutError(RuntimeError):
    """The probe workload is not (yet) what the engine needs; the message says what is missing."""


def probe_layout(nodes: Sequence[str], objects: Iterable[Obj]) -> ProbeLayout:
    """The topology and flows from the stored objects (Pods of every namespace, Services of
    ``ambit-chaos``); :class:`LayoutError` while a pod the probe needs is missing or not ready."""
    items = list(objects)
    pods = [
        o for o in items if o.get("kind") == "Pod" and not (o.get("metadata") or {}).get("deletionTimestamp")
    ]
    chaos_pods = [p for p in pods if namespace_of(p) == NAMESPACE]
    services = {name_of(o): o for o in items if o.get("kind") == "Service" and namespace_of(o) == NAMESPACE}
    placement = {name_of(p): node_name(p) for p in chaos_pods}
    ready = [p for p in chaos_pods if is_ready(p) and (p.get("status") or {}).get("podIP")]

    def endpoints(selector: Mapping[str, Any]) -> list[Obj]:
        return [p for p in ready if selector_matches({"matchLabels": dict(selector)}, labels(p))]

    load_pods: dict[str, str] = {}
    targets: list[ProbeTarget] = []
    destinations: list[Destination] = []
    for node in nodes:
        loaders = [p for p in ready if labels(p).get("app") == LOAD_APP and node_name(p) == node]
        if not loaders:
            raise LayoutError(f"no ready load pod on {node}")
        load_pods[node] = name_of(loaders[0])
    for node in nodes:
        service = services.get(echo(node))
        if service is None:
            raise LayoutError(f"no Service {echo(node)}")
        backends = endpoints(service["spec"]["selector"])
        if len(backends) != 1 or node_name(backends[0]) != node:
            raise LayoutError(f"Service {echo(node)} needs exactly one ready endpoint, on {node}")
        destinations.append(Destination(echo(node), "service", (node,)))
        targets.append(ProbeTarget(echo(node), f"http://{service['spec']['clusterIP']}/"))
    for node in nodes:
        server = next(p for p in endpoints({"app": ECHO_APP, "chaos-node": node}))
        destinations.append(Destination(pod_destination(node), "pod", (node,)))
        targets.append(ProbeTarget(pod_destination(node), f"http://{server['status']['podIP']}:{ECHO_PORT}/"))
    for name in (SPREAD, WAYPOINTED):
        service = services.get(name)
        if service is None:
            continue
        backends = endpoints(service["spec"]["selector"])
        if not backends:
            raise LayoutError(f"Service {name} has no ready endpoint")
        waypoint = None
        bound = labels(service).get(USE_WAYPOINT)
        if bound:
            every = [
                p for p in pods if namespace_of(p) == NAMESPACE and labels(p).get(GATEWAY_NAME_LABEL) == bound
            ]
            replicas = [p for p in every if is_ready(p)]
            if not replicas or len(replicas) < len(every):
                # A run starts with every replica serving: the prediction counts on the others.
                raise LayoutError(f"waypoint {bound} has {len(replicas)} of {len(every)} replicas ready")
            placement.update({name_of(p): node_name(p) for p in replicas})
            waypoint = WaypointPlacement(bound, tuple(sorted(node_name(p) for p in replicas)))
        destinations.append(
            Destination(name, "service", tuple(sorted(node_name(p) for p in backends)), waypoint)
        )
        targets.append(ProbeTarget(name, f"http://{service['spec']['clusterIP']}/"))
    controlplane = tuple(sorted(node_name(p) for p in pods if namespace_of(p) == CONTROL_PLANE_NAMESPACE))
    topology = Topology(tuple(nodes), tuple(nodes), tuple(destinations), controlplane)
    return ProbeLayout(topology, tuple(targets), load_pods, placement)
