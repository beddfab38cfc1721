"""The forwarded header: parsing (RFC 7239) and when inbound trusts it."""

from __future__ import annotations

from ambit.model.identity import Identity
from ambit.model.workload import PortMapping, Service, ServicePort, TunnelProtocol, WaypointRef, Workload
from ambit.state.snapshot import Snapshot, resource_name
from ambit.ztunnel.inbound import service_for, source_ip_for, waypoint_identities

KEY = "default/web.default.svc.cluster.local"


WAYPOINT_REF = WaypointRef("default", "waypoint.default.svc.cluster.local")
WAYPOINT_KEY = "default/waypoint.default.svc.cluster.local"


def wl(uid: str, ip: str, sa: str, **kw: object) -> Workload:
    return Workload(uid, uid, "default", sa, "n1", (ip,), TunnelProtocol.HBONE, **kw)  # type: ignore[arg-type]


LOCAL = wl("b", "10.244.2.3", "web", services=((KEY, (PortMapping(80, 8080),)),), waypoint=WAYPOINT_REF)
WAYPOINT = wl("wp", "10.244.3.4", "waypoint", services=((WAYPOINT_KEY, (PortMapping(15008, 15008),)),))
SNAPSHOT = Snapshot.build(
    {
        resource_name(v): ("1", v)
        for v in (
            LOCAL,
            WAYPOINT,
            Service(
                "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
            ),
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


def test_waypoint_identities() -> None:
    assert waypoint_identities(SNAPSHOT, LOCAL) == {WAYPOINT.identity}
    assert waypoint_identities(SNAPSHOT, WAYPOINT) == frozenset()


def test_forwarded_is_trusted_only_from_the_pods_waypoint() -> None:
    peer_address = ("10.244.3.4", 50000)
    assert source_ip_for(peer_address, HEADERS, WAYPOINT.identity, SNAPSHOT, LOCAL) == "10.244.1.2"
    other = Identity("cluster.local", "default", "sleep")
    assert source_ip_for(("10.244.1.9", 50000), HEADERS, other, SNAPSHOT, LOCAL) == "10.244.1.9"
    assert source_ip_for(("10.244.1.9", 50000), [], WAYPOINT.identity, SNAPSHOT, LOCAL) == "10.244.1.9"


def test_service_for_names_only_the_pods_own_services() -> None:
    service = service_for(SNAPSHOT, LOCAL, HEADERS)
    assert service is not None and service.name == "web"
    assert service_for(SNAPSHOT, WAYPOINT, HEADERS) is None
    assert service_for(SNAPSHOT, LOCAL, [("forwarded", "for=10.0.0.1")]) is None
