"""`ambit ztunnel-config`: tables and JSON from sample /config_dump documents (no network)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from ambit.cli import cli
from ambit.cli import ztunnel_config as zc
from ambit.model.identity import Identity
from ambit.model.jsonable import jsonable
from ambit.model.policy import Action, Authorization, Scope
from ambit.model.workload import (
    HealthStatus,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.runtime.admin_client import AdminError, parse_response

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SVC = "default/web.default.svc.cluster.local"
WEB = "spiffe://cluster.local/ns/default/sa/web"
SLEEP = "spiffe://cluster.local/ns/default/sa/sleep"


def _workload(uid: str, name: str, ip: str, node: str, **kw: Any) -> Workload:
    return Workload(uid, name, "default", kw.pop("sa", "web"), node, (ip,), **kw)


def sample_dump(node: str = "node1") -> dict[str, Any]:
    """What ZtunnelApp.config_dump serves, made from model values the same way (jsonable)."""
    waypoint = WaypointRef("default", "waypoint.default.svc.cluster.local")
    ports = ((SVC, (PortMapping(80, 8080),)),)
    workloads = {
        "u1": _workload(
            "u1", "web-1", "10.0.1.5", "node1", tunnel_protocol=TunnelProtocol.HBONE, services=ports
        ),
        "u2": _workload(
            "u2",
            "web-2",
            "10.0.2.5",
            "node2",
            services=ports,
            status=HealthStatus.UNHEALTHY,
            waypoint=waypoint,
        ),
        "u3": _workload(
            "u3", "sleep-1", "10.0.1.6", "node1", sa="sleep", tunnel_protocol=TunnelProtocol.HBONE
        ),
    }
    service = Service(
        "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
    )
    policies = {
        "default/allow-sleep": Authorization(
            "allow-sleep", "default", Scope.WORKLOAD_SELECTOR, Action.ALLOW, ()
        ),
        "ambit-system/deny-all": Authorization(
            "deny-all", "ambit-system", Scope.GLOBAL, Action.DENY, (), True
        ),
    }
    dump = {
        "node": node,
        "workloads": workloads,
        "services": {service.key: service},
        "policies": policies,
        "pods": {
            "u1": {
                "name": "default/web-1",
                "identity": str(Identity("cluster.local", "default", "web")),
                "state": "x",
            },
            "u3": {"name": "default/sleep-1", "identity": SLEEP, "state": "x"},
        },
        "certificates": {
            WEB: {"not_after": (NOW + timedelta(hours=23)).isoformat()},
            "spiffe://cluster.local/ns/old/sa/gone": {"not_after": (NOW - timedelta(hours=1)).isoformat()},
        },
        "connections": [
            {
                "direction": "inbound",
                "protocol": "HBONE",
                "source": "10.0.1.6",
                "destination": "10.0.1.5:8080",
                "source_identity": SLEEP,
                "destination_identity": WEB,
                "workload_uid": "u1",
                "workload": "default/web-1",
                "age_seconds": 75.4,
                "bytes_received": 12,
                "bytes_sent": 340,
            }
        ],
    }
    wire = json.loads(json.dumps(jsonable(dump)))  # exactly what crosses the wire
    assert isinstance(wire, dict)
    return wire


def lines(text: str) -> list[list[str]]:
    """Rows split on runs of 2+ spaces (the column separator)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


def test_workloads_table() -> None:
    out = zc.render("workloads", [("node1", sample_dump())], node_column=False, now=NOW)
    assert lines(out) == [
        ["NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"],
        ["default", "sleep-1", "10.0.1.6", "node1", "None", "HBONE"],
        ["default", "web-1", "10.0.1.5", "node1", "None", "HBONE"],
        ["default", "web-2", "10.0.2.5", "node2", "waypoint", "TCP"],
    ]
    # columns line up
    header, first = out.splitlines()[:2]
    assert header.index("POD NAME") == first.index("sleep-1")


def test_services_table_counts_healthy_endpoints() -> None:
    out = zc.render("services", [("node1", sample_dump())], node_column=False, now=NOW)
    assert lines(out) == [
        ["NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"],
        ["default", "web", "10.96.0.10", "None", "1/2"],
    ]


def test_policies_table() -> None:
    out = zc.render("policies", [("node1", sample_dump())], node_column=False, now=NOW)
    assert lines(out) == [
        ["NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"],
        ["ambit-system", "deny-all", "Deny (dry-run)", "Global"],
        ["default", "allow-sleep", "Allow", "WorkloadSelector"],
    ]


def test_certificates_table_shows_expired_and_missing() -> None:
    out = zc.render("certificates", [("node1", sample_dump())], node_column=False, now=NOW)
    assert lines(out) == [
        ["CERTIFICATE NAME", "TYPE", "STATUS", "VALID", "NOT AFTER"],
        [SLEEP, "Leaf", "Unavailable", "false", "-"],
        [WEB, "Leaf", "Available", "true", "2026-01-03T02:04:05Z"],
        ["spiffe://cluster.local/ns/old/sa/gone", "Leaf", "Expired", "false", "2026-01-02T02:04:05Z"],
    ]


