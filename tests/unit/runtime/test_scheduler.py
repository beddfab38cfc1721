"""Scheduling decisions (pure): Deployment → Pods, and placement on nodes."""

from __future__ import annotations

from typing import Any

from ambit.resources.objects import selector_matches
from ambit.runtime.scheduler import (
    HOSTNAME_KEY,
    ZONE_KEY,
    NodeInfo,
    PlacedPod,
    place,
)

NODES = [
    NodeInfo(f"node{i}", {HOSTNAME_KEY: f"node{i}", ZONE_KEY: zone})
    for i, zone in ((1, "a"), (2, "b"), (3, "c"), (4, "a"))
]


def deployment(replicas: int | None = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop", "uid": "u-web"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "version": "v1"}},
                "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
            },
        },
    }


def pod(labels: dict[str, str] | None = None, /, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "shop", "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "x"}], **spec},
    }


def placed(node: str, labels: dict[str, str] | None = None, namespace: str = "shop") -> PlacedPod:
    return PlacedPod(namespace, labels or {"app": "web"}, node)


def test_spread_across_nodes_by_default() -> None:
    nodes = NODES[:3]
    chosen: list[PlacedPod] = []
    for _ in range(6):
        node = place(pod(), nodes, chosen)
        assert node is not None
        chosen.append(placed(node))
    assert sorted(p.node for p in chosen) == ["node1", "node1", "node2", "node2", "node3", "node3"]


def test_spread_prefers_node_without_same_labels_over_busy_ones() -> None:
    others = [placed("node1", {"app": "db"}), placed("node1", {"app": "db"})]
    assert place(pod(), NODES[:2], [*others, placed("node2")]) == "node1"


def test_node_name_is_honoured_and_unknown_node_is_unschedulable() -> None:
    assert place(pod(nodeName="node3"), NODES, [placed("node3")] * 5) == "node3"
    assert place(pod(nodeName="node9"), NODES, []) is None


def test_node_selector_filters_nodes() -> None:
    assert place(pod(nodeSelector={ZONE_KEY: "b"}), NODES, []) == "node2"
    assert place(pod(nodeSelector={ZONE_KEY: "z"}), NODES, []) is None
    chosen: list[PlacedPod] = []
    for _ in range(4):
        node = place(pod(nodeSelector={ZONE_KEY: "a"}), NODES, chosen)
        assert node in {"node1", "node4"}
        chosen.append(placed(node))
    assert sorted(p.node for p in chosen) == ["node1", "node1", "node4", "node4"]


def zone_spread(when: str = "DoNotSchedule", skew: int = 1) -> dict[str, Any]:
    return {
        "maxSkew": skew,
        "topologyKey": ZONE_KEY,
        "whenUnsatisfiable": when,
        "labelSelector": {"matchLabels": {"app": "web"}},
    }


def test_zone_spread_hard_constraint() -> None:
    # zone a already has 1 (node1); b and c have 0: a zone-a node would make skew 2
    existing = [placed("node1")]
    for _ in range(10):
        assert place(pod(topologySpreadConstraints=[zone_spread()]), NODES, existing) in {"node2", "node3"}
    existing = [placed("node1"), placed("node2"), placed("node3")]
    assert place(pod(topologySpreadConstraints=[zone_spread()]), NODES, existing) in {"node1", "node4"}


def test_zone_spread_unsatisfiable_leaves_pod_pending() -> None:
    spec = {"topologySpreadConstraints": [zone_spread()], "nodeSelector": {ZONE_KEY: "a"}}
    # Only zone a is eligible (nodeSelector), so zones with nodes filtered out do not count.
    assert place(pod(**spec), NODES, [placed("node1"), placed("node4")]) in {"node1", "node4"}
    hostname_hard = {"maxSkew": 1, "topologyKey": HOSTNAME_KEY, "whenUnsatisfiable": "DoNotSchedule"}
    existing = [placed("node1"), placed("node1")]
    # hostname skew: node1 has 2, node2 has 0 → node1 refused even if named by a tie-break
    assert place(pod(topologySpreadConstraints=[hostname_hard]), NODES[:2], existing) == "node2"
    missing_key = {"maxSkew": 1, "topologyKey": "example.com/rack", "whenUnsatisfiable": "DoNotSchedule"}
    assert place(pod(topologySpreadConstraints=[missing_key]), NODES, []) is None


def test_schedule_anyway_is_a_preference() -> None:
    existing = [placed("node1"), placed("node2"), placed("node2")]
    spec = {"topologySpreadConstraints": [zone_spread("ScheduleAnyway")]}
    assert place(pod(**spec), NODES, existing) == "node3"


def test_spread_only_counts_same_namespace() -> None:
    existing = [placed("node1", namespace="other")] * 3
    assert place(pod(), NODES[:2], existing) == "node2"  # fewer pods in total wins the tie
    assert place(pod(topologySpreadConstraints=[zone_spread()]), NODES[:2], existing) == "node2"


def test_selector_matches_expressions() -> None:
    labels = {"app": "web", "tier": "front"}
    assert selector_matches(None, labels)
    assert selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]}, labels
    )
    assert not selector_matches(
        {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["front"]}]}, labels
    )
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not selector_matches({"matchLabels": {"app": "db"}}, labels)


def test_a_cordoned_node_gets_no_new_pod_but_a_set_node_name_still_binds() -> None:
    """``spec.unschedulable`` (``ambit cordon``) takes a node out of placement; ``spec.nodeName`` bypasses
    the scheduler, cordoned or not, as in Kubernetes. Control: uncordoned, node1 (fewest pods, lowest
    name) is chosen."""
    assert place(pod(), NODES, []) == "node1"
    cordoned = [NodeInfo(n.name, n.labels, unschedulable=n.name == "node1") for n in NODES]
    assert place(pod(), cordoned, []) == "node2"
    assert place(pod(nodeName="node1"), cordoned, []) == "node1"
    everything = [NodeInfo(n.name, n.labels, unschedulable=True) for n in NODES]
    assert place(pod(), everything, []) is None, "every node cordoned: the pod stays Pending"
