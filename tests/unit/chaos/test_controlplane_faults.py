"""The ca-down experiment against a fake cluster: the switch posted to every replica, refusal without the
test flag, when a refresh is due, and the wait for certificates issued after the outage."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ambit.chaos import controlplane_faults as ca_fault
from ambit.chaos.experiments import ExperimentError, FaultPlan

SA = "spiffe://cluster.local/ns/ambit-chaos/sa/echo"


class FakeLayout:
    def __init__(self, config: Path) -> None:
        self.config = config


class FakeHandle:
    """Two nodes, one replica on each; each ztunnel holds one certificate for SA."""

    name = "fake"

    def __init__(self, tmp_path: Path, config: Mapping[str, Any], not_after: datetime) -> None:
        path = tmp_path / "cluster.json"
        path.write_text(json.dumps({"nodes": 2, **config}))
        self.layout = FakeLayout(path)
        self.certs = {node: not_after for node in self.nodes()}
        self.dumps = 0

    def nodes(self) -> list[str]:
        return ["node1", "node2"]

    def node_netns(self, node: str) -> str:
        return f"netns-{node}"

    def pods(self, namespace: str | None = "default") -> list[dict[str, Any]]:
        assert namespace == "ambit-system"
        return [
            {
                "metadata": {"name": f"controlplane-{i}", "labels": {"app": "controlplane"}},
                "spec": {"nodeName": f"node{i}"},
                "status": {"podIP": f"10.0.{i}.2"},
            }
            for i in (1, 2)
        ]

    def ztunnel_config(self, node: str) -> dict[str, Any]:
        self.dumps += 1
        return {
            "pods": {"u1": {"name": "ambit-chaos/echo", "identity": SA, "state": "serving"}},
            "certificates": {SA: {"not_after": self.certs[node].isoformat()}},
        }


@pytest.fixture
def posts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    sent: list[tuple[str, str, str]] = []

    def http_post(
        netns: str, address: tuple[str, int], path: str, form: str, *, timeout: float
    ) -> tuple[int, bytes]:
        assert address[1] == 15014 and path == "/debug/fault/ca"
        sent.append((netns, address[0], form))
        return 200, json.dumps({"state": form.removeprefix("state=")}).encode()

    monkeypatch.setattr(ca_fault, "http_post", http_post)
    return sent


def test_a_cluster_without_the_test_flag_is_refused_with_the_command_to_run(
    tmp_path: Path, posts: list[tuple[str, str, str]]
) -> None:
    handle = FakeHandle(tmp_path, {}, datetime.now(UTC) + timedelta(hours=20))
    with pytest.raises(ExperimentError, match="ambit --cluster fake up --test-fault-endpoints"):
        ca_fault.ca_down(handle, FaultPlan("node1", 0.01))  # type: ignore[arg-type]
    assert posts == []


def test_a_404_from_a_replica_means_the_flag_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ca_fault, "http_post", lambda *_a, **_kw: (404, b"404: Not Found"))
    handle = FakeHandle(tmp_path, {"test_fault_endpoints": True}, datetime.now(UTC) + timedelta(hours=20))
    with pytest.raises(ExperimentError, match="--test-fault-endpoints"):
        ca_fault.ca_down(handle, FaultPlan("node1", 0.01))  # type: ignore[arg-type]


def test_with_long_certificates_no_refresh_falls_due_and_the_fault_ends_at_the_restore(
    tmp_path: Path, posts: list[tuple[str, str, str]]
) -> None:
    handle = FakeHandle(tmp_path, {"test_fault_endpoints": True}, datetime.now(UTC) + timedelta(hours=20))
    events = ca_fault.ca_down(handle, FaultPlan("node1", 0.05))  # type: ignore[arg-type]
    assert posts == [
        ("netns-node1", "10.0.1.2", "state=refuse"),
        ("netns-node2", "10.0.2.2", "state=refuse"),
        ("netns-node1", "10.0.1.2", "state=serve"),
        ("netns-node2", "10.0.2.2", "state=serve"),
    ]
    names = [name for name, _ in events.marks]
    assert names == ["refusing", "restored"]
    assert events.end == dict(events.marks)["restored"]
    assert events.end - events.start >= 0.05
    measures = dict(events.measures)
    assert measures["workload certificate TTL s"] == 86400.0
    assert measures["certificates due for refresh"] == 0


def test_a_due_refresh_is_waited_for_until_every_ztunnel_holds_a_newer_certificate(
    tmp_path: Path, posts: list[tuple[str, str, str]]
) -> None:
    # A 60 s certificate with 20 s left is past its half-life (27 s after issue): the refresh is due.
    old = datetime.now(UTC) + timedelta(seconds=20)
    handle = FakeHandle(tmp_path, {"test_fault_endpoints": True, "workload_cert_ttl": 60.0}, old)
    real = handle.ztunnel_config

    def ztunnel_config(node: str) -> dict[str, Any]:
        if handle.dumps >= 4 and node == "node1":  # node1 refreshes first, node2 a few polls later
            handle.certs["node1"] = old + timedelta(seconds=30)
        if handle.dumps >= 7:
            handle.certs["node2"] = old + timedelta(seconds=31)
        return real(node)

    handle.ztunnel_config = ztunnel_config  # type: ignore[method-assign]
    events = ca_fault.ca_down(handle, FaultPlan("node1", 0.05, recovery_timeout=10))  # type: ignore[arg-type]
    marks = dict(events.marks)
    assert list(marks) == ["refusing", "restored", "refreshed"]
    assert events.end == marks["refreshed"] > marks["restored"]
    assert posts[-1][2] == "state=serve"
    measures = dict(events.measures)
    assert measures["workload certificate TTL s"] == 60.0
    assert measures["certificates due for refresh"] == 2
    assert measures["certificates expired during the outage"] == 0


def test_the_ca_is_restored_even_when_the_outage_fails(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, posts: list[tuple[str, str, str]]
) -> None:
    handle = FakeHandle(tmp_path, {"test_fault_endpoints": True}, datetime.now(UTC) + timedelta(hours=20))

    def broken(_node: str) -> dict[str, Any]:
        raise ca_fault.admin_client.AdminError("no ztunnel")

    handle.ztunnel_config = broken  # type: ignore[method-assign]
    with pytest.raises(ExperimentError, match="no ztunnel"):
        ca_fault.ca_down(handle, FaultPlan("node1", 10.0))  # type: ignore[arg-type]
    assert [form for _, _, form in posts] == ["state=refuse"] * 2 + ["state=serve"] * 2


def test_refresh_times_follow_the_cas_lifetime_and_backdating() -> None:
    not_after = datetime(2026, 1, 1, tzinfo=UTC)
    assert ca_fault.refresh_at(not_after, timedelta(seconds=60)) == not_after - timedelta(seconds=33)
    assert ca_fault.refresh_at(not_after, timedelta(hours=24)) == not_after - timedelta(hours=12, seconds=30)
    assert ca_fault.workload_lifetime({}) == timedelta(hours=24)
    assert ca_fault.workload_lifetime({"workload_cert_ttl": 60.0}) == timedelta(seconds=60)
    assert ca_fault.workload_lifetime({"outage_tolerance": 86400.0}) == timedelta(hours=48)
