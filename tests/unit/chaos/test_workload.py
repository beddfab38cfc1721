"""The probe workload's manifests and the topology read back from stored objects."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.chaos import workload

NODES = ("node1", "node2", "node3")


def pod(name: str, node: str, labels: dict[str, str], ip: str, *, ready: bool = True) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": workload.NAMESPACE, "labels": labels, "uid": name},
        "spec": {"nodeName": node},
        "status": {
            "podIP": ip,
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def stored(*, waypoint: bool = False, unready: str = "") -> list[dict[str, Any]]:
    """What the store would hold once the workload runs: its Services (with ClusterIPs) and pods."""
    objects: list[dict[str, Any]] = []
    for i, obj in enumerate(workload.manifests(NODES, waypoint=waypoint)):
        if obj["kind"] == "Service":
            obj["spec"]["clusterIP"] = f"10.96.0.{10 + i}"
            objects.append(obj)
        elif obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            node = template["spec"]["nodeName"]
            name = obj["metadata"]["name"]
            objects.append(
                pod(
                    f"{name}-x",
                    node,
                    template["metadata"]["labels"],
                    f"10.244.{node[-1]}.{i}",
                    ready=name != unready,
                )
            )
    if waypoint:
        for node in ("node1", "node3"):
            objects.append(
                pod(
                    f"{workload.WAYPOINT}-{node}",
                    node,
                    {"gateway.networking.k8s.io/gateway-name": workload.WAYPOINT},
                    f"10.244.{node[-1]}.99",
                )
            )
    return objects


def test_every_node_gets_a_server_a_service_and_a_load_pod_and_spread_skips_the_last_node() -> None:
    objects = workload.manifests(NODES)
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for node in NODES:
        assert ("Deployment", f"echo-{node}") in names and ("Service", f"echo-{node}") in names
        assert ("Deployment", f"load-{node}") in names
    spread = {
        o["spec"]["template"]["spec"]["nodeName"]: o["spec"]["template"]["metadata"]["labels"]["spread"]
        for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].startswith("echo-")
    }
    assert spread == {"node1": "yes", "node2": "yes", "node3": "no"}
    assert ("Gateway", workload.WAYPOINT) not in names


def test_the_topology_read_back_has_every_destination_with_its_endpoint_nodes() -> None:
    layout = workload.probe_layout(NODES, stored(waypoint=True))
    dests = {d.name: d for d in layout.topology.destinations}
    assert dests["echo-node2"].endpoint_nodes == ("node2",) and dests["echo-node2"].kind == "service"
    assert dests["pod-node3"].endpoint_nodes == ("node3",) and dests["pod-node3"].kind == "pod"
    assert dests["spread"].endpoint_nodes == ("node1", "node2")
    waypointed = dests["waypointed"]
    assert waypointed.waypoint is not None and waypointed.waypoint.replica_nodes == ("node1", "node3")
    urls = {t.name: t.url for t in layout.targets}
    assert urls["pod-node1"].endswith(":8080/") and urls["echo-node1"].startswith("http://10.96.")
    assert set(layout.load_pods) == set(NODES)


def test_a_probe_pod_not_ready_is_reported_by_name() -> None:
    with pytest.raises(workload.LayoutError, match="echo-node2"):
        workload.probe_layout(NODES, stored(unready="echo-node2"))


def test_a_run_waits_for_every_waypoint_replica() -> None:
    objects = stored(waypoint=True)
    replica = next(o for o in objects if o["metadata"]["name"] == f"{workload.WAYPOINT}-node3")
    replica["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    with pytest.raises(workload.LayoutError, match="1 of 2 replicas ready"):
        workload.probe_layout(NODES, objects)
