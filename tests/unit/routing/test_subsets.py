"""DestinationRule subsets at the waypoint: the workloads a destination's subset allows, or None (503 NC)."""

from __future__ import annotations

from ambit.model.traffic_policy import ConnectionPool, Subset, TrafficPolicy
from ambit.routing.subsets import subset_members

SVC = "default/reviews.default.svc.cluster.local"
POLICY = TrafficPolicy(
    "reviews",
    "default",
    SVC,
    ConnectionPool(max_requests=10),
    subsets=(Subset("v1", ("uid-a", "uid-b")), Subset("v2", ("uid-c",)), Subset("v9")),
)


def test_a_defined_subset_gives_its_workloads() -> None:
    assert subset_members(POLICY, "v1") == frozenset({"uid-a", "uid-b"})
    assert subset_members(POLICY, "v2") == frozenset({"uid-c"})


def test_a_defined_subset_without_workloads_is_empty_not_undefined() -> None:
    """No endpoint: 503 UH, as a Service without endpoints — not NC."""
    assert subset_members(POLICY, "v9") == frozenset()


def test_an_undefined_subset_is_none() -> None:
    """Istio sends it to a cluster that does not exist: 503 NC."""
    assert subset_members(POLICY, "v3") is None
    assert subset_members(None, "v1") is None, "no DestinationRule for the Service at all"
    assert subset_members(TrafficPolicy("r", "default", SVC, ConnectionPool(max_requests=1)), "v1") is None
