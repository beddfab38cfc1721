"""The immutable snapshot, its indexes and content version, and the single-writer state store."""

from __future__ import annotations

import dataclasses

import pytest

from ambit.model.policy import Action, Authorization, Scope
from ambit.model.workload import HealthStatus, PortMapping, Service, ServicePort, Workload
from ambit.state import POLICY_PREFIX, SERVICE_PREFIX, WORKLOAD_PREFIX, Snapshot, StateStore, resource_name
from ambit.state.snapshot import Entry, Resource, versions_digest


def wl(
    uid: str, *addresses: str, ns: str = "default", services: tuple[str, ...] = (), **kw: object
) -> Workload:
    return Workload(
        uid=uid,
        name=f"pod-{uid}",
        namespace=ns,
        service_account="sa",
        node="n1",
        addresses=addresses,
        services=tuple((key, (PortMapping(80, 8080),)) for key in services),
        **kw,  # type: ignore[arg-type]
    )


def svc(name: str, *vips: str, ns: str = "default") -> Service:
    return Service(name, ns, f"{name}.{ns}.svc.cluster.local", vips, (ServicePort(80, 8080),))


def ap(name: str, ns: str, scope: Scope) -> Authorization:
    return Authorization(name, ns, scope, Action.ALLOW, ())


def entries(*values: Resource, version: str = "1") -> dict[str, Entry]:
    return {resource_name(v): (version, v) for v in values}


def test_resource_names() -> None:
    assert resource_name(wl("u1")) == WORKLOAD_PREFIX + "u1"
    assert resource_name(svc("web")) == SERVICE_PREFIX + "default/web.default.svc.cluster.local"
    assert resource_name(ap("deny", "ns1", Scope.NAMESPACE)) == POLICY_PREFIX + "ns1/deny"
    with pytest.raises(TypeError):
        resource_name("nope")  # type: ignore[arg-type]


def test_contents_and_lookups() -> None:
    web = svc("web", "10.96.0.10", "fd00::10")
    a = wl("a", "10.244.1.5", services=(web.key,))
    b = wl("b", "10.244.2.5", "fd00:0:0::5", services=(web.key, "other/x"))
    snap = Snapshot.build(entries(web, a, b))
    assert dict(snap.workloads) == {"a": a, "b": b}
    assert dict(snap.services) == {web.key: web}
    assert snap.find_workload_by_ip("10.244.1.5") == a
    assert snap.find_workload_by_ip("fd00::5") == b  # canonical form on both sides
    assert snap.find_workload_by_ip("10.244.9.9") is None
    assert snap.find_workload_by_ip("not-an-ip") is None
    assert snap.find_service_by_vip("10.96.0.10") == web
    assert snap.find_service_by_vip("fd00:0::10") == web
    assert snap.find_service_by_vip("10.96.0.11") is None
    assert snap.endpoints(web.key) == (a, b)
    assert snap.endpoints("other/x") == (b,)
    assert snap.endpoints("missing/x") == ()
    assert len(snap) == 3
    assert "workloads=2" in repr(snap)


def test_shared_address_prefers_healthy_then_lowest_uid() -> None:
    old = wl("z-old", "10.0.0.1", status=HealthStatus.UNHEALTHY)
    new = wl("y-new", "10.0.0.1")
    other = wl("x", "10.0.0.1", status=HealthStatus.UNHEALTHY)
    assert Snapshot.build(entries(old, new, other)).find_workload_by_ip("10.0.0.1") == new
    assert Snapshot.build(entries(old, other)).find_workload_by_ip("10.0.0.1") == other


def test_policies_for() -> None:
    glob = ap("mesh", "istio-system", Scope.GLOBAL)
    ns_default = ap("ns-wide", "default", Scope.NAMESPACE)
    ns_other = ap("ns-wide", "other", Scope.NAMESPACE)
    selected = ap("only-a", "default", Scope.WORKLOAD_SELECTOR)
    not_listed = ap("only-b", "default", Scope.WORKLOAD_SELECTOR)
    a = wl("a", "10.0.0.1", authorization_policies=(selected.key, "default/missing", ns_default.key))
    snap = Snapshot.build(entries(glob, ns_default, ns_other, selected, not_listed, a))
    assert snap.policies_for(a) == (ns_default, selected, glob)
    b = wl("b", "10.0.0.2", ns="other")
    assert snap.policies_for(b) == (glob, ns_other)


