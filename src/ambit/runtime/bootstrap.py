"""The objects the runtime daemon writes once at start: one Node per node, and the control plane
(ServiceAccount, Service and its replica Pods, pinned to different nodes while there are enough).

The control-plane Pods are ambit's static pods: pinned to a node, owned by no controller, run by the
runtime itself. They carry Kubernetes' mirror-pod annotation ``kubernetes.io/config.mirror`` (the mark
the kubelet puts on a static pod's API object), so ``ambit drain`` skips them as ``kubectl drain``
skips mirror pods instead of refusing to drain the node for want of ``--force``.

Their command carries the cluster config's control-plane options (``ambit up --workload-cert-ttl``,
``--outage-tolerance``, ``--test-fault-endpoints``): :func:`controlplane_flags`."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from ambit.resources.names import CONTROL_PLANE_SERVICE, CONTROL_PLANE_SERVICE_ACCOUNT
from ambit.runtime import netplan, scheduler
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout
from ambit.store import StoreClient
from ambit.store.types import AlreadyExists

CP_SERVICE_ACCOUNT = CONTROL_PLANE_SERVICE_ACCOUNT


def node_objects(nodes: list[str], zones: list[str]) -> list[dict[str, Any]]:
    """The Node objects: hostname (and zone, round-robin) labels, the underlay address."""
    objs: list[dict[str, Any]] = []
    for i, name in enumerate(nodes):
        labels = {scheduler.HOSTNAME_KEY: name}
        if zones:
            labels[scheduler.ZONE_KEY] = zones[i % len(zones)]
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "status": {"addresses": [{"type": "InternalIP", "address": netplan.underlay_ip(i + 1)}]},
            }
        )
    return objs


def go_seconds(seconds: float) -> str:
    """Seconds as a Go duration the control plane's flags parse (``60s``, ``0.5s``, ``86400s``)."""
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def controlplane_flags(config: Mapping[str, Any]) -> list[str]:
    """The flags of every replica from the cluster config (``cluster.json``; absent keys: none)."""
    flags: list[str] = []
    if config.get("workload_cert_ttl") is not None:
        flags += ["--workload-cert-ttl", go_seconds(float(config["workload_cert_ttl"]))]
    if config.get("outage_tolerance") is not None:
        flags += ["--outage-tolerance", go_seconds(float(config["outage_tolerance"]))]
    if config.get("test_fault_endpoints"):
        flags.append("--test-fault-endpoints")
    return flags


def controlplane_objects(
    replicas: int,
    nodes: list[str],
    cluster: str,
    layout: Layout,
    config: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """ServiceAccount, Service and the control-plane Pods (on different nodes while there are enough);
    ``config`` is the cluster config the replicas' flags come from."""
    argv = [
        *ambit_argv(),
        "--cluster",
        cluster,
        "controlplane",
        "--store-socket",
        str(layout.store_socket),
        "--state-dir",
        str(layout.state_dir),
        "--listen",
        "0.0.0.0",
        *controlplane_flags(config or {}),
    ]
    meta = {"namespace": SYSTEM_NAMESPACE, "labels": {"app": "controlplane"}}
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": CP_SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": CONTROL_PLANE_SERVICE, **meta},
            "spec": {
                "selector": {"app": "controlplane"},
                "ports": [
                    {"name": "grpc-xds", "port": 15012, "targetPort": 15012},
                    {"name": "grpc-ca-token", "port": 15013, "targetPort": 15013},
                    {"name": "http-monitoring", "port": 15014, "targetPort": 15014},
                ],
            },
        },
    ]
    for k in range(1, replicas + 1):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"controlplane-{k}",
                    **meta,
                    "annotations": {"kubernetes.io/config.mirror": "ambit"},
                },
                "spec": {
                    "nodeName": nodes[(k - 1) % len(nodes)],
                    "serviceAccountName": CP_SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "controlplane",
                            "image": "ambit",
                            "command": argv,
                            "ports": [{"containerPort": port} for port in (15012, 15013, 15014)],
                        }
                    ],
                },
            }
        )
    return objs


async def bootstrap(
    client: StoreClient, config: dict[str, Any], nodes: list[str], cluster: str, layout: Layout
) -> None:
    """Apply the Nodes; create the control plane unless it exists (a restarted daemon keeps it)."""
    for node in node_objects(nodes, list(config.get("zones") or [])):
        await client.apply(node)
    replicas = int(config.get("controlplane_replicas", 2))
    for obj in controlplane_objects(replicas, nodes, cluster, layout, config):
        with contextlib.suppress(AlreadyExists):
            await client.create(obj)
