"""Outbound and inbound routing plans: pure functions of a snapshot, deterministic with a seeded rng."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.model.identity import Identity
from ambit.model.policy import (
    STRICT_POLICY_NAME,
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)
from ambit.model.workload import (
    HealthStatus,
    Locality,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.routing import (
    FLAG_DENY,
    ZTUNNEL_PORTS,
    HbonePlan,
    InboundPlan,
    InboundRefusal,
    OutboundPlan,
    PassthroughPlan,
    RouteError,
    outbound_candidates,
    plan_inbound,
    plan_inbound_plaintext,
    plan_outbound,
)
from ambit.state.snapshot import Snapshot, resource_name

CIDRS = ("10.244.0.0/16", "10.96.0.0/16", "fd00::/48")
KEY = "default/web.default.svc.cluster.local"
VIP = "10.96.0.10"
HERE = Locality("r1", "z1")


# --- builders -------------------------------------------------------------------------------------


def wl(
    uid: str,
    *addresses: str,
    node: str = "n2",
    ns: str = "default",
    sa: str | None = None,
    hbone: bool = True,
    ports: tuple[PortMapping, ...] | None = (PortMapping(80, 8080),),
    service: str | None = KEY,
    healthy: bool = True,
    locality: Locality = HERE,
    capacity: int = 1,
    waypoint: WaypointRef | None = None,
    policies: tuple[str, ...] = (),
) -> Workload:
    return Workload(
        uid=uid,
        name=f"pod-{uid}",
        namespace=ns,
        service_account=sa or f"sa-{uid}",
        node=node,
        addresses=addresses,
        tunnel_protocol=TunnelProtocol.HBONE if hbone else TunnelProtocol.NONE,
        status=HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY,
        waypoint=waypoint,
        services=((service, ports),) if service is not None and ports is not None else (),
        authorization_policies=policies,
        locality=locality,
        capacity=capacity,
    )


def svc(
    *vips: str,
    ports: tuple[ServicePort, ...] = (ServicePort(80, 8080),),
    waypoint: WaypointRef | None = None,
) -> Service:
    return Service("web", "default", "web.default.svc.cluster.local", vips or (VIP,), ports, waypoint)


def snap(*values: Workload | Service | Authorization) -> Snapshot:
    return Snapshot.build({resource_name(v): ("1", v) for v in values})


SOURCE = wl("src", "10.244.1.2", node="n1", service=None)


def out(
    snapshot: Snapshot,
    dst: str,
    port: int,
    *,
    seed: int = 1,
    source: Workload = SOURCE,
    exclude: Collection[str] = (),
) -> OutboundPlan | RouteError:
    rng = random.Random(seed)
    return plan_outbound(snapshot, source, dst, port, cluster_cidrs=CIDRS, rng=rng, exclude=exclude)


def candidates(
    snapshot: Snapshot,
    dst: str,
    port: int,
    *,
    seed: int = 1,
    exclude: Collection[str] = (),
    ejected: Callable[[Sequence[str]], Collection[str]] = lambda _uids: (),
) -> list[OutboundPlan] | RouteError:
    rng = random.Random(seed)
    return outbound_candidates(
        snapshot, SOURCE, dst, port, cluster_cidrs=CIDRS, rng=rng, exclude=exclude, ejected=ejected
    )


def hbone(plan: object) -> HbonePlan:
    assert isinstance(plan, HbonePlan), plan
    return plan


def error(plan: object) -> str:
    assert isinstance(plan, RouteError), plan
    return plan.reason


# --- service VIP -----------------------------------------------------------------------------------


def test_vip_to_endpoint_over_hbone() -> None:
    ep = wl("a", "10.244.2.5")
    s = svc()
    plan = hbone(out(snap(SOURCE, ep, s), VIP, 80))
    assert plan == HbonePlan(ep, ("10.244.2.5", 15008), "10.244.2.5:8080", ep.identity, s)
    assert plan.destination_identity == Identity("cluster.local", "default", "sa-a")


def test_vip_to_non_mesh_endpoint_is_plain_tcp() -> None:
    ep = wl("a", "10.244.2.5", hbone=False)
    s = svc()
    assert out(snap(SOURCE, ep, s), VIP, 80) == PassthroughPlan(("10.244.2.5", 8080), s, ep)


@pytest.mark.parametrize(
    ("service_port", "mapping", "expected"),
    [
        pytest.param(ServicePort(80, 8080), (PortMapping(80, 8080),), 8080, id="numeric, mapped"),
        pytest.param(ServicePort(80, 8080), (), 8080, id="numeric, no mapping: the service's target"),
        pytest.param(
            ServicePort(80, 0, "http"), (PortMapping(80, 9000),), 9000, id="named, resolved per workload"
        ),
        pytest.param(ServicePort(80, 0, "http"), (), None, id="named, unresolved: not served"),
        pytest.param(ServicePort(80), (), 80, id="no target at all: the port itself"),
        pytest.param(ServicePort(80, 8080), (PortMapping(81, 9999),), 8080, id="mapping for another port"),
        pytest.param(ServicePort(80, 8080), (PortMapping(80, 0),), 8080, id="zero mapping ignored"),
    ],
)
def test_target_ports(
    service_port: ServicePort, mapping: tuple[PortMapping, ...], expected: int | None
) -> None:
    ep = wl("a", "10.244.2.5", ports=mapping)
    plan = out(snap(SOURCE, ep, svc(ports=(service_port,))), VIP, 80)
    if expected is None:
        assert "no usable endpoint" in error(plan)
    else:
        assert hbone(plan).authority == f"10.244.2.5:{expected}"


def test_named_target_port_differs_per_endpoint() -> None:
    a = wl("a", "10.244.2.5", ports=(PortMapping(80, 9000),), capacity=1)
    b = wl("b", "10.244.2.6", ports=(PortMapping(80, 9001),), capacity=1)
    s = svc(ports=(ServicePort(80, 0, "http"),))
    seen = {hbone(out(snap(SOURCE, a, b, s), VIP, 80, seed=i)).authority for i in range(40)}
    assert seen == {"10.244.2.5:9000", "10.244.2.6:9001"}


def test_vip_unknown_port_refused() -> None:
    assert "no port 81" in error(out(snap(SOURCE, wl("a", "10.244.2.5"), svc()), VIP, 81))


def test_vip_without_endpoints_refused_never_passed_through() -> None:
    reason = error(out(snap(SOURCE, svc()), VIP, 80))
    assert KEY in reason
    assert "no usable endpoint" in reason


@pytest.mark.parametrize(
    "ep",
    [
        pytest.param(wl("a", "10.244.2.5", healthy=False), id="unhealthy"),
        pytest.param(wl("a"), id="no address"),
        pytest.param(wl("a", "not-an-ip"), id="unparsable address"),
        pytest.param(wl("a", "10.244.2.5", sa="bad/sa"), id="HBONE endpoint without a valid identity"),
    ],
)
def test_unusable_endpoints_skipped(ep: Workload) -> None:
    good = wl("good", "10.244.3.3", locality=Locality("far"))
    s = svc()
    for seed in range(20):
        assert hbone(out(snap(SOURCE, ep, good, s), VIP, 80, seed=seed)).endpoint == good
    assert "no usable endpoint" in error(out(snap(SOURCE, ep, s), VIP, 80))


WP_REF = WaypointRef("default", "waypoint.default.svc.cluster.local")
WP_KEY = "default/waypoint.default.svc.cluster.local"


def replica(uid: str, ip: str, healthy: bool = True) -> Workload:
    """A waypoint replica: a workload of the waypoint's Service, speaking HBONE itself."""
    return wl(uid, ip, sa="waypoint", service=WP_KEY, healthy=healthy)


