"""The pure admission steps in routing: who an inbound HBONE CONNECT is from (``inbound_source``: the
identity, the source IP that counts — ``forwarded`` only from the pod's waypoint — and the service the
client addressed), and refusals as one value (status, reason, response flag)."""

from __future__ import annotations

import pytest

from ambit.model.identity import Identity, NodeIdentity
from ambit.model.workload import PortMapping, Service, ServicePort, TunnelProtocol, WaypointRef, Workload
from ambit.routing import (
    FLAG_CONNECT,
    FLAG_DENY,
    FLAG_NONE,
    InboundRefusal,
    InboundSource,
    answer_refusal,
    inbound_source,
    plan_inbound_plaintext,
    service_for,
    source_ip_for,
    waypoint_identities,
)
from ambit.state.snapshot import Snapshot, resource_name

KEY = "default/web.default.svc.cluster.local"
WAYPOINT_REF = WaypointRef("default", "waypoint.default.svc.cluster.local")
WAYPOINT_KEY = "default/waypoint.default.svc.cluster.local"


def wl(uid: str, ip: str, sa: str, **kw: object) -> Workload:
    return Workload(uid, uid, "default", sa, "n1", (ip,), TunnelProtocol.HBONE, **kw)  # type: ignore[arg-type]


LOCAL = wl("b", "10.244.2.3", "web", services=((KEY, (PortMapping(80, 8080),)),), waypoint=WAYPOINT_REF)
WAYPOINT = wl("wp", "10.244.3.4", "waypoint", services=((WAYPOINT_KEY, (PortMapping(15008, 15008),)),))
# bound to the waypoint only through its service
VIA_SERVICE = wl("c", "10.244.2.4", "api", services=((WAYPOINT_KEY + "-bound", (PortMapping(80, 8080),)),))
WEB = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),))
BOUND = Service(
    "bound",
    "default",
    "waypoint.default.svc.cluster.local-bound",
    ("10.96.0.30",),
    (ServicePort(80, 8080),),
    waypoint=WAYPOINT_REF,
)
SNAPSHOT = Snapshot.build(
    {
        resource_name(v): ("1", v)
        for v in (
            LOCAL,
            WAYPOINT,
            VIA_SERVICE,
            WEB,
            BOUND,
            Service(
                "waypoint",
                "default",
                "waypoint.default.svc.cluster.local",
                ("10.96.0.20",),
                (ServicePort(15008),),
            ),
        )
    }
)
HEADERS = [("forwarded", 'for="10.244.1.2";host=web.default.svc.cluster.local')]
SLEEP = Identity("cluster.local", "default", "sleep")
NODE = NodeIdentity("cluster.local", "node-1")


def test_waypoint_identities() -> None:
    assert waypoint_identities(SNAPSHOT, LOCAL) == {WAYPOINT.identity}
    assert waypoint_identities(SNAPSHOT, WAYPOINT) == frozenset()
    assert waypoint_identities(SNAPSHOT, VIA_SERVICE) == {WAYPOINT.identity}


def test_forwarded_is_trusted_only_from_the_pods_waypoint() -> None:
    peer_address = ("10.244.3.4", 50000)
    assert source_ip_for(peer_address, "10.244.1.2", WAYPOINT.identity, SNAPSHOT, LOCAL) == "10.244.1.2"
    assert source_ip_for(("10.244.1.9", 50000), "10.244.1.2", SLEEP, SNAPSHOT, LOCAL) == "10.244.1.9"
    assert source_ip_for(("10.244.1.9", 50000), None, WAYPOINT.identity, SNAPSHOT, LOCAL) == "10.244.1.9"


def test_service_for_names_only_the_pods_own_services() -> None:
    service = service_for(SNAPSHOT, LOCAL, "web.default.svc.cluster.local")
    assert service is not None and service.name == "web"
    assert service_for(SNAPSHOT, WAYPOINT, "web.default.svc.cluster.local") is None
    assert service_for(SNAPSHOT, LOCAL, None) is None


