"""The traffic policy model: Istio's defaults, keys, and values that cannot be."""

from __future__ import annotations

import math

import pytest

from ambit.model.jsonable import from_jsonable, jsonable
from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, Subset, TrafficPolicy


def test_istio_defaults() -> None:
    """consecutive5xxErrors 5, interval 10s, baseEjectionTime 30s, maxEjectionPercent 10, minHealthPercent 0
    (istio/api destination_rule.proto); the gateway-error detector is off unless set."""
    assert OutlierDetection() == OutlierDetection(5, None, 10.0, 30.0, 10, 0)
    assert ConnectionPool() == ConnectionPool(None, None, None, None), "unset: unlimited"


def test_key() -> None:
    policy = TrafficPolicy("reviews-cb", "bookinfo", "bookinfo/reviews.bookinfo.svc.cluster.local")
    assert policy.key == "bookinfo/reviews-cb"
    assert policy.connection_pool is None and policy.outlier_detection is None
    assert policy.subsets == () and policy.subset("v1") is None


def test_jsonable_round_trip() -> None:
    policy = TrafficPolicy(
        "r",
        "ns",
        "ns/web.ns.svc.cluster.local",
        ConnectionPool(max_requests=3),
        OutlierDetection(),
        (Subset("v1", ("uid-a", "uid-b")), Subset("v2")),
    )
    assert from_jsonable(TrafficPolicy, jsonable(policy)) == policy


def test_subsets_by_name() -> None:
    v1, v2 = Subset("v1", ("uid-a",)), Subset("v2")
    policy = TrafficPolicy("r", "ns", "ns/web.ns.svc.cluster.local", subsets=(v1, v2))
    assert (policy.subset("v1"), policy.subset("v2"), policy.subset("v3")) == (v1, v2, None)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ConnectionPool(max_connections=0), "max_connections 0 is not a count of at least 1"),
        (lambda: ConnectionPool(max_requests=-1), "max_requests -1"),
        (lambda: ConnectionPool(max_pending_requests=True), "max_pending_requests True"),
        (lambda: OutlierDetection(consecutive_5xx=0), "consecutive_5xx 0"),
        (lambda: OutlierDetection(interval=0.0), "interval 0.0 is not a positive number of seconds"),
        (lambda: OutlierDetection(base_ejection_time=math.inf), "base_ejection_time inf"),
        (lambda: OutlierDetection(max_ejection_percent=101), "max_ejection_percent 101 is not a percentage"),
        (lambda: OutlierDetection(min_health_percent=-1), "min_health_percent -1"),
        (lambda: Subset(""), "subset name '' is empty"),
        (lambda: Subset("v1", ("uid-a", "")), "subset 'v1': a workload uid is empty"),
        (lambda: Subset("v1", ("uid-b", "uid-a")), "subset 'v1': workload uids are not sorted and unique"),
        (lambda: Subset("v1", ("uid-a", "uid-a")), "not sorted and unique"),
        (
            lambda: TrafficPolicy("r", "ns", "ns/h", subsets=(Subset("v2"), Subset("v1"))),
            r"subsets \['v2', 'v1'\] are not sorted by name with unique names",
        ),
        (lambda: TrafficPolicy("r", "ns", "ns/h", subsets=(Subset("v1"), Subset("v1"))), "unique names"),
    ],
)
def test_values_that_cannot_be(build: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()  # type: ignore[operator]
