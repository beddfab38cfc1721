"""Scheduling on a real cluster: zones on nodes, `topologySpreadConstraints` on the zone and on the
hostname, `nodeSelector` on a hostname and on a zone, and a selector no node matches (Pending).

One cluster (4 nodes in zones a, b, c, a; no ztunnels: nothing here is enrolled) is shared by the module
and torn down with `ambit down` whatever happens. Four nodes so that zone a holds two nodes: a zone
constraint then differs from a hostname one. Each spread test first pins "ballast" pods with the same
`spread` label to one node, so that the default spread (which ignores that label) would put pods where
the constraint forbids them: the assertions fail if the constraint is ignored. The workloads run `sleep`
(no ports: ready once the process runs), cheap on a small machine.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import ambit, ready, temporary_cluster, wait_for

pytestmark = pytest.mark.root

ZONE_KEY = "topology.kubernetes.io/zone"
HOST_KEY = "kubernetes.io/hostname"
ZONES = {"node1": "a", "node2": "b", "node3": "c", "node4": "a"}  # `--zones a,b,c`, round-robin


def deployment(name: str, replicas: int, labels: dict[str, str], **spec: Any) -> str:
    """A Deployment of `sleep` pods; `spec` goes into the pod template's spec."""
    template_labels = {"app": name, **labels}
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": template_labels},
                    "spec": {
                        **spec,
                        "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}],
                    },
                },
            },
        }
    )


def spread(key: str, group: str) -> list[dict[str, Any]]:
    return [
        {
            "maxSkew": 1,
            "topologyKey": key,
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"spread": group}},
        }
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("s"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "4", "--zones", "a,b,c", "--no-ztunnel")
        yield name


def pods(cluster: str, app: str) -> list[dict[str, Any]]:
    """The pods labelled ``app`` in the default namespace (what `ambit get pods -l app=APP` lists)."""
    return [
        p
        for p in ClusterHandle(cluster).pods("default")
        if (p["metadata"].get("labels") or {}).get("app") == app
    ]


def run(cluster: str, manifest: str, app: str, replicas: int) -> list[dict[str, Any]]:
    """Apply one Deployment and wait until its `replicas` pods are bound and ready."""
    ClusterHandle(cluster).apply(manifest)

    def done() -> bool:
        items = pods(cluster, app)
        return len(items) == replicas and all(p["spec"].get("nodeName") and ready(p) for p in items)

    wait_for(done, f"{replicas} pods of {app} bound and ready", 60, 0.5)
    return pods(cluster, app)


def delete(cluster: str, *deployments: str) -> None:
    handle = ClusterHandle(cluster)
    for name in deployments:
        with contextlib.suppress(Exception):  # clean-up: the cluster may already be gone
            handle.delete("Deployment", name, "default")


UNSCHEDULABLE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}


def unschedulable(pod: dict[str, Any]) -> bool:
    """The scheduler tried the pod and found it no node."""
    return UNSCHEDULABLE in (pod.get("status") or {}).get("conditions", [])


def scheduling_passes(cluster: str, count: int) -> None:
    """Return once ``count`` more scheduling passes have run, each seen by its work: the pass after a
    Deployment no node fits is scaled up by one creates the pod and marks it Unschedulable (one pass
    creates, then tries every unbound pod)."""
    witness = "passes"
    try:
        for n in range(1, count + 1):
            manifest = deployment(witness, n, {}, nodeSelector={HOST_KEY: "no-such-node"})
            ClusterHandle(cluster).apply(manifest)
            wait_for(
                lambda want=n: sum(unschedulable(p) for p in pods(cluster, witness)) == want,
                f"scheduling pass {n} of {count}",
                30,
                0.2,
            )
    finally:
        delete(cluster, witness)


def test_nodes_carry_hostname_and_zone_labels(cluster: str) -> None:
    handle = ClusterHandle(cluster)
    nodes = handle.objects(["Node"])
    labels = {n["metadata"]["name"]: n["metadata"]["labels"] for n in nodes}
    assert {name: lab.get(ZONE_KEY) for name, lab in labels.items()} == ZONES
    assert all(lab.get(HOST_KEY) == name for name, lab in labels.items())
    status = handle.status()
    assert {n.name: n.zone for n in status.nodes} == ZONES, status.nodes


def test_zone_spread_constraint_balances_zones_not_nodes(cluster: str) -> None:
    try:
        ballast = run(cluster, deployment("zballast", 3, {"spread": "zone"}, nodeName="node1"), "zballast", 3)
        assert {p["spec"]["nodeName"] for p in ballast} == {"node1"}
        placed = run(
            cluster,
            deployment("zspread", 6, {"spread": "zone"}, topologySpreadConstraints=spread(ZONE_KEY, "zone")),
            "zspread",
            6,
        )
        # Zone a already holds 3 matching pods, so with maxSkew 1 a pod may go there only once b and c
        # hold 3 each: all 6 go to b and c. Ignoring the constraint would use node4 (zone a, empty);
        # spreading over hostnames instead of zones would too (node4 is a host with no matching pod).
        by_zone = Counter(ZONES[p["spec"]["nodeName"]] for p in placed)
        assert by_zone == {"b": 3, "c": 3}, Counter(p["spec"]["nodeName"] for p in placed)
    finally:
        delete(cluster, "zballast", "zspread")


def test_hostname_spread_constraint_counts_matching_pods_already_placed(cluster: str) -> None:
    try:
        run(cluster, deployment("hballast", 2, {"spread": "host"}, nodeName="node1"), "hballast", 2)
        placed = run(
            cluster,
            deployment("hspread", 5, {"spread": "host"}, topologySpreadConstraints=spread(HOST_KEY, "host")),
            "hspread",
            5,
        )
        mine = Counter(p["spec"]["nodeName"] for p in placed)
        assert "node1" not in mine, mine  # node1 already holds 2 matching pods
        total = mine + Counter({"node1": 2})
        assert set(total) == set(ZONES)
        assert max(total.values()) - min(total.values()) <= 1, total
    finally:
        delete(cluster, "hballast", "hspread")