def test_connections_table() -> None:
    out = zc.render("connections", [("node1", sample_dump())], node_column=False, now=NOW)
    assert lines(out) == [
        [
            "WORKLOAD",
            "DIRECTION",
            "PROTOCOL",
            "SOURCE",
            "DESTINATION",
            "SOURCE IDENTITY",
            "DESTINATION IDENTITY",
            "AGE",
            "BYTES IN/OUT",
        ],
        ["default/web-1", "inbound", "HBONE", "10.0.1.6", "10.0.1.5:8080", SLEEP, WEB, "1m15s", "12/340"],
    ]


def test_ejections_table() -> None:
    dump = sample_dump()
    dump["ejections"] = [
        {"uid": "w1", "name": "wp/waypoint-abc12", "remaining": 9.25, "failures": 2, "reason": "refused"}
    ]
    out = zc.render("ejections", [("node1", dump)], node_column=False, now=NOW)
    assert lines(out) == [
        ["REPLICA", "UID", "EJECTED FOR", "FAILURES", "LAST FAILURE"],
        ["wp/waypoint-abc12", "w1", "9.2s", "2", "refused"],
    ]
    assert lines(zc.render("ejections", [("node1", sample_dump())], node_column=False, now=NOW)) == [
        ["REPLICA", "UID", "EJECTED FOR", "FAILURES", "LAST FAILURE"]
    ]


def test_every_node_gets_a_node_column() -> None:
    dumps = [("node1", sample_dump("node1")), ("node2", sample_dump("node2"))]
    rows = lines(zc.render("policies", dumps, node_column=True, now=NOW))
    assert rows[0] == ["NODE", "NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"]
    assert [r[0] for r in rows[1:]] == ["node1", "node1", "node2", "node2"]
    assert lines(zc.render("workloads", dumps, node_column=True, now=NOW))[0][:2] == ["ZTUNNEL", "NAMESPACE"]


def test_empty_and_count_only_dumps_render_headers() -> None:
    manager_only = {"workloads": 3, "services": 1, "policies": 0, "certificates": {}}
    for section in zc.SECTIONS:
        out = zc.render(section, [("node1", manager_only)], node_column=False, now=NOW)
        assert len(out.splitlines()) == 1


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.2, "0s"), (59, "59s"), (61, "1m1s"), (7300, "2h1m"), (90000, "1d1h"), (None, "-")],
)
def test_age(seconds: Any, shown: str) -> None:
    assert zc._age(seconds) == shown


# -- the command, with the fetch replaced ------------------------------------------------------------


@pytest.fixture
def fake_cluster(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    answers: dict[str, Any] = {"node1": sample_dump("node1"), "node2": AdminError("no ztunnel is listening")}

    def fetch(cluster: str, node: str) -> dict[str, Any]:
        assert cluster == "c1"
        answer = answers.get(node, AdminError("netns does not exist"))
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    monkeypatch.setattr(zc, "_fetch", fetch)
    monkeypatch.setattr(zc, "_nodes", lambda cluster: ["node1", "node2"])
    return answers


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, ["--cluster", "c1", "ztunnel-config", *args], catch_exceptions=False)


def test_command_every_node_reports_the_failed_one(fake_cluster: dict[str, Any]) -> None:
    result = invoke("services")
    assert result.exit_code == 0
    assert lines(result.stdout) == [
        ["NODE", "NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"],
        ["node1", "default", "web", "10.96.0.10", "None", "1/2"],
    ]
    assert "node2: no ztunnel is listening" in result.stderr


def test_command_one_node_json(fake_cluster: dict[str, Any]) -> None:
    result = invoke("connections", "--node", "node1", "-o", "json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == fake_cluster["node1"]["connections"]
    result = invoke("certificates", "-o", "json")
    assert set(json.loads(result.stdout)) == {"node1"}


def test_command_fails_when_no_node_answers(fake_cluster: dict[str, Any]) -> None:
    result = invoke("workloads", "--node", "node2")
    assert result.exit_code == 1
    assert "node2: no ztunnel is listening" in result.stderr
    assert "no ztunnel answered (asked node2)" in result.stderr


def test_command_missing_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    def missing(cluster: str) -> list[str]:
        raise AdminError(f"cluster {cluster} does not exist")

    monkeypatch.setattr(zc, "_nodes", missing)
    result = invoke("policies")
    assert result.exit_code == 1
    assert "cluster c1 does not exist" in result.stderr


# -- the HTTP response parser of the admin client -----------------------------------------------------


def test_parse_response() -> None:
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}") == (200, b"{}")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    assert parse_response(chunked) == (200, b"abcde")
    assert parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nnot ready") == (503, b"not ready")
    with pytest.raises(AdminError):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}")
    with pytest.raises(AdminError):
        parse_response(b"garbage")
