"""``Snapshot.with_changes`` updates its indexes incrementally: it must equal a full rebuild."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    Authorization,
    L7Authorization,
    PolicyTarget,
    Scope,
)
from ambit.model.workload import HealthStatus, PortMapping, Service, ServicePort, Workload
from ambit.state import Snapshot, resource_name
from ambit.state.snapshot import Entry, Resource

# Small pools so that addresses, VIPs and service keys collide often (with non-canonical spellings).
ADDRESSES = ["10.0.0.1", "10.0.0.2", "fd00::1", "fd00:0::1", "fd00::2", "not-an-ip"]
NAMESPACES = ["default", "other"]
SERVICE_NAMES = ["web", "api", "db"]
SERVICE_KEYS = [f"{ns}/{name}.{ns}.svc.cluster.local" for ns in NAMESPACES for name in SERVICE_NAMES]
POLICY_NAMES = ["p1", "p2"]
POLICY_KEYS = [f"{ns}/{name}" for ns in NAMESPACES for name in POLICY_NAMES]

workloads = st.builds(
    lambda uid, ns, addresses, status, services, policies: Workload(
        uid=uid,
        name=f"pod-{uid}",
        namespace=ns,
        service_account="sa",
        node="n1",
        addresses=tuple(addresses),
        status=status,
        services=tuple((key, (PortMapping(80, 8080),)) for key in services),
        authorization_policies=tuple(policies),
    ),
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.sampled_from(NAMESPACES),
    st.lists(st.sampled_from(ADDRESSES), max_size=3),
    st.sampled_from(list(HealthStatus)),
    st.lists(st.sampled_from(SERVICE_KEYS), max_size=3),
    st.lists(st.sampled_from(POLICY_KEYS), max_size=2),
)
services = st.builds(
    lambda name, ns, vips: Service(
        name, ns, f"{name}.{ns}.svc.cluster.local", tuple(vips), (ServicePort(80, 8080),)
    ),
    st.sampled_from(SERVICE_NAMES),
    st.sampled_from(NAMESPACES),
    st.lists(st.sampled_from(ADDRESSES), max_size=3),
)
policies = st.builds(
    lambda name, ns, scope: Authorization(name, ns, scope, Action.ALLOW, ()),
    st.sampled_from(POLICY_NAMES),
    st.sampled_from(NAMESPACES),
    st.sampled_from(list(Scope)),
)
TARGETS = [
    PolicyTarget(kind, ns, name)
    for kind in (GATEWAY_TARGET, SERVICE_TARGET)
    for ns in NAMESPACES
    for name in ("waypoint", "web")
]
l7_policies = st.builds(
    lambda name, ns, targets: L7Authorization(name, ns, Action.DENY, tuple(targets), ()),
    st.sampled_from(POLICY_NAMES),
    st.sampled_from(NAMESPACES),
    st.lists(st.sampled_from(TARGETS), max_size=3),
)
resources: st.SearchStrategy[Resource] = st.one_of(workloads, services, policies, l7_policies)
ALL_NAMES = (
    [f"wl/{uid}" for uid in "abcde"]
    + [f"svc/{key}" for key in SERVICE_KEYS]
    + [f"ap/{key}" for key in POLICY_KEYS]
    + [f"l7/{key}" for key in POLICY_KEYS]
)
changes = st.tuples(
    st.lists(st.tuples(resources, st.sampled_from(["1", "2", "3"])), max_size=4),
    st.lists(st.sampled_from(ALL_NAMES), max_size=3),
)


def assert_same(derived: Snapshot, rebuilt: Snapshot) -> None:
    assert dict(derived.entries) == dict(rebuilt.entries)
    assert derived.version == rebuilt.version
    assert dict(derived.workloads) == dict(rebuilt.workloads)
    assert dict(derived.services) == dict(rebuilt.services)
    assert dict(derived.policies) == dict(rebuilt.policies)
    assert dict(derived.l7_policies) == dict(rebuilt.l7_policies)
    for target in TARGETS:
        args = (target.kind, target.namespace, target.name)
        assert derived.l7_policies_for(*args) == rebuilt.l7_policies_for(*args)
    for slot in Snapshot.__slots__:
        if slot != "_entries":
            assert getattr(derived, slot) == getattr(rebuilt, slot), slot
    for address in ADDRESSES:
        assert derived.find_workload_by_ip(address) == rebuilt.find_workload_by_ip(address)
        assert derived.find_service_by_vip(address) == rebuilt.find_service_by_vip(address)
    for key in SERVICE_KEYS:
        assert derived.endpoints(key) == rebuilt.endpoints(key)
    for workload in list(rebuilt.workloads.values()):
        assert derived.policies_for(workload) == rebuilt.policies_for(workload)


@settings(max_examples=300, deadline=None)
@given(st.lists(changes, min_size=1, max_size=8))
def test_with_changes_equals_a_full_rebuild(
    sequence: list[tuple[list[tuple[Resource, str]], list[str]]],
) -> None:
    snapshot = Snapshot.empty()
    for upsert_list, removals in sequence:
        upserts: dict[str, Entry] = {resource_name(value): (version, value) for value, version in upsert_list}
        derived = snapshot.with_changes(upserts, removals)
        expected = dict(snapshot.entries)
        for name in removals:
            expected.pop(name, None)
        expected.update(upserts)
        assert_same(derived, Snapshot.build(expected))
        snapshot = derived


def test_shared_address_after_changes_prefers_healthy_then_lowest_uid() -> None:
    def wl(uid: str, status: HealthStatus) -> Workload:
        return Workload(uid, f"pod-{uid}", "default", "sa", "n1", ("10.0.0.1",), status=status)

    snap = Snapshot.build({"wl/b": ("1", wl("b", HealthStatus.HEALTHY))})
    snap = snap.with_changes({"wl/a": ("1", wl("a", HealthStatus.UNHEALTHY))}, ())
    assert snap.find_workload_by_ip("10.0.0.1") == wl("b", HealthStatus.HEALTHY)
    snap = snap.with_changes({"wl/b": ("2", wl("b", HealthStatus.UNHEALTHY))}, ())
    assert snap.find_workload_by_ip("10.0.0.1") == wl("a", HealthStatus.UNHEALTHY)
    snap = snap.with_changes({}, ["wl/a"])
    assert snap.find_workload_by_ip("10.0.0.1") == wl("b", HealthStatus.UNHEALTHY)