def waypoint_service() -> Service:
    return Service("waypoint", "default", WP_REF.hostname, ("10.96.0.99",), (ServicePort(15008),))


def test_waypoint_bound_service_goes_to_a_replica_with_the_original_authority() -> None:
    r1, r2 = replica("wp-1", "10.244.1.7"), replica("wp-2", "10.244.2.7")
    s = snap(SOURCE, wl("a", "10.244.2.5"), svc(waypoint=WP_REF), waypoint_service(), r1, r2)
    chosen = {hbone(out(s, VIP, 80, seed=seed)).endpoint.uid for seed in range(40)}
    assert chosen == {"wp-1", "wp-2"}  # balanced over both replicas, never the app endpoint "a"
    plan = hbone(out(s, VIP, 80))
    assert plan.authority == f"{VIP}:80" and plan.address[1] == 15008
    assert plan.waypoint == WP_REF and plan.service is not None and plan.service.key == KEY
    assert plan.destination_identity == plan.endpoint.identity


def test_waypoint_without_a_ready_replica_fails_closed() -> None:
    s = snap(SOURCE, wl("a", "10.244.2.5"), svc(waypoint=WP_REF), waypoint_service())
    assert (
        error(out(s, VIP, 80))
        == f"service {KEY} is bound to waypoint {WP_KEY}, which has no ready replica (fail closed)"
    )
    s = snap(
        SOURCE,
        wl("a", "10.244.2.5"),
        svc(waypoint=WP_REF),
        waypoint_service(),
        replica("wp-1", "10.244.1.7", healthy=False),
    )
    assert "no ready replica" in error(candidates(s, VIP, 80))


