"""TrafficStates: a Service's DestinationRule state is kept across config pushes while its parts are
unchanged — the request limiter and connection slots while the connection pool is the same (a subset's
members changing must not reset the counters that requests in flight hold), and new ones when it changes."""

from __future__ import annotations

from ambit.model.traffic_policy import ConnectionPool, Subset, TrafficPolicy
from ambit.model.workload import Service, ServicePort
from ambit.state import StateStore, resource_name
from ambit.waypoint.service_traffic import TrafficStates

WEB = "default/web.default.svc.cluster.local"
SERVICE = Service(
    "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
)


def state_with(policy: TrafficPolicy, version: str) -> StateStore:
    store = StateStore()
    store.apply({resource_name(v): (version, v) for v in (SERVICE, policy)})
    return store


def test_the_counters_survive_a_subset_change_and_reset_on_a_pool_change() -> None:
    pool = ConnectionPool(max_connections=1, max_requests=5)
    states = TrafficStates()
    first = states.get(
        state_with(TrafficPolicy("web", "default", WEB, pool, subsets=(Subset("v1", ("a",)),)), "1").current,
        SERVICE,
    )
    assert first is not None and first.requests.try_acquire()  # a request in flight holds one
    moved = TrafficPolicy("web", "default", WEB, pool, subsets=(Subset("v1", ("a", "b")),))
    second = states.get(state_with(moved, "2").current, SERVICE)
    assert second is not None and second.policy == moved
    assert second.requests is first.requests and second.connections is first.connections
    assert second.requests.in_use == 1, "the request in flight still counts"
    changed = TrafficPolicy("web", "default", WEB, ConnectionPool(max_connections=2, max_requests=5))
    third = states.get(state_with(changed, "3").current, SERVICE)
    assert third is not None and third.requests is not first.requests, "control: new limits, new counters"
