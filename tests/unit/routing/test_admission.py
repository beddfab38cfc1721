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
        # no peer address (never on a real socket): an empty source IP
        (LOCAL, SLEEP, None, [], InboundSource(SLEEP, "", None)),
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