def test_waypoint_candidates_put_ejected_replicas_last() -> None:
    r1, r2 = replica("wp-1", "10.244.1.7"), replica("wp-2", "10.244.2.7")
    s = snap(SOURCE, svc(waypoint=WP_REF), waypoint_service(), r1, r2)
    for seed in range(20):
        plans = candidates(s, VIP, 80, seed=seed, ejected=lambda uids: {"wp-1"} & set(uids))
        assert [p.endpoint.uid for p in plans if isinstance(p, HbonePlan)] == ["wp-2", "wp-1"]
    unejected = {hbone(candidates(s, VIP, 80, seed=seed)[0]).endpoint.uid for seed in range(40)}  # type: ignore[index]
    assert unejected == {"wp-1", "wp-2"}  # control: without ejection either may come first


def test_endpoint_workload_waypoint_not_used_for_service_traffic() -> None:
    ep = wl("a", "10.244.2.5", waypoint=WaypointRef("default", "wp.default.svc.cluster.local"))
    assert hbone(out(snap(SOURCE, ep, svc()), VIP, 80)).endpoint == ep


def test_vip_lookup_is_canonical_and_unmaps_ipv4() -> None:
    ep = wl("a", "10.244.2.5")
    assert hbone(out(snap(SOURCE, ep, svc()), "::ffff:10.96.0.10", 80)).endpoint == ep


# --- locality and weights ----------------------------------------------------------------------------

SAME_NODE = wl("node", "10.244.1.9", node="n1", locality=Locality("r1", "z9"))
SAME_ZONE = wl("zone", "10.244.2.9", node="n2", locality=Locality("r1", "z1"))
SAME_REGION = wl("region", "10.244.3.9", node="n3", locality=Locality("r1", "z2"))
ELSEWHERE = wl("far", "10.244.4.9", node="n4", locality=Locality("r2", "z1"))
LADDER = snap(SOURCE, SAME_NODE, SAME_ZONE, SAME_REGION, ELSEWHERE, svc())
SOURCE_LOCAL = wl("src", "10.244.1.2", node="n1", service=None, locality=Locality("r1", "z1"))


@pytest.mark.parametrize(
    ("exclude", "expected"),
    [
        ((), SAME_NODE),
        (("node",), SAME_ZONE),
        (("node", "zone"), SAME_REGION),
        (("node", "zone", "region"), ELSEWHERE),
    ],
)
def test_locality_preference_and_fallback(exclude: tuple[str, ...], expected: Workload) -> None:
    for seed in range(25):
        plan = out(LADDER, VIP, 80, seed=seed, source=SOURCE_LOCAL, exclude=exclude)
        assert hbone(plan).endpoint == expected


