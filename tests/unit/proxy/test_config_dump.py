"""ConfigDump: the typed read model of /config_dump, to JSON and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ambit.model.jsonable import from_jsonable, jsonable
from ambit.model.policy import (
    Action,
    Authorization,
    Clause,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    Match,
    PolicyTarget,
    Rule,
    Scope,
    StringMatch,
)
from ambit.model.route import (
    HTTP_ROUTE,
    PATH_PREFIX,
    BackendRef,
    HttpRoute,
    PathMatch,
    RetryPolicy,
    RouteMatch,
    RouteRule,
)
from ambit.model.workload import (
    HealthStatus,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.proxy.config_dump import (
    AgentView,
    CertificateView,
    ConfigDump,
    ConnectionView,
    Counts,
    EjectionView,
    HeapView,
    OutlierView,
    PodView,
    WaypointView,
    XdsView,
)

SVC = "default/web.default.svc.cluster.local"
WEB = "spiffe://cluster.local/ns/default/sa/web"
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"

WORKLOAD = Workload(
    "u1",
    "web-1",
    "default",
    "web",
    "node1",
    ("10.0.1.5",),
    TunnelProtocol.HBONE,
    HealthStatus.UNHEALTHY,
    waypoint=WaypointRef("default", "waypoint.default.svc.cluster.local"),
    services=((SVC, (PortMapping(80, 8080),)),),
    authorization_policies=("default/allow-sleep",),
)
SERVICE = Service(
    "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
)
POLICY = Authorization(
    "allow-sleep",
    "default",
    Scope.WORKLOAD_SELECTOR,
    Action.ALLOW,
    (Rule((Clause((Match(principals=(StringMatch.parse("cluster.local/ns/default/sa/sleep"),)),)),)),),
    dry_run=True,
)
CONNECTION = ConnectionView(
    direction="inbound",
    protocol="HBONE",
    source="10.0.1.6",
    destination="10.0.1.5:8080",
    source_identity=SLEEP,
    destination_identity=WEB,
    workload_uid="u1",
    workload="default/web-1",
    age_seconds=75.4,
    bytes_received=12,
    bytes_sent=340,
)
DUMP = ConfigDump(
    node="node1",
    synced=True,
    config_version="v1",
    counts=Counts(1, 1, 1),
    workloads={"u1": WORKLOAD},
    services={SERVICE.key: SERVICE},
    policies={"default/allow-sleep": POLICY},
    pods={"u1": PodView("default/web-1", WEB, "serving")},
    certificates={WEB: CertificateView(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))},
    connections=(CONNECTION,),
    inbound_connections=1,
    pool_connections=2,
    heap=HeapView(1024, 3),
    agent=AgentView("/run/ztunnel.sock", True, True),
    xds=XdsView(("172.30.0.11", 15012), True, None),
)


def wire(value: object) -> object:
    return json.loads(json.dumps(value))


def test_round_trips_through_the_wire() -> None:
    data = wire(DUMP.to_json())
    assert isinstance(data, dict)
    assert ConfigDump.from_json(data) == DUMP
    assert data["certificates"] == {WEB: {"not_after": "2026-01-02T03:04:05+00:00"}}
    assert data["xds"]["address"] == ["172.30.0.11", 15012]
    assert data["workloads"]["u1"] == wire(jsonable(WORKLOAD))  # the model's own JSON view


def test_absent_sections_are_left_out_and_read_as_defaults() -> None:
    data = ConfigDump(node="n").to_json()
    assert not {"counts", "heap", "agent", "xds"} & set(data)
    assert ConfigDump.from_json({"node": "n"}) == ConfigDump(node="n")
    # a manager-only dump gives counts where the collections would be
    assert ConfigDump.from_json({"workloads": 3, "services": 1, "policies": 0}).workloads == {}


def test_a_connection_reads_from_its_json() -> None:
    assert from_jsonable(ConnectionView, wire(jsonable(CONNECTION))) == CONNECTION


@pytest.mark.parametrize(
    "data",
    [
        {"workloads": {"u1": {"uid": "u1"}}},  # fields missing
        {"workloads": {"u1": {**jsonable(WORKLOAD), "tunnel_protocol": "QUIC"}}},  # not an enum value
        {"certificates": {WEB: {"not_after": "yesterday"}}},
        {"connections": [{**jsonable(CONNECTION), "bytes_sent": "many"}]},
        {"synced": "yes"},
    ],
)
def test_a_section_that_does_not_fit_is_an_error(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ConfigDump.from_json(data)


L7_POLICY = L7Authorization(
    "hello-get-only",
    "default",
    Action.ALLOW,
    (PolicyTarget("Service", "default", "web"),),
    (L7Rule((L7Clause((L7Match(methods=(StringMatch.parse("GET"),)),)),)),),
)
ROUTE = HttpRoute(
    kind=HTTP_ROUTE,
    name="web",
    namespace="default",
    created="2026-12-07T10:00:00Z",
    service_key=SVC,
    port=80,
    rules=(
        RouteRule(
            index=0,
            matches=(RouteMatch(path=PathMatch(PATH_PREFIX, "/api")),),
            backends=(BackendRef(SVC, 80, 90),),
            request_timeout=0.5,
            retry=RetryPolicy(attempts=2, codes=(503,)),
        ),
    ),
)
WAYPOINT_DUMP = ConfigDump(
    node="waypoint-abc12",
    synced=True,
    workloads={"u1": WORKLOAD},
    services={SERVICE.key: SERVICE},
    l7_policies={L7_POLICY.key: L7_POLICY},
    routes={ROUTE.key: ROUTE},
    outliers=(OutlierView(SVC, "u1", "default/web-1", True, 3.5, 2, 0, 0),),
    ejections=(EjectionView("u1", "default/web-1", 4.2, 1, "10.0.1.5:15008: connection refused"),),
    waypoint=WaypointView(
        "default/waypoint", "spiffe://cluster.local/ns/default/sa/waypoint", (SVC,), ("u1",)
    ),
)


def test_a_waypoint_dump_round_trips_with_its_routes_l7_policies_and_ejections() -> None:
    data = wire(WAYPOINT_DUMP.to_json())
    assert isinstance(data, dict)
    assert ConfigDump.from_json(data) == WAYPOINT_DUMP
    assert data["waypoint"]["services"] == [SVC]
    assert "waypoint" not in ConfigDump(node="n").to_json()  # a ztunnel's dump has no such section
