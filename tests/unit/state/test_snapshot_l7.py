"""The snapshot's L7 policies: held by name, indexed by the Gateways and Services they target."""

from __future__ import annotations

import pytest

from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    Authorization,
    L7Authorization,
    PolicyTarget,
    Scope,
)
from ambit.model.workload import Workload
from ambit.state import L7_POLICY_PREFIX, Snapshot, StateStore, resource_name
from ambit.state.snapshot import Entry, Resource

GW = PolicyTarget(GATEWAY_TARGET, "default", "waypoint")
WEB = PolicyTarget(SERVICE_TARGET, "default", "web")
OTHER_GW = PolicyTarget(GATEWAY_TARGET, "other", "waypoint")


def l7(
    name: str, *targets: PolicyTarget, ns: str = "default", action: Action = Action.ALLOW
) -> L7Authorization:
    return L7Authorization(name, ns, action, targets, ())


def entries(*values: Resource, version: str = "1") -> dict[str, Entry]:
    return {resource_name(v): (version, v) for v in values}


def test_resource_name() -> None:
    assert resource_name(l7("p", GW)) == L7_POLICY_PREFIX + "default/p" == "l7/default/p"


def test_policy_target_kinds() -> None:
    with pytest.raises(ValueError, match="policy target kind 'ServiceEntry'"):
        PolicyTarget("ServiceEntry", "default", "x")


def test_l7_policies_and_index() -> None:
    b = l7("b", GW, WEB)
    a = l7("a", WEB, WEB)  # a target listed twice indexes the policy once
    c = l7("c", OTHER_GW, ns="other")
    none = l7("none")
    snap = Snapshot.build(entries(b, c, a, none))
    assert dict(snap.l7_policies) == {"default/a": a, "default/b": b, "other/c": c, "default/none": none}
    assert snap.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (b,)
    assert snap.l7_policies_for(SERVICE_TARGET, "default", "web") == (a, b), "sorted by key"
    assert snap.l7_policies_for(GATEWAY_TARGET, "other", "waypoint") == (c,)
    assert snap.l7_policies_for(SERVICE_TARGET, "default", "waypoint") == (), "the kind is part of the key"
    assert snap.l7_policies_for(GATEWAY_TARGET, "default", "nope") == ()
    assert snap.l7_policies_for("ServiceEntry", "default", "web") == ()
    # kept apart from the L4 view
    assert dict(snap.policies) == {}
    assert "l7_policies=4" in repr(snap)


def test_l4_and_l7_policies_of_the_same_name_live_side_by_side() -> None:
    l4 = Authorization("p", "default", Scope.NAMESPACE, Action.DENY, ())
    policy = l7("p", GW)
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    snap = Snapshot.build(entries(l4, policy, workload))
    assert dict(snap.policies) == {"default/p": l4}
    assert dict(snap.l7_policies) == {"default/p": policy}
    assert snap.policies_for(workload) == (l4,)
    assert snap.versions((L7_POLICY_PREFIX,)) == {"l7/default/p": "1"}


def test_with_changes_updates_the_index() -> None:
    a, b = l7("a", GW), l7("b", GW, WEB)
    snap = Snapshot.build(entries(a))
    added = snap.with_changes(entries(b), ())
    assert added.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (a, b)
    assert snap.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (a,), (
        "the old snapshot is unchanged"
    )
    retargeted = added.with_changes(entries(l7("a", WEB), version="2"), ())
    assert retargeted.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (b,)
    assert retargeted.l7_policies_for(SERVICE_TARGET, "default", "web") == (l7("a", WEB), b)
    removed = retargeted.with_changes({}, ["l7/default/b"])
    assert removed.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == ()
    assert dict(removed.l7_policies) == {"default/a": l7("a", WEB)}
    # a change elsewhere shares the L7 index
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    other = removed.with_changes(entries(workload), ())
    assert other.l7_policies_for(SERVICE_TARGET, "default", "web") == (l7("a", WEB),)
    for derived in (added, retargeted, removed, other):
        rebuilt = Snapshot.build(derived.entries)
        assert derived.version == rebuilt.version
        assert dict(derived.l7_policies) == dict(rebuilt.l7_policies)
        for target in (GW, WEB, OTHER_GW):
            assert derived.l7_policies_for(target.kind, target.namespace, target.name) == (
                rebuilt.l7_policies_for(target.kind, target.namespace, target.name)
            )


def test_store_apply() -> None:
    store = StateStore()
    seen: list[Snapshot] = []
    store.subscribe(seen.append)
    store.apply(entries(l7("a", GW)))
    assert store.current.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (l7("a", GW),)
    store.apply(entries(l7("a", GW)))  # same version: no change
    assert len(seen) == 1
    store.apply({}, ["l7/default/a"])
    assert store.current.l7_policies == {}
    assert len(seen) == 2
