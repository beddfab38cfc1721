"""Node liveness on a real cluster: a node cut off the fabric (nftables in the cluster's own fabric
namespace) stops renewing its Lease; after the grace period it is NotReady and its endpoints leave
every proxy's config, while traffic between the other nodes loses nothing; healed, it serves again.

3 nodes, `--node-grace 8`; node2 hosts control-plane replica 2 (the bootstrap pins one replica to each
of node1 and node2), so proxies whose xDS stream went to it must notice the dead stream and fail over
to replica 1 within the grace period. Workloads: `near` pinned to node2 (the cut node's endpoint),
`far` pinned to node3, and the load client pinned to node1, which sends to `far` (node1 → node3, a pair
that does not touch node2) across the whole cut.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import ambit, ready, temporary_cluster, wait_for
from ambit.testing.load_run import assert_no_failures, start_load

pytestmark = pytest.mark.root

NS = "live"
GRACE = 8.0
NODES = ("node1", "node2", "node3")


def pinned(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeName": node,
                    "containers": [
                        {"name": "app", "image": "ambit/sample", "ports": [{"containerPort": 8080}]}
                    ],
                },
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


OBJECTS = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": NS, "labels": {"istio.io/dataplane-mode": "ambient"}},
    },
    pinned("client", "node1"),
    pinned("near", "node2"),
    pinned("far", "node3"),
    service("near"),
    service("far"),
]


def pods_of(cluster: str, app: str) -> list[dict[str, Any]]:
    return [p for p in ClusterHandle(cluster).pods(NS) if p["metadata"]["labels"].get("app") == app]


def pod(cluster: str, app: str) -> dict[str, Any]:
    found = pods_of(cluster, app)
    assert len(found) == 1, found
    return found[0]


def started(cluster: str) -> bool:
    return all(
        len(pods_of(cluster, a)) == 1 and ready(pods_of(cluster, a)[0]) for a in ("client", "near", "far")
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("l"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "3", "--node-grace", str(GRACE))
        ClusterHandle(name).apply(OBJECTS)
        wait_for(lambda: started(name), "pods ready", 90)
        yield name


def workload_status(cluster: str, node: str, uid: str) -> str:
    """How ``node``'s ztunnel holds workload ``uid`` now: HEALTHY, UNHEALTHY or absent."""
    workloads = ClusterHandle(cluster).ztunnel_config(node).get("workloads") or {}
    found = workloads.get(uid)
    return str(found.get("status")) if found else "absent"


def xds_peer(cluster: str, node: str) -> str:
    """The control-plane address ``node``'s ztunnel streams xDS from now."""
    return str((ClusterHandle(cluster).ztunnel_config(node).get("xds") or {}).get("address", ["?"])[0])


def node_ready(cluster: str, node: str) -> str:
    conditions = ClusterHandle(cluster).get("Node", node).get("status", {}).get("conditions") or []
    return next((str(c["status"]) for c in conditions if c.get("type") == "Ready"), "?")


def test_a_cut_node_leaves_every_proxys_config_within_grace_and_others_lose_nothing(
    cluster: str, tmp_path: Path
) -> None:
    handle = ClusterHandle(cluster)
    near = pod(cluster, "near")
    uid = near["metadata"]["uid"]
    wait_for(lambda: all(workload_status(cluster, n, uid) == "HEALTHY" for n in NODES), "near served", 30)
    # Put every proxy's xDS stream on node2's control-plane replica (replica 1 stopped for a moment), so
    # the cut kills the streams of node1's and node3's ztunnels: they must notice and fail over in time.
    replica2 = next(
        p["status"]["podIP"] for p in handle.pods("ambit-system") if p["spec"].get("nodeName") == "node2"
    )
    handle.stop("controlplane", "controlplane-1")
    try:
        wait_for(
            lambda: all(xds_peer(cluster, n) == replica2 for n in NODES), "every stream on replica 2", 30
        )
    finally:
        handle.start("controlplane", "controlplane-1")
    wait_for(lambda: all(ready(p) for p in handle.pods("ambit-system")), "replica 1 ready again", 30)
    client = pod(cluster, "client")["metadata"]["name"]
    load = start_load(cluster, client, NS, "http://far/", tmp_path / "load.json", duration=25)
    try:
        time.sleep(3)
        cut_at = time.monotonic()
        handle.cut("node2")
        left: dict[str, float] = {}
        deadline = cut_at + GRACE + 6
        while len(left) < len(NODES) and time.monotonic() < deadline:
            for node in NODES:
                if node not in left and workload_status(cluster, node, uid) != "HEALTHY":
                    left[node] = time.monotonic() - cut_at
            time.sleep(0.2)
        assert node_ready(cluster, "node2") == "Unknown"
        result = load.finish()
    finally:
        load.stop()
        handle.heal("node2")
    moved = {n: xds_peer(cluster, n) for n in ("node1", "node3")}
    print(
        f"node2's endpoint left each proxy's config after (s): {left} (grace {GRACE}); streams now: {moved}"
    )
    assert replica2 not in moved.values(), f"a proxy still streams from the cut node's replica: {moved}"
    assert set(left) == set(NODES), f"still served by some proxy {GRACE + 6}s after the cut: {left}"
    assert max(left.values()) <= GRACE + 2, left
    assert min(left.values()) >= GRACE - 2.5, f"gone before the grace period could have expired: {left}"
    assert_no_failures(result, 100, 25)
    # Healed: the heartbeat returns, the node is Ready, its pod is ready again and serves.
    wait_for(lambda: node_ready(cluster, "node2") == "True", "node2 Ready again", GRACE + 10)
    wait_for(lambda: all(workload_status(cluster, n, uid) == "HEALTHY" for n in NODES), "near served", 30)
    reply = handle.exec(["curl", "-sS", "-m", "5", "http://near/hello"], pod=client, namespace=NS)
    assert near["metadata"]["name"] in reply.stdout, reply.stdout + reply.stderr
