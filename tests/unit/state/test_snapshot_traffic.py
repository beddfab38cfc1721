"""The snapshot's DestinationRule traffic policies: held by key, indexed by their Service, kept current."""

from __future__ import annotations

import dataclasses

from ambit.model.route import HTTP_ROUTE, HttpRoute, RouteMatch, RouteRule
from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, TrafficPolicy
from ambit.model.workload import Workload
from ambit.state import TRAFFIC_POLICY_PREFIX, Snapshot, StateStore, resource_name
from ambit.state.snapshot import Entry, Resource

WEB = "default/web.default.svc.cluster.local"
API = "default/api.default.svc.cluster.local"


def tp(name: str, service_key: str = WEB, *, pool: int | None = None) -> TrafficPolicy:
    connection_pool = ConnectionPool(max_connections=pool) if pool is not None else None
    return TrafficPolicy(name, "default", service_key, connection_pool, OutlierDetection())


def entries(*values: Resource, version: str = "1") -> dict[str, Entry]:
    return {resource_name(v): (version, v) for v in values}


def test_resource_name() -> None:
    assert resource_name(tp("r")) == TRAFFIC_POLICY_PREFIX + tp("r").key == "tp/default/r"


def test_traffic_policies_and_index() -> None:
    web, api = tp("a"), tp("b", API)
    snap = Snapshot.build(entries(api, web))
    assert dict(snap.traffic_policies) == {"default/a": web, "default/b": api}
    assert snap.traffic_policy_for(WEB) == web
    assert snap.traffic_policy_for(API) == api
    assert snap.traffic_policy_for("default/nope.default.svc.cluster.local") is None
    assert "traffic_policies=2" in repr(snap)
    assert snap.versions((TRAFFIC_POLICY_PREFIX,)) == {"tp/default/a": "1", "tp/default/b": "1"}


def test_two_policies_for_one_service_the_lowest_key_wins() -> None:
    """Translation never sends two; a snapshot still answers deterministically."""
    first, second = tp("a", pool=1), tp("b", pool=2)
    assert Snapshot.build(entries(second, first)).traffic_policy_for(WEB) == first


def test_traffic_policies_live_beside_routes_and_workloads() -> None:
    route = HttpRoute(HTTP_ROUTE, "r", "default", "", WEB, None, (RouteRule(0, (RouteMatch(),), ()),))
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",), services=((WEB, ()),))
    policy = tp("r")
    snap = Snapshot.build(entries(route, workload, policy))
    assert snap.routes_for(WEB) == (route,)
    assert snap.endpoints(WEB) == (workload,)
    assert snap.traffic_policy_for(WEB) == policy
    assert dict(snap.routes) == {route.key: route}, "a route is not taken for a traffic policy"


def _same_as_rebuild(derived: Snapshot) -> None:
    rebuilt = Snapshot.build(derived.entries)
    assert derived.version == rebuilt.version
    assert dict(derived.traffic_policies) == dict(rebuilt.traffic_policies)
    for key in (WEB, API):
        assert derived.traffic_policy_for(key) == rebuilt.traffic_policy_for(key)


def test_with_changes_keeps_the_index_current() -> None:
    a = tp("a")
    snap = Snapshot.build({})
    added = snap.with_changes(entries(a), ())
    assert added.traffic_policy_for(WEB) == a
    assert snap.traffic_policy_for(WEB) is None, "the old snapshot is unchanged"
    updated_a = dataclasses.replace(a, connection_pool=ConnectionPool(max_requests=5))
    updated = added.with_changes({resource_name(a): ("2", updated_a)}, ())
    assert updated.traffic_policy_for(WEB) == updated_a
    moved_a = dataclasses.replace(updated_a, service_key=API)  # same key, another Service
    moved = updated.with_changes({resource_name(a): ("3", moved_a)}, ())
    assert moved.traffic_policy_for(WEB) is None
    assert moved.traffic_policy_for(API) == moved_a
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    other = moved.with_changes(entries(workload), ())
    assert other._traffic_by_service is moved._traffic_by_service, "a change elsewhere shares the index"
    removed = other.with_changes({}, [resource_name(a)])
    assert removed.traffic_policy_for(API) is None
    assert dict(removed.traffic_policies) == {}
    for derived in (added, updated, moved, other, removed):
        _same_as_rebuild(derived)


def test_store_apply() -> None:
    store = StateStore()
    seen: list[Snapshot] = []
    store.subscribe(seen.append)
    store.apply(entries(tp("a")))
    assert store.current.traffic_policy_for(WEB) == tp("a")
    store.apply(entries(tp("a")))  # same version: no change
    assert len(seen) == 1
    store.apply({}, [resource_name(tp("a"))])
    assert store.current.traffic_policy_for(WEB) is None
    assert len(seen) == 2