def test_excluding_everything_refuses() -> None:
    plan = out(LADDER, VIP, 80, source=SOURCE_LOCAL, exclude={"node", "zone", "region", "far"})
    assert "no usable endpoint" in error(plan)


def test_empty_locality_is_no_preference() -> None:
    nowhere = Locality()
    source = wl("src", "10.244.1.2", node="n1", service=None, locality=nowhere)
    a = wl("a", "10.244.2.5", locality=nowhere)
    b = wl("b", "10.244.2.6", locality=Locality("r1", "z1"))
    s = snap(source, a, b, svc())
    chosen = Counter(hbone(out(s, VIP, 80, seed=i, source=source)).endpoint.uid for i in range(200))
    assert set(chosen) == {"a", "b"}


def test_weighted_by_capacity() -> None:
    heavy = wl("heavy", "10.244.2.5", capacity=3)
    light = wl("light", "10.244.2.6", capacity=1)
    s = snap(SOURCE, heavy, light, svc())
    rng = random.Random(7)
    draws = 4000
    picks = Counter(
        hbone(plan_outbound(s, SOURCE, VIP, 80, cluster_cidrs=CIDRS, rng=rng)).endpoint.uid
        for _ in range(draws)
    )
    assert abs(picks["heavy"] / draws - 0.75) < 0.03


def test_capacity_zero_is_used_only_as_a_last_resort() -> None:
    drained = wl("drained", "10.244.1.9", node="n1", capacity=0)  # same node, but drained
    far = wl("far", "10.244.4.9", node="n4", locality=Locality("r2"))
    s = snap(SOURCE, drained, far, svc())
    assert {hbone(out(s, VIP, 80, seed=i)).endpoint.uid for i in range(30)} == {"far"}
    assert hbone(out(s, VIP, 80, exclude={"far"})).endpoint.uid == "drained"
    both_drained = snap(SOURCE, drained, wl("d2", "10.244.1.8", node="n1", capacity=0), svc())
    assert {hbone(out(both_drained, VIP, 80, seed=i)).endpoint.uid for i in range(40)} == {"drained", "d2"}


def test_same_seed_same_choice() -> None:
    s = snap(SOURCE, *(wl(f"e{i}", f"10.244.2.{i}") for i in range(1, 9)), svc())
    assert out(s, VIP, 80, seed=42) == out(s, VIP, 80, seed=42)


# --- candidates --------------------------------------------------------------------------------------


def test_candidates_ordered_by_locality() -> None:
    sick = wl("sick", "10.244.5.5", healthy=False)
    s = snap(SOURCE_LOCAL, SAME_NODE, SAME_ZONE, SAME_REGION, ELSEWHERE, sick, svc())
    for seed in range(10):
        plans = outbound_candidates(s, SOURCE_LOCAL, VIP, 80, cluster_cidrs=CIDRS, rng=random.Random(seed))
        assert isinstance(plans, list)
        assert [hbone(p).endpoint.uid for p in plans] == ["node", "zone", "region", "far"]


def test_candidates_weighted_order_within_a_rank() -> None:
    heavy = wl("heavy", "10.244.2.5", capacity=3)
    light = wl("light", "10.244.2.6", capacity=1)
    other = wl("other", "10.244.9.9", locality=Locality("r9"))
    s = snap(SOURCE, heavy, light, other, svc())
    rng = random.Random(11)
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        plans = outbound_candidates(s, SOURCE, VIP, 80, cluster_cidrs=CIDRS, rng=rng)
        assert isinstance(plans, list)
        uids = [hbone(p).endpoint.uid for p in plans]
        assert sorted(uids[:2]) == ["heavy", "light"]
        assert uids[2] == "other"
        firsts[uids[0]] += 1
    assert abs(firsts["heavy"] / 4000 - 0.75) < 0.03


