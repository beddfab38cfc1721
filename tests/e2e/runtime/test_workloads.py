"""Workloads as Kubernetes runs them, on a real cluster under load: rollouts, graceful deletion,
scale-down, eviction and drain with a PodDisruptionBudget, the HPA and the VPA.

One 2-node cluster (ambient namespace ``wl``) is shared by the module and torn down whatever happens:
``server`` (3 replicas of the sample app behind Service ``server``) and a load ``client`` pinned to
node1. "0 failed" is the load client's own record (`ambit app load`, open loop, new and kept-alive
connections, every request recorded, ``retried == 0``) over a window that spans the event. The
waypoint tests run last: enrolling the namespace puts every request through the waypoint.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import ambit, ready, temporary_cluster, wait_for
from ambit.testing.load_run import assert_no_failures, start_load

pytestmark = pytest.mark.root

NS = "wl"
RATE = 100


def server(version: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server", "namespace": NS},
        "spec": {
            "replicas": 3,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server", "version": version}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "ambit/sample",
                            "ports": [{"containerPort": 8080}],
                            "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }


CLIENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "client", "namespace": NS},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "client"}},
        "template": {
            "metadata": {"labels": {"app": "client"}},
            "spec": {
                "nodeName": "node1",
                "containers": [{"name": "app", "image": "ambit/sample", "ports": [{"containerPort": 8080}]}],
            },
        },
    },
}

OBJECTS = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"istio.io/dataplane-mode": "ambient"}},
    },
    server("v1"),
    CLIENT,
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "server", "namespace": NS},
        "spec": {"selector": {"app": "server"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    },
    {
        "apiVersion": "autoscaling.k8s.io/v1",
        "kind": "VerticalPodAutoscaler",
        "metadata": {"name": "server", "namespace": NS},
        "spec": {
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "server"},
            "updatePolicy": {"updateMode": "Off"},
        },
    },
]


def pods(cluster: str, app: str) -> list[dict[str, Any]]:
    return [
        p
        for p in ClusterHandle(cluster).pods(NS)
        if (p["metadata"].get("labels") or {}).get("app") == app
        or (p["metadata"].get("labels") or {}).get("gateway.networking.k8s.io/gateway-name") == app
    ]


def serving(cluster: str, app: str) -> list[dict[str, Any]]:
    """Pods of ``app`` that are ready and not terminating."""
    return [p for p in pods(cluster, app) if ready(p) and not p["metadata"].get("deletionTimestamp")]


def client_pod(cluster: str) -> str:
    return str(serving(cluster, "client")[0]["metadata"]["name"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("w"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "2")
        ClusterHandle(name).apply(OBJECTS)
        wait_for(
            lambda: len(serving(name, "server")) == 3 and len(serving(name, "client")) == 1, "pods ready", 90
        )
        yield name


def template_hashes(cluster: str) -> set[str]:
    return {p["metadata"]["labels"].get("pod-template-hash", "") for p in serving(cluster, "server")}


def test_a_template_change_rolls_under_load_with_nothing_lost_and_undo_returns(
    cluster: str, tmp_path: Path
) -> None:
    before = template_hashes(cluster)
    assert len(before) == 1
    load = start_load(cluster, client_pod(cluster), NS, "http://server/", tmp_path / "load.json", duration=40)
    try:
        time.sleep(3)
        ClusterHandle(cluster).apply([server("v2")])
        status = ambit(cluster, "rollout", "status", "deployment/server", "-n", NS, "--timeout", "60s")
        assert 'deployment "server" successfully rolled out' in status.stdout
        assert "Waiting for deployment" in status.stdout  # it followed the rollout, not only its end
        rolled = template_hashes(cluster)
        assert len(rolled) == 1 and rolled != before
        assert {p["metadata"]["labels"]["version"] for p in serving(cluster, "server")} == {"v2"}
        deployment = ClusterHandle(cluster).get("Deployment", "server", NS)
        assert deployment["status"]["updatedReplicas"] == 3 and deployment["status"]["availableReplicas"] == 3
        undo = ambit(cluster, "rollout", "undo", "deployment/server", "-n", NS)
        assert "rolled back" in undo.stdout
        ambit(cluster, "rollout", "status", "deployment/server", "-n", NS, "--timeout", "60s")
        assert template_hashes(cluster) == before  # the old ReplicaSet's pods again
        result = load.finish()
    finally:
        load.stop()
    assert_no_failures(result, RATE, 40)
    print(
        f"rollout and undo under load: {result.total} requests, {result.failed} failed,"
        f" {result.retried} retried"
    )


def test_scale_down_and_pod_deletion_under_load_lose_nothing(cluster: str, tmp_path: Path) -> None:
    load = start_load(cluster, client_pod(cluster), NS, "http://server/", tmp_path / "load.json", duration=20)
    try:
        time.sleep(3)
        ambit(cluster, "scale", "deployment", "server", "--replicas", "1", "-n", NS)
        wait_for(lambda: len(pods(cluster, "server")) == 1, "scaled down to 1 pod", 30)
        ambit(cluster, "scale", "deployment", "server", "--replicas", "3", "-n", NS)
        wait_for(lambda: len(serving(cluster, "server")) == 3, "scaled back to 3", 30)
        victim = serving(cluster, "server")[0]["metadata"]["name"]
        deleted = ambit(cluster, "delete", "pod", victim, "-n", NS)  # waits until it has terminated
        assert f'pod "{victim}" deleted' in deleted.stdout
        assert victim not in {p["metadata"]["name"] for p in pods(cluster, "server")}
        result = load.finish()
    finally:
        load.stop()
    assert_no_failures(result, RATE, 20)
    log = ambit(cluster, "logs", "daemon").stdout
    assert f"terminated pod {NS}/{victim}" in log and "proxies ACKed" in log
    print(f"scale 3->1->3 and a deletion under load: {result.total} requests, {result.failed} failed")


def test_the_vpa_recommends_from_the_load_it_saw(cluster: str) -> None:
    def recommendation() -> dict[str, Any]:
        status = ClusterHandle(cluster).get("VerticalPodAutoscaler", "server", NS).get("status") or {}
        return dict(status.get("recommendation") or {})

    wait_for(lambda: bool(recommendation()), "a VPA recommendation", 60)
    [container] = recommendation()["containerRecommendations"]
    assert container["containerName"] == "app"
    assert (
        {"cpu", "memory"} <= set(container["target"])
        and set(container["lowerBound"])
        and set(container["upperBound"])
    )
    table = ambit(cluster, "get", "vpa", "-n", NS).stdout
    assert "server" in table and "Off" in table and "True" in table, table


def hook_pod(name: str, grace: int, lifecycle: dict[str, Any] | None, **container: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "app", "image": "ambit/sample", **container}
    if lifecycle:
        spec["lifecycle"] = lifecycle
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": grace, "containers": [spec]},
    }


def test_prestop_hooks_run_and_a_process_that_ignores_sigterm_is_killed_at_the_grace_period(
    cluster: str, tmp_path: Path
) -> None:
    marker = tmp_path / "prestop-ran"
    ClusterHandle(cluster).apply(
        [
            hook_pod(
                "hook-exec",
                10,
                {"preStop": {"exec": {"command": ["sh", "-c", f"echo stopped > {marker}"]}}},
                ports=[{"containerPort": 8080}],
            ),
            hook_pod(
                "hook-http",
                10,
                {"preStop": {"httpGet": {"path": "/prestop", "port": 8080}}},
                ports=[{"containerPort": 8080}],
            ),
            # SIG_IGN for TERM is inherited by sleep: only SIGKILL ends it
            hook_pod("stubborn", 2, None, command=["sh", "-c", "trap '' TERM; sleep 1000"]),
        ]
    )
    names = ("hook-exec", "hook-http", "stubborn")
    wait_for(lambda: all(len(serving(cluster, n)) == 1 for n in names), "hook pods ready", 60)
    started = time.monotonic()
    ambit(cluster, "delete", "pod", *names, "-n", NS)  # waits until every one has terminated
    took = time.monotonic() - started
    assert marker.read_text().strip() == "stopped"
    log = ambit(cluster, "logs", "daemon").stdout
    assert f"terminated pod {NS}/hook-exec" in log and "preStop of app: exec sh exited 0" in log
    assert "preStop of app: httpGet /prestop answered 200" in log
    stubborn = next(line for line in log.splitlines() if f"terminated pod {NS}/stubborn" in line)
    assert "SIGKILL after" in stubborn, stubborn
    assert 2.0 <= took < 10.0, took  # the stubborn one's 2 s grace, not the default 30 s


def test_waypoint_hpa_scales_2_to_4_under_load_and_back(cluster: str, tmp_path: Path) -> None:
    ambit(cluster, "waypoint", "apply", "-n", NS, "--enroll-namespace", "--autoscale", "4", "--wait")
    handle = ClusterHandle(cluster)
    gateway = handle.get("Gateway", "waypoint", NS)
    gateway["metadata"]["annotations"]["ambit.dev/autoscale-target-rps"] = "25"
    handle.apply([gateway])
    wait_for(lambda: len(serving(cluster, "waypoint")) == 2, "2 waypoint replicas", 60)

    def hpa() -> dict[str, Any]:
        return handle.get("HorizontalPodAutoscaler", "waypoint", NS)

    wait_for(lambda: hpa()["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "25", "the target", 20)
    autoscaler = hpa()
    autoscaler["spec"]["behavior"] = {  # the test's short windows (the defaults hold a scale-down 300 s)
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 5,
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 5}],
        },
    }
    handle.apply([autoscaler])
    load = start_load(
        cluster, client_pod(cluster), NS, "http://server/", tmp_path / "load.json", rate=150, duration=35
    )
    try:
        wait_for(
            lambda: hpa().get("status", {}).get("currentReplicas") == 4, "the HPA at 4 replicas", 40, 1.0
        )
        table = ambit(cluster, "get", "hpa", "-n", NS).stdout
        assert "Deployment/waypoint" in table and "/25" in table, table
        result = load.finish()
    finally:
        load.stop()
    assert_no_failures(result, 150, 35)
    assert len(serving(cluster, "waypoint")) == 4
    wait_for(lambda: hpa().get("status", {}).get("currentReplicas") == 2, "back to 2 replicas", 90, 1.0)
    wait_for(lambda: len(pods(cluster, "waypoint")) == 2, "2 waypoint pods", 30)
    print(f"HPA 2 -> 4 -> 2 through the waypoint: {result.total} requests, {result.failed} failed")


def test_drain_under_l7_load_then_a_drain_the_pdb_holds_back(cluster: str, tmp_path: Path) -> None:
    ambit(cluster, "waypoint", "apply", "-n", NS, "--enroll-namespace", "--wait")  # as the HPA test left it
    wait_for(lambda: len(serving(cluster, "waypoint")) == 2, "2 waypoint replicas", 60)
    nodes = sorted(p["spec"]["nodeName"] for p in serving(cluster, "waypoint"))
    assert nodes == ["node1", "node2"], nodes  # spread: one replica per node
    load = start_load(cluster, client_pod(cluster), NS, "http://server/", tmp_path / "load.json", duration=25)
    try:
        time.sleep(3)
        drained = ambit(cluster, "drain", "node2", "--ignore-daemonsets", "--timeout", "90s")
        assert "node/node2 drained" in drained.stdout
        result = load.finish()
    finally:
        load.stop()
    assert_no_failures(result, RATE, 25)
    assert {p["spec"]["nodeName"] for p in pods(cluster, "waypoint")} == {"node1"}
    assert {p["spec"]["nodeName"] for p in pods(cluster, "server")} == {"node1"}
    # Both waypoint replicas on node1 now; draining node1 of them would break the PDB (minAvailable 1):
    # the second eviction waits, naming the budget, until the first one's replacement is ready on node2.
    ambit(cluster, "uncordon", "node2")
    second = ambit(
        cluster,
        "drain",
        "node1",
        "--pod-selector",
        "gateway.networking.k8s.io/gateway-name=waypoint",
        "--timeout",
        "90s",
    )
    out = second.stdout + second.stderr
    assert "Cannot evict pod as it would violate the pod's disruption budget" in out, out
    assert "disruption budget waypoint" in out and "node/node1 drained" in out, out
    assert {p["spec"]["nodeName"] for p in serving(cluster, "waypoint")} == {"node2"}
    ambit(cluster, "uncordon", "node1")
    print(json.dumps({"second drain": [line for line in out.splitlines() if "evict" in line][:6]}, indent=1))