@pytest.mark.parametrize(
    ("local", "peer", "peer_address", "headers", "expected"),
    [
        # from the pod's waypoint: forwarded for= and host= count
        (
            LOCAL,
            WAYPOINT.identity,
            ("10.244.3.4", 50000),
            HEADERS,
            InboundSource(WAYPOINT.identity, "10.244.1.2", WEB),
        ),
        # from the waypoint of one of the pod's services
        (
            VIA_SERVICE,
            WAYPOINT.identity,
            ("10.244.3.4", 50000),
            [("Forwarded", 'for="[::ffff:10.244.1.7]:3000"')],
            InboundSource(WAYPOINT.identity, "10.244.1.7", None),
        ),
        # from anyone else: the TCP peer, whatever the header claims (host= still names the service)
        (LOCAL, SLEEP, ("10.244.1.9", 50000), HEADERS, InboundSource(SLEEP, "10.244.1.9", WEB)),
        # the waypoint without a header, or with a for= that is not an IP: the TCP peer
        (
            LOCAL,
            WAYPOINT.identity,
            ("10.244.3.4", 50000),
            [],
            InboundSource(WAYPOINT.identity, "10.244.3.4", None),
        ),
        (
            LOCAL,
            WAYPOINT.identity,
            ("10.244.3.4", 50000),
            [("forwarded", "for=unknown")],
            InboundSource(WAYPOINT.identity, "10.244.3.4", None),
        ),
        # a host= that is not one of the pod's services names none
        (
            WAYPOINT,
            SLEEP,
            ("10.244.1.9", 50000),
            HEADERS,
            InboundSource(SLEEP, "10.244.1.9", None),
        ),
        # no peer address (never on a real socket): an empty source IP (a pod without a workload
        # waypoint: LOCAL's would refuse SLEEP's pod-addressed connection, see test_no_bypass)
        (VIA_SERVICE, SLEEP, None, [], InboundSource(SLEEP, "", None)),
        # a node identity (or none) is never a client: 401, DENY
        (
            LOCAL,
            NODE,
            ("10.244.3.4", 50000),
            HEADERS,
            InboundRefusal(401, f"peer {NODE} is not a workload identity", FLAG_DENY),
        ),
        (
            LOCAL,
            None,
            ("10.244.3.4", 50000),
            [],
            InboundRefusal(401, "peer None is not a workload identity", FLAG_DENY),
        ),
    ],
)
def test_inbound_source(
    local: Workload,
    peer: Identity | NodeIdentity | None,
    peer_address: tuple[str, int] | None,
    headers: list[tuple[str, str]],
    expected: InboundSource | InboundRefusal,
) -> None:
    assert inbound_source(SNAPSHOT, local, peer, peer_address, headers) == expected


@pytest.mark.parametrize(
    ("refusal", "flag"),
    [
        (InboundRefusal.denied("no ALLOW policy matched"), FLAG_DENY),
        (InboundRefusal(400, "IP mismatch"), FLAG_NONE),
    ],
)
def test_a_refusal_carries_its_status_and_flag(refusal: InboundRefusal, flag: str) -> None:
    assert refusal.flag == flag
    assert (refusal.status == 401) == (flag == FLAG_DENY)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (503, None),  # the endpoint could not reach its app: the next candidate is tried
        (401, InboundRefusal(401, "answered", FLAG_DENY)),
        (400, InboundRefusal(400, "answered", FLAG_CONNECT)),
        (404, InboundRefusal(404, "answered", FLAG_CONNECT)),
        (500, InboundRefusal(500, "answered", FLAG_CONNECT)),
    ],
)
def test_answer_refusal(status: int, expected: InboundRefusal | None) -> None:
    assert answer_refusal(status, "answered") == expected


# -- no bypass: what a waypoint covers comes only from that waypoint ---------------------------------

BOUND_HOST = [("forwarded", "host=waypoint.default.svc.cluster.local-bound")]
NO_ENDPOINTS = Snapshot.build(
    {resource_name(v): ("1", v) for v in (LOCAL, VIA_SERVICE, WEB, BOUND)}  # the waypoint's pod is gone
)


@pytest.mark.parametrize(
    ("snapshot", "local", "peer", "headers", "refusal"),
    [
        # a pod with a workload waypoint: pod-addressed traffic only from it
        (SNAPSHOT, LOCAL, WAYPOINT.identity, [], None),
        (SNAPSHOT, LOCAL, SLEEP, [], "traffic to pod default/b must go through waypoint"),
        # ... service-addressed traffic to its service without a waypoint is not covered (as Istio)
        (SNAPSHOT, LOCAL, SLEEP, [("forwarded", "host=web.default.svc.cluster.local")], None),
        # a service with a waypoint: service-addressed traffic only from it
        (SNAPSHOT, VIA_SERVICE, WAYPOINT.identity, BOUND_HOST, None),
        (SNAPSHOT, VIA_SERVICE, SLEEP, BOUND_HOST, "traffic to service default/bound must go through"),
        # ... pod-addressed traffic under a service-only waypoint is not covered (as Istio)
        (SNAPSHOT, VIA_SERVICE, SLEEP, [], None),
        # no waypoint endpoint at all: covered traffic fails closed, uncovered still passes
        (NO_ENDPOINTS, LOCAL, WAYPOINT.identity, [], "which has no endpoint"),
        (NO_ENDPOINTS, VIA_SERVICE, SLEEP, BOUND_HOST, "which has no endpoint"),
        (NO_ENDPOINTS, VIA_SERVICE, SLEEP, [], None),
    ],
)
def test_no_bypass(
    snapshot: Snapshot,
    local: Workload,
    peer: Identity,
    headers: list[tuple[str, str]],
    refusal: str | None,
) -> None:
    decided = inbound_source(snapshot, local, peer, ("10.244.1.9", 50000), headers)
    if refusal is None:
        assert isinstance(decided, InboundSource) and decided.peer == peer
    else:
        assert isinstance(decided, InboundRefusal)
        assert (decided.status, decided.flag) == (401, FLAG_DENY) and refusal in decided.reason


def test_plaintext_to_a_pod_with_a_workload_waypoint_is_refused() -> None:
    refused = plan_inbound_plaintext(SNAPSHOT, LOCAL, 8080, source_ip="10.244.1.9")
    assert isinstance(refused, InboundRefusal) and refused.status == 401
    assert "a plaintext client is not it" in refused.reason
    assert not isinstance(
        plan_inbound_plaintext(SNAPSHOT, VIA_SERVICE, 8080, source_ip="10.244.1.9"), InboundRefusal
    )
