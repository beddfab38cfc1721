"""The snapshot's Gateway API routes: held by key, indexed by their parent Service, kept current."""

from __future__ import annotations

import dataclasses

from ambit.model.policy import Action, L7Authorization, PolicyTarget
from ambit.model.route import GRPC_ROUTE, HTTP_ROUTE, HttpRoute, RouteMatch, RouteRule
from ambit.model.workload import Workload
from ambit.state import ROUTE_PREFIX, Snapshot, StateStore, resource_name
from ambit.state.snapshot import Entry, Resource

WEB = "default/web.default.svc.cluster.local"
API = "default/api.default.svc.cluster.local"


def rt(name: str, service_key: str = WEB, *, port: int | None = None, kind: str = HTTP_ROUTE) -> HttpRoute:
    return HttpRoute(kind, name, "default", "", service_key, port, (RouteRule(0, (RouteMatch(),), ()),))


def entries(*values: Resource, version: str = "1") -> dict[str, Entry]:
    return {resource_name(v): (version, v) for v in values}


def test_resource_name() -> None:
    assert resource_name(rt("r")) == ROUTE_PREFIX + rt("r").key == f"rt/default/HTTPRoute/r/{WEB}"
    assert resource_name(rt("r", port=80)) == f"rt/default/HTTPRoute/r/{WEB}:80"


def test_routes_and_index() -> None:
    b, a = rt("b"), rt("a", port=80)
    grpc = rt("a", kind=GRPC_ROUTE)  # same name, other kind: its own value
    api = rt("c", API)
    snap = Snapshot.build(entries(b, api, a, grpc))
    assert dict(snap.routes) == {r.key: r for r in (a, b, grpc, api)}
    assert snap.routes_for(WEB) == tuple(sorted((a, b, grpc), key=lambda r: r.key)), "sorted by key"
    assert snap.routes_for(API) == (api,)
    assert snap.routes_for("default/nope.default.svc.cluster.local") == ()
    assert "routes=4" in repr(snap)
    assert snap.versions((ROUTE_PREFIX,)) == {resource_name(r): "1" for r in (a, b, grpc, api)}


def test_routes_live_beside_policies_and_workloads() -> None:
    l7 = L7Authorization("r", "default", Action.ALLOW, (PolicyTarget("Service", "default", "web"),), ())
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",), services=((WEB, ()),))
    route = rt("r")
    snap = Snapshot.build(entries(l7, workload, route))
    assert dict(snap.l7_policies) == {"default/r": l7}
    assert dict(snap.routes) == {route.key: route}
    assert snap.endpoints(WEB) == (workload,)
    assert snap.l7_policies_for("Service", "default", "web") == (l7,)


def _same_as_rebuild(derived: Snapshot) -> None:
    rebuilt = Snapshot.build(derived.entries)
    assert derived.version == rebuilt.version
    assert dict(derived.routes) == dict(rebuilt.routes)
    for key in (WEB, API):
        assert derived.routes_for(key) == rebuilt.routes_for(key)


def test_with_changes_updates_the_index() -> None:
    a, b = rt("a"), rt("b")
    snap = Snapshot.build(entries(a))
    added = snap.with_changes(entries(b), ())
    assert added.routes_for(WEB) == (a, b)
    assert snap.routes_for(WEB) == (a,), "the old snapshot is unchanged"
    # a new version of a route (same key) replaces it in the index
    updated_b = dataclasses.replace(b, rules=())
    updated = added.with_changes({resource_name(b): ("2", updated_b)}, ())
    assert updated.routes_for(WEB) == (a, updated_b)
    # a route whose parent changes has another key: the old one goes, the new one comes
    moved_a = dataclasses.replace(a, service_key=API)
    moved = updated.with_changes(entries(moved_a), [resource_name(a)])
    assert moved.routes_for(WEB) == (updated_b,)
    assert moved.routes_for(API) == (moved_a,)
    removed = moved.with_changes({}, [resource_name(b)])
    assert removed.routes_for(WEB) == ()
    assert dict(removed.routes) == {moved_a.key: moved_a}
    # a change elsewhere shares the route index
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    other = removed.with_changes(entries(workload), ())
    assert other.routes_for(API) == (moved_a,)
    assert other._routes_by_service is removed._routes_by_service
    for derived in (added, updated, moved, removed, other):
        _same_as_rebuild(derived)


def test_store_apply() -> None:
    store = StateStore()
    seen: list[Snapshot] = []
    store.subscribe(seen.append)
    store.apply(entries(rt("a")))
    assert store.current.routes_for(WEB) == (rt("a"),)
    store.apply(entries(rt("a")))  # same version: no change
    assert len(seen) == 1
    store.apply({}, [resource_name(rt("a"))])
    assert store.current.routes == {}
    assert store.current.routes_for(WEB) == ()
    assert len(seen) == 2