def test_candidates_exclude() -> None:
    plans = candidates(LADDER, VIP, 80, exclude={"node", "far"})
    assert isinstance(plans, list)
    assert {hbone(p).endpoint.uid for p in plans} == {"zone", "region"}


def test_candidates_single_for_pod_and_external() -> None:
    ep = wl("a", "10.244.2.5")
    assert candidates(snap(SOURCE, ep), "10.244.2.5", 8080) == [out(snap(SOURCE, ep), "10.244.2.5", 8080)]
    assert candidates(snap(SOURCE), "1.1.1.1", 443) == [PassthroughPlan(("1.1.1.1", 443), None, None)]


def test_candidates_errors() -> None:
    assert "no usable endpoint" in error(candidates(snap(SOURCE, svc()), VIP, 80))
    assert "inside the cluster" in error(candidates(snap(SOURCE), "10.244.9.9", 80))


# --- pod addresses, unknown and external ---------------------------------------------------------------


def test_pod_ip_hbone() -> None:
    ep = wl("a", "10.244.2.5", service=None)
    assert out(snap(SOURCE, ep), "10.244.2.5", 9090) == HbonePlan(
        ep, ("10.244.2.5", 15008), "10.244.2.5:9090", ep.identity, None
    )


def test_pod_ip_not_enrolled_is_plain_tcp() -> None:
    ep = wl("a", "10.244.2.5", hbone=False, service=None)
    assert out(snap(SOURCE, ep), "10.244.2.5", 9090) == PassthroughPlan(("10.244.2.5", 9090), None, ep)


def test_pod_with_workload_waypoint_goes_through_it_with_the_pod_authority() -> None:
    ep = wl("a", "10.244.2.5", waypoint=WP_REF)
    assert error(out(snap(SOURCE, ep), "10.244.2.5", 8080)).startswith(
        f"workload a is bound to waypoint {WP_KEY}"
    )
    plan = hbone(out(snap(SOURCE, ep, waypoint_service(), replica("wp-1", "10.244.1.7")), "10.244.2.5", 8080))
    assert plan.endpoint.uid == "wp-1" and plan.authority == "10.244.2.5:8080" and plan.service is None


def test_pod_already_tried_refused() -> None:
    ep = wl("a", "10.244.2.5")
    assert "already tried" in error(out(snap(SOURCE, ep), "10.244.2.5", 8080, exclude={"a"}))


def test_pod_with_invalid_identity_refused() -> None:
    ep = wl("a", "10.244.2.5", sa="bad/sa")
    assert "identity" in error(out(snap(SOURCE, ep), "10.244.2.5", 8080))


@pytest.mark.parametrize("dst", ["10.244.9.9", "10.96.5.5", "fd00::99"])
def test_unknown_inside_cluster_refused(dst: str) -> None:
    assert error(out(snap(SOURCE, svc()), dst, 80)).startswith("unknown destination inside the cluster")


@pytest.mark.parametrize("dst", ["93.184.216.34", "172.30.0.10", "2001:db8::1"])
def test_external_passthrough(dst: str) -> None:
    assert out(snap(SOURCE), dst, 443) == PassthroughPlan((dst, 443), None, None)


def test_external_mapped_address_unmapped() -> None:
    assert out(snap(SOURCE), "::ffff:93.184.216.34", 443) == PassthroughPlan(
        ("93.184.216.34", 443), None, None
    )


def test_unparsable_cluster_cidr_fails_closed() -> None:
    ep = wl("a", "10.244.2.5", service=None)
    s = snap(SOURCE, ep)
    rng = random.Random(1)
    assert "do not parse" in error(plan_outbound(s, SOURCE, "8.8.8.8", 53, cluster_cidrs=("nope",), rng=rng))
    assert isinstance(plan_outbound(s, SOURCE, "10.244.2.5", 80, cluster_cidrs=("nope",), rng=rng), HbonePlan)


