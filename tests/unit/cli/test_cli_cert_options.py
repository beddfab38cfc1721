"""`ambit up --workload-cert-ttl / --outage-tolerance / --test-fault-endpoints`: parsed, checked, recorded
in the cluster options and passed to every control-plane replica; `ambit controlplane` takes the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cli_harness import ambit

from ambit.cli import controlplane as cp_cli
from ambit.control.ca_server import WorkloadCertPolicy
from ambit.identity.ca import CertificateAuthority
from ambit.runtime import cluster as rt
from ambit.runtime.bootstrap import controlplane_flags, controlplane_objects, go_seconds
from ambit.runtime.layout import Layout


class Stop(Exception):
    pass


@pytest.fixture
def prepared(monkeypatch: pytest.MonkeyPatch, run_dir: Path) -> list[rt.UpOptions]:
    """`ambit up` stops at prepare(), which records the options it was given."""
    seen: list[rt.UpOptions] = []

    def prepare(_cluster: str, options: rt.UpOptions) -> Layout:
        seen.append(options)
        raise rt.ClusterError("stopped by the test")

    monkeypatch.setattr(rt, "prepare", prepare)
    return seen


def test_up_parses_go_durations_and_the_test_flag(prepared: list[rt.UpOptions]) -> None:
    result = ambit("up", "--workload-cert-ttl", "1m", "--outage-tolerance", "30s", "--test-fault-endpoints")
    assert "stopped by the test" in result.output
    (options,) = prepared
    assert options.workload_cert_ttl == 60.0
    assert options.outage_tolerance == 30.0
    assert options.test_fault_endpoints is True


def test_up_defaults_leave_the_ca_as_it_is(prepared: list[rt.UpOptions]) -> None:
    ambit("up")
    (options,) = prepared
    assert (options.workload_cert_ttl, options.outage_tolerance, options.test_fault_endpoints) == (
        None,
        None,
        False,
    )


def test_up_refuses_a_bad_duration(prepared: list[rt.UpOptions]) -> None:
    result = ambit("up", "--workload-cert-ttl", "ten minutes")
    assert result.exit_code == 2
    assert 'invalid duration "ten minutes"' in result.output
    assert not prepared


def test_up_refuses_a_ttl_below_twice_the_tolerance_before_making_anything(run_dir: Path) -> None:
    result = ambit("up", "--workload-cert-ttl", "60s", "--outage-tolerance", "1m")
    assert result.exit_code == 1
    assert "--workload-cert-ttl 60s is shorter than twice --outage-tolerance 60s" in result.output
    assert not Layout("clitest").root.exists()


def test_the_help_documents_the_flags() -> None:
    text = ambit("up", "--help").output
    for flag in ("--workload-cert-ttl", "--outage-tolerance", "--test-fault-endpoints"):
        assert flag in text
    assert "chaos tests only" in text.lower()


def test_every_replica_gets_the_recorded_options() -> None:
    config = {"workload_cert_ttl": 60.0, "outage_tolerance": 0.5, "test_fault_endpoints": True}
    objs = controlplane_objects(2, ["node1", "node2"], "clitest", Layout("clitest"), config)
    commands = [o["spec"]["containers"][0]["command"] for o in objs if o["kind"] == "Pod"]
    assert len(commands) == 2
    for argv in commands:
        assert argv[-5:] == [
            "--workload-cert-ttl",
            "60s",
            "--outage-tolerance",
            "0.5s",
            "--test-fault-endpoints",
        ]


def test_a_cluster_without_the_options_starts_replicas_without_flags() -> None:
    assert controlplane_flags({}) == []
    assert controlplane_flags({"workload_cert_ttl": None, "test_fault_endpoints": False}) == []
    objs = controlplane_objects(1, ["node1"], "clitest", Layout("clitest"))
    (pod,) = (o for o in objs if o["kind"] == "Pod")
    assert pod["spec"]["containers"][0]["command"][-2:] == ["--listen", "0.0.0.0"]
    assert go_seconds(86400.0) == "86400s"


def _controlplane(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    CertificateAuthority.create().save(tmp_path / "ca")
    seen: dict[str, Any] = {}

    async def serve(_config: Any, _socket: Path, policy: WorkloadCertPolicy, fault_endpoints: bool) -> None:
        seen.update(policy=policy, fault_endpoints=fault_endpoints)

    def run(coro: Any) -> None:
        with pytest.raises(StopIteration):
            coro.send(None)

    monkeypatch.setattr(cp_cli, "_serve", serve)
    monkeypatch.setattr(cp_cli.uvloop, "run", run)
    monkeypatch.setattr(cp_cli.logging, "basicConfig", lambda **_kw: None)
    result = ambit("controlplane", "--state-dir", str(tmp_path), *args)
    return result, seen


def test_controlplane_passes_the_policy_and_the_fault_flag(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, seen = _controlplane(
        monkeypatch,
        tmp_path,
        "--workload-cert-ttl",
        "60s",
        "--outage-tolerance",
        "20s",
        "--test-fault-endpoints",
    )
    assert result.exit_code == 0, result.output
    assert seen["policy"] == WorkloadCertPolicy.resolve(
        cp_cli.nanos_to_timedelta(60 * 10**9), cp_cli.nanos_to_timedelta(20 * 10**9)
    )
    assert seen["fault_endpoints"] is True


def test_controlplane_has_no_fault_route_and_the_ca_default_unless_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, seen = _controlplane(monkeypatch, tmp_path)
    assert result.exit_code == 0, result.output
    assert seen == {"policy": WorkloadCertPolicy(), "fault_endpoints": False}


def test_controlplane_refuses_contradictory_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, seen = _controlplane(
        monkeypatch, tmp_path, "--workload-cert-ttl", "60s", "--outage-tolerance", "1h"
    )
    assert result.exit_code == 2
    assert "shorter than twice --outage-tolerance" in result.output
    assert not seen
