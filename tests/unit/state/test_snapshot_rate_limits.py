"""The snapshot's rate limit policies: held by key, indexed by their targets, kept current."""

from __future__ import annotations

import dataclasses

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, Action, L7Authorization, PolicyTarget
from ambit.model.rate_limit import RateLimit, RateLimitPolicy
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import Workload
from ambit.state import RATE_LIMIT_PREFIX, Snapshot, StateStore, resource_name
from ambit.state.snapshot import Entry, Resource

WEB = PolicyTarget(SERVICE_TARGET, "default", "web")
API = PolicyTarget(SERVICE_TARGET, "default", "api")
WAYPOINT = PolicyTarget(GATEWAY_TARGET, "default", "waypoint")


def rl(name: str, *targets: PolicyTarget, rate: int = 10) -> RateLimitPolicy:
    return RateLimitPolicy(name, "default", targets or (WEB,), total=RateLimit(rate, rate))


def entries(*values: Resource, version: str = "1") -> dict[str, Entry]:
    return {resource_name(v): (version, v) for v in values}


def test_resource_name() -> None:
    assert resource_name(rl("r")) == RATE_LIMIT_PREFIX + rl("r").key == "rl/default/r"


def test_rate_limits_and_their_index_by_target() -> None:
    a, b, both = rl("a"), rl("b", API), rl("c", WAYPOINT, WEB, WEB)
    snap = Snapshot.build(entries(both, b, a))
    assert dict(snap.rate_limits) == {"default/a": a, "default/b": b, "default/c": both}
    assert snap.rate_limits_for(SERVICE_TARGET, "default", "web") == (a, both), "sorted by key, each once"
    assert snap.rate_limits_for(SERVICE_TARGET, "default", "api") == (b,)
    assert snap.rate_limits_for(GATEWAY_TARGET, "default", "waypoint") == (both,)
    assert snap.rate_limits_for(GATEWAY_TARGET, "default", "web") == (), "the kind is part of the target"
    assert snap.rate_limits_for(SERVICE_TARGET, "other", "web") == ()
    assert snap.rate_limits_for("Pod", "default", "web") == ()
    assert "rate_limits=3" in repr(snap)
    assert snap.versions((RATE_LIMIT_PREFIX,)) == {
        "rl/default/a": "1",
        "rl/default/b": "1",
        "rl/default/c": "1",
    }


def test_rate_limits_live_beside_l7_and_traffic_policies() -> None:
    """Same key, same target, other types: each in its own map and index."""
    l7 = L7Authorization("a", "default", Action.DENY, (WEB,), ())
    traffic = TrafficPolicy("a", "default", "default/web.default.svc.cluster.local")
    limit = rl("a")
    snap = Snapshot.build(entries(l7, traffic, limit))
    assert snap.l7_policies_for(SERVICE_TARGET, "default", "web") == (l7,)
    assert snap.rate_limits_for(SERVICE_TARGET, "default", "web") == (limit,)
    assert dict(snap.traffic_policies) == {"default/a": traffic}
    assert dict(snap.l7_policies) == {"default/a": l7}
    assert dict(snap.rate_limits) == {"default/a": limit}


def _same_as_rebuild(derived: Snapshot) -> None:
    rebuilt = Snapshot.build(derived.entries)
    assert derived.version == rebuilt.version
    assert dict(derived.rate_limits) == dict(rebuilt.rate_limits)
    for target in (WEB, API, WAYPOINT):
        args = (target.kind, target.namespace, target.name)
        assert derived.rate_limits_for(*args) == rebuilt.rate_limits_for(*args)
        assert derived.l7_policies_for(*args) == rebuilt.l7_policies_for(*args)


def test_with_changes_keeps_the_index_current() -> None:
    a = rl("a")
    snap = Snapshot.build({})
    added = snap.with_changes(entries(a), ())
    assert added.rate_limits_for(SERVICE_TARGET, "default", "web") == (a,)
    assert snap.rate_limits_for(SERVICE_TARGET, "default", "web") == (), "the old snapshot is unchanged"
    updated_a = dataclasses.replace(a, total=RateLimit(1, 1))
    updated = added.with_changes({resource_name(a): ("2", updated_a)}, ())
    assert updated.rate_limits_for(SERVICE_TARGET, "default", "web") == (updated_a,)
    moved_a = dataclasses.replace(updated_a, targets=(API,))  # same key, another target
    moved = updated.with_changes({resource_name(a): ("3", moved_a)}, ())
    assert moved.rate_limits_for(SERVICE_TARGET, "default", "web") == ()
    assert moved.rate_limits_for(SERVICE_TARGET, "default", "api") == (moved_a,)
    workload = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    other = moved.with_changes(entries(workload), ())
    assert other._rate_limits_by_target is moved._rate_limits_by_target, "a change elsewhere shares the index"
    l7 = L7Authorization("p", "default", Action.ALLOW, (WEB,), ())
    with_l7 = other.with_changes(entries(l7), ())
    assert with_l7._rate_limits_by_target is other._rate_limits_by_target, "an L7 change leaves it alone"
    assert with_l7.l7_policies_for(SERVICE_TARGET, "default", "web") == (l7,)
    removed = with_l7.with_changes({}, [resource_name(a)])
    assert removed.rate_limits_for(SERVICE_TARGET, "default", "api") == ()
    assert dict(removed.rate_limits) == {}
    for derived in (added, updated, moved, other, with_l7, removed):
        _same_as_rebuild(derived)


def test_store_apply() -> None:
    store = StateStore()
    seen: list[Snapshot] = []
    store.subscribe(seen.append)
    store.apply(entries(rl("a")))
    assert store.current.rate_limits_for(SERVICE_TARGET, "default", "web") == (rl("a"),)
    store.apply(entries(rl("a")))  # same version: no change
    assert len(seen) == 1
    store.apply({}, [resource_name(rl("a"))])
    assert store.current.rate_limits_for(SERVICE_TARGET, "default", "web") == ()
    assert len(seen) == 2