def test_source_not_enrolled_refused() -> None:
    source = wl("src", "10.244.1.2", hbone=False, service=None)
    assert "not enrolled" in error(out(snap(source), "93.184.216.34", 443, source=source))


@pytest.mark.parametrize(("dst", "port"), [("garbage", 80), ("10.244.2.5", 0), ("10.244.2.5", 65536)])
def test_malformed_destination_refused(dst: str, port: int) -> None:
    error(out(snap(SOURCE, wl("a", "10.244.2.5")), dst, port))


# --- IPv6 ---------------------------------------------------------------------------------------------


def test_ipv6_pod_authority_in_brackets() -> None:
    ep = wl("a", "fd00::5", service=None)
    plan = hbone(out(snap(SOURCE, ep), "fd00:0:0::5", 8080))
    assert plan.address == ("fd00::5", 15008)
    assert plan.authority == "[fd00::5]:8080"


def test_dual_stack_vip_picks_the_matching_family() -> None:
    ep = wl("a", "10.244.2.5", "fd00::5")
    s = snap(SOURCE, ep, svc(VIP, "fd00:96::10"))
    assert hbone(out(s, "fd00:96::10", 80)).authority == "[fd00::5]:8080"
    assert hbone(out(s, VIP, 80)).authority == "10.244.2.5:8080"
    v4_only = wl("b", "10.244.2.6")
    assert hbone(out(snap(SOURCE, v4_only, svc(VIP, "fd00:96::10")), "fd00:96::10", 80)).authority == (
        "10.244.2.6:8080"
    )


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=45), st.integers(min_value=-5, max_value=70000))
def test_plan_outbound_never_raises(dst: str, port: int) -> None:
    result = out(LADDER, dst, port)
    assert isinstance(result, HbonePlan | PassthroughPlan | RouteError)


# --- inbound --------------------------------------------------------------------------------------------

CURL = Identity("cluster.local", "default", "curl")
OTHER = Identity("cluster.local", "prod", "api")
LOCAL = wl("local", "10.244.2.5", "fd00::5", service=None)
ALLOW_CURL = Authorization(
    "allow-curl",
    "default",
    Scope.NAMESPACE,
    Action.ALLOW,
    (Rule((Clause((Match(principals=(StringMatch.parse("cluster.local/ns/default/sa/curl"),)),)),)),),
)
STRICT = Authorization(
    STRICT_POLICY_NAME,
    "istio-system",
    Scope.WORKLOAD_SELECTOR,
    Action.DENY,
    (Rule((Clause((Match(not_principals=(StringMatch(MatchKind.PRESENCE),)),)),)),),
)
STRICT_KEY = f"istio-system/{STRICT_POLICY_NAME}"


def inbound(
    snapshot: Snapshot, target: str, port: int, peer: Identity | None = CURL
) -> InboundPlan | InboundRefusal:
    return plan_inbound(snapshot, LOCAL, target, port, peer=peer, source_ip="10.244.1.2")


def test_inbound_allowed_without_policy() -> None:
    plan = inbound(snap(LOCAL), "10.244.2.5", 8080)
    assert isinstance(plan, InboundPlan)
    assert plan.workload == LOCAL
    assert plan.upstream == ("10.244.2.5", 8080)
    assert plan.decision.allowed


def test_inbound_ip_mismatch() -> None:
    refusal = inbound(snap(LOCAL), "10.244.2.6", 8080)
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 400
    assert refusal.reason.startswith("IP mismatch")
    assert inbound(snap(LOCAL), "garbage", 8080) == InboundRefusal(
        400, "IP mismatch: garbage is not an address of local"
    )


def test_inbound_ipv6_target_compared_canonically() -> None:
    plan = inbound(snap(LOCAL), "fd00:0::5", 8080)
    assert isinstance(plan, InboundPlan)
    assert plan.upstream == ("fd00::5", 8080)