def test_version_is_a_content_hash() -> None:
    a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
    one = Snapshot.build(entries(a, b))
    two = Snapshot.build(dict(reversed(list(entries(a, b).items()))))
    assert one.version == two.version
    assert Snapshot.build(entries(a, b, version="2")).version != one.version
    assert Snapshot.build(entries(a)).version != one.version
    assert Snapshot.empty().version == versions_digest([])
    assert one.versions() == {"wl/a": "1", "wl/b": "1"}
    assert one.versions((SERVICE_PREFIX,)) == {}


def test_snapshot_is_immutable() -> None:
    snap = Snapshot.build(entries(wl("a", "10.0.0.1")))
    with pytest.raises(TypeError):
        snap.entries["wl/x"] = ("1", wl("x"))  # type: ignore[index]
    with pytest.raises(AttributeError):
        snap.version = "x"  # type: ignore[misc]


def test_misnamed_entries_are_refused() -> None:
    with pytest.raises(ValueError, match="holds a value named"):
        Snapshot.build({"wl/other": ("1", wl("a"))})
    with pytest.raises(ValueError, match="no version"):
        Snapshot.build({"wl/a": ("", wl("a"))})


def test_with_changes() -> None:
    a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
    base = Snapshot.build(entries(a))
    changed = base.with_changes(entries(b), ["wl/a", "wl/never"])
    assert dict(changed.workloads) == {"b": b}
    assert dict(base.workloads) == {"a": a}  # the original is untouched


# -- store -------------------------------------------------------------------------------------


def test_store_apply_notifies_only_on_change() -> None:
    store = StateStore()
    seen: list[Snapshot] = []
    unsubscribe = store.subscribe(seen.append)
    a = wl("a", "10.0.0.1")
    first = store.apply(entries(a))
    assert store.current is first and seen == [first]
    assert store.apply(entries(a)) is first  # same version and value: no change
    assert store.apply({}, ["wl/unknown"]) is first
    assert len(seen) == 1
    moved = dataclasses.replace(a, addresses=("10.0.0.9",))
    second = store.apply(entries(moved, version="2"))
    assert second.find_workload_by_ip("10.0.0.9") == moved
    assert second.find_workload_by_ip("10.0.0.1") is None
    third = store.apply(removals=["wl/a"])
    assert len(third) == 0
    assert seen == [first, second, third]
    assert store.changes == 3
    unsubscribe()
    unsubscribe()
    store.apply(entries(a))
    assert len(seen) == 3


def test_store_refuses_misnamed_upserts_without_changing_anything() -> None:
    store = StateStore()
    with pytest.raises(ValueError):
        store.apply({"wl/a": ("1", wl("a")), "wl/b": ("1", wl("c"))})
    assert len(store.current) == 0


def test_store_upsert_wins_over_removal_of_same_name() -> None:
    store = StateStore()
    a = wl("a", "10.0.0.1")
    store.apply(entries(a))
    snap = store.apply(entries(a, version="2"), ["wl/a"])
    assert snap.entries["wl/a"] == ("2", a)


def test_failing_subscriber_does_not_stop_others(caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore()
    seen: list[str] = []

    def broken(_snapshot: Snapshot) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(lambda snap: seen.append(snap.version))
    store.apply(entries(wl("a")))
    assert len(seen) == 1
    assert "subscriber" in caplog.text


def test_store_replace() -> None:
    a, b = wl("a", "10.0.0.1"), wl("b", "10.0.0.2")
    store = StateStore(Snapshot.build(entries(a)))
    seen: list[Snapshot] = []
    store.subscribe(seen.append)
    assert store.replace(entries(a)) is store.current
    assert seen == []
    snap = store.replace(entries(b))
    assert dict(snap.workloads) == {"b": b}
    assert seen == [snap]