def test_node_selector_on_hostname_and_on_zone(cluster: str) -> None:
    try:
        pinned = run(cluster, deployment("onnode3", 3, {}, nodeSelector={HOST_KEY: "node3"}), "onnode3", 3)
        assert [p["spec"]["nodeName"] for p in pinned] == ["node3"] * 3
        in_a = run(cluster, deployment("inzonea", 4, {}, nodeSelector={ZONE_KEY: "a"}), "inzonea", 4)
        assert Counter(p["spec"]["nodeName"] for p in in_a) == {"node1": 2, "node4": 2}
    finally:
        delete(cluster, "onnode3", "inzonea")


def test_unmatched_node_selector_stays_pending_until_a_node_matches(cluster: str) -> None:
    manifest = deployment("nowhere", 2, {}, nodeSelector={ZONE_KEY: "a", "disktype": "ssd"})
    try:
        ClusterHandle(cluster).apply(manifest)
        wait_for(
            lambda: (
                len(pods(cluster, "nowhere")) == 2
                and all(
                    p.get("status", {}).get("phase") == "Pending" and unschedulable(p)
                    for p in pods(cluster, "nowhere")
                )
            ),
            "2 Pending pods the scheduler found no node for",
            30,
            0.5,
        )
        scheduling_passes(cluster, 2)  # two more passes, each of which tried these pods again
        for p in pods(cluster, "nowhere"):
            assert not p["spec"].get("nodeName"), p
            assert p["status"]["phase"] == "Pending"
            assert not p["status"].get("podIP")
            assert UNSCHEDULABLE in p["status"]["conditions"]
            assert not ready(p)
        rows = ClusterHandle(cluster).status().pods
        mine = [row for row in rows if row.namespace == "default" and row.name.startswith("nowhere-")]
        assert len(mine) == 2 and all((r.node, r.ip, r.ready) == ("-", "-", False) for r in mine), mine
        table = ambit(cluster, "get", "pods", "-l", "app=nowhere").stdout
        assert table.count("Pending") == 2, table
        # Give node4 (zone a) the missing label: the pending pods are scheduled there, and only there.
        ClusterHandle(cluster).label("Node", "node4", {"disktype": "ssd"})
        wait_for(
            lambda: all(p["spec"].get("nodeName") and ready(p) for p in pods(cluster, "nowhere")),
            "the pods scheduled once a node matches",
            30,
            0.5,
        )
        assert {p["spec"]["nodeName"] for p in pods(cluster, "nowhere")} == {"node4"}
    finally:
        delete(cluster, "nowhere")
        with contextlib.suppress(Exception):  # clean-up: the cluster may already be gone
            ClusterHandle(cluster).label("Node", "node4", {"disktype": None})


def test_ambit_scale_adds_and_removes_pods(cluster: str) -> None:
    """`ambit scale deployment NAME --replicas R`, as kubectl's: 1 → 3 pods bound and ready, then 3 → 1
    (the scheduler deletes two); a stale --current-replicas precondition changes nothing."""
    first = run(cluster, deployment("scaled", 1, {"app": "scaled"}), "scaled", 1)
    try:
        out = ambit(cluster, "scale", "deployment", "scaled", "--replicas", "3").stdout
        assert out == "deployment.apps/scaled scaled\n"

        def count_ready(n: int) -> Callable[[], bool]:
            return lambda: len(items := pods(cluster, "scaled")) == n and all(ready(p) for p in items)

        wait_for(count_ready(3), "3 pods of scaled ready", 60, 0.5)
        stale = ambit(
            cluster, "scale", "deploy/scaled", "--replicas", "1", "--current-replicas", "1", check=False
        )
        assert stale.returncode == 1 and "Expected replicas to be 1, was 3" in stale.stderr
        ambit(cluster, "scale", "deploy/scaled", "--replicas", "1", "--current-replicas", "3")
        wait_for(count_ready(1), "back to 1 pod", 60, 0.5)
        assert first  # the one pod it started with was bound and ready
    finally:
        delete(cluster, "scaled")


def test_cordoned_nodes_get_no_new_pods(cluster: str) -> None:
    """`ambit cordon` three of the four nodes: a new Deployment's pods all land on the fourth; the nodes
    list says SchedulingDisabled; after `ambit uncordon`, scaling up spreads again (the control)."""
    cordoned = ["node1", "node2", "node3"]
    try:
        for node in cordoned:
            assert ambit(cluster, "cordon", node).stdout == f"node/{node} cordoned\n"
        assert ambit(cluster, "get", "nodes").stdout.count("SchedulingDisabled") == 3
        placed = run(cluster, deployment("fenced", 3, {"app": "fenced"}), "fenced", 3)
        assert {p["spec"]["nodeName"] for p in placed} == {"node4"}
        for node in cordoned:
            ambit(cluster, "uncordon", node)
        ambit(cluster, "scale", "deployment", "fenced", "--replicas", "6")

        def spread_again() -> bool:
            items = pods(cluster, "fenced")
            return len(items) == 6 and all(ready(p) for p in items)

        wait_for(spread_again, "6 pods of fenced ready", 60, 0.5)
        assert {p["spec"]["nodeName"] for p in pods(cluster, "fenced")} != {"node4"}
    finally:
        for node in cordoned:
            ambit(cluster, "uncordon", node, check=False)
        delete(cluster, "fenced")