@pytest.mark.parametrize("port", sorted(ZTUNNEL_PORTS))
def test_inbound_to_a_ztunnel_port_refused(port: int) -> None:
    refusal = inbound(snap(LOCAL), "10.244.2.5", port)
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 400
    assert "ztunnel port" in refusal.reason


@pytest.mark.parametrize("port", [0, -1, 65536])
def test_inbound_port_out_of_range(port: int) -> None:
    refusal = inbound(snap(LOCAL), "10.244.2.5", port)
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 400


def test_inbound_denied_401_with_reason() -> None:
    refusal = inbound(snap(LOCAL, ALLOW_CURL), "10.244.2.5", 8080, peer=OTHER)
    assert refusal == InboundRefusal(401, "no ALLOW policy matched", FLAG_DENY)


def test_inbound_allowed_by_policy() -> None:
    plan = inbound(snap(LOCAL, ALLOW_CURL), "10.244.2.5", 8080)
    assert isinstance(plan, InboundPlan)
    assert plan.decision.policy == "default/allow-curl"


def test_inbound_unknown_workload_503() -> None:
    refusal = inbound(snap(), "10.244.2.5", 8080)
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 503


def test_inbound_uses_the_snapshots_current_workload() -> None:
    strict_now = wl("local", "10.244.2.5", service=None, policies=(STRICT_KEY,))
    refusal = plan_inbound_plaintext(snap(strict_now, STRICT), LOCAL, 8080, source_ip="10.244.1.2")
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 401


def test_plaintext_refused_under_strict() -> None:
    local = wl("local", "10.244.2.5", service=None, policies=(STRICT_KEY,))
    refusal = plan_inbound_plaintext(snap(local, STRICT), local, 8080, source_ip="10.244.1.2")
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 401
    assert STRICT_KEY in refusal.reason
    mtls = plan_inbound(snap(local, STRICT), local, "10.244.2.5", 8080, peer=CURL, source_ip="10.244.1.2")
    assert isinstance(mtls, InboundPlan)


def test_plaintext_allowed_under_permissive() -> None:
    plan = plan_inbound_plaintext(snap(LOCAL, STRICT), LOCAL, 8080, source_ip="10.244.1.2")
    assert isinstance(plan, InboundPlan)
    assert plan.upstream == ("10.244.2.5", 8080)
    assert plan.decision.allowed


def test_plaintext_picks_the_source_family() -> None:
    plan = plan_inbound_plaintext(snap(LOCAL), LOCAL, 8080, source_ip="fd00::9")
    assert isinstance(plan, InboundPlan)
    assert plan.upstream == ("fd00::5", 8080)


def test_plaintext_refused_by_allow_policy_needing_identity() -> None:
    refusal = plan_inbound_plaintext(snap(LOCAL, ALLOW_CURL), LOCAL, 8080, source_ip="10.244.1.2")
    assert refusal == InboundRefusal(401, "no ALLOW policy matched", FLAG_DENY)


def test_plaintext_to_a_ztunnel_port_refused() -> None:
    refusal = plan_inbound_plaintext(snap(LOCAL), LOCAL, 15008, source_ip="10.244.1.2")
    assert isinstance(refusal, InboundRefusal)
    assert refusal.status == 400


def test_the_waypoint_balances_over_every_endpoint_without_locality() -> None:
    near, far = (
        wl("near", "10.244.1.9", node="n1"),
        wl("far", "10.244.3.3", node="n3", locality=Locality("far")),
    )
    s = snap(SOURCE, near, far, svc())

    def first(seed: int, at_waypoint: bool) -> str:
        rng = random.Random(seed)
        plans = outbound_candidates(s, SOURCE, VIP, 80, cluster_cidrs=CIDRS, rng=rng, at_waypoint=at_waypoint)
        assert not isinstance(plans, RouteError)
        return hbone(plans[0]).endpoint.uid

    assert {first(seed, True) for seed in range(40)} == {"near", "far"}
    assert {first(seed, False) for seed in range(40)} == {"near"}  # control: a ztunnel prefers its node
