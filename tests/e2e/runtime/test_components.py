"""Component control end to end (`ambit kill|stop|start|restart`): a killed ztunnel is restarted, a
stopped one stays down until started, the data plane survives a stopped control plane, and a ztunnel
is replaced gracefully (the new one takes the pods before the old one drains).

One 2-node cluster with ztunnels and Istio's httpbin + curl in an ambient namespace is shared by the
module and torn down with `ambit down` whatever happens.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.runtime.control import ControlError
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import SAMPLES, ambient_namespace, ambit, ready, wait_for

pytestmark = pytest.mark.root

NAMESPACE = "mesh"
AMBIENT_NS = ambient_namespace(NAMESPACE)


def pods(cluster: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(namespace)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("run")
    old = os.environ.get("AMBIT_RUN_DIR")
    os.environ["AMBIT_RUN_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("AMBIT_RUN_DIR", None)
    else:
        os.environ["AMBIT_RUN_DIR"] = old


@pytest.fixture(scope="module")
def cluster(run_dir: Path, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if not (SAMPLES / "httpbin.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    name = cluster_name("k")
    try:
        ambit(name, "up", "--nodes", "2")
        handle = ClusterHandle(name)
        handle.apply(AMBIENT_NS)
        for sample in ("httpbin.yaml", "curl.yaml"):
            handle.apply((SAMPLES / sample).read_text(), namespace=NAMESPACE)
        wait_for(lambda: len(pods(name)) == 2 and all(ready(p) for p in pods(name)), "ambient pods", 60)
        yield name
    finally:
        ambit(name, "down", check=False)


def ztunnel_pid(cluster: str, node: str) -> int | None:
    return ClusterHandle(cluster).ztunnel_pid(node)


def ztunnel_state(cluster: str, node: str) -> str:
    return ClusterHandle(cluster).status().node(node).ztunnel


def curl_ok(cluster: str) -> bool:
    client = next(p for p in pods(cluster) if p["metadata"]["labels"].get("app") == "curl")
    proc = ClusterHandle(cluster).exec(
        ["curl", "-sS", "-m", "3", "http://httpbin:8000/ip"],
        pod=client["metadata"]["name"],
        namespace=NAMESPACE,
        check=False,
    )
    return proc.returncode == 0 and "origin" in proc.stdout


def recorded_pid(record: Path) -> int | None:
    try:
        return int(json.loads(record.read_text())["pid"])
    except (OSError, ValueError, KeyError):
        return None


def supervisor_restarts(run_dir: Path, cluster: str, count: int) -> None:
    """Return once the supervisor has restarted a crashed process ``count`` times, one crash after the
    other: the curl pod's process, SIGKILLed, comes back after its backoff (0.5 s, then doubling), seen
    as a new pid in its record."""
    (record,) = (run_dir / cluster / "pids").glob(f"pod-{NAMESPACE}-curl-*-curl.json")  # Deployment curl
    for n in range(1, count + 1):
        wait_for(lambda: recorded_pid(record) is not None, "the curl pod's process", 30, 0.1)
        pid = recorded_pid(record)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the cluster's own child (its pid is not reused before it is reaped)
        wait_for(
            lambda was=pid: recorded_pid(record) not in (None, was),
            f"the supervisor's restart {n} of {count}",
            30,
            0.1,
        )


def control_plane_ready(cluster: str) -> str:
    ready, total = ClusterHandle(cluster).status().controlplane
    return f"{ready}/{total}"


def test_kill_ztunnel_is_restarted(cluster: str, run_dir: Path) -> None:
    wait_for(lambda: ztunnel_pid(cluster, "node1") is not None, "ztunnel on node1")
    old = ztunnel_pid(cluster, "node1")
    out = ClusterHandle(cluster).kill("ztunnel", node="node1")
    assert f"pid {old}" in out
    wait_for(lambda: ztunnel_pid(cluster, "node1") not in (None, old), "a new ztunnel pid")
    wait_for(lambda: ztunnel_state(cluster, "node1") == "running", "status: running")
    wait_for(lambda: curl_ok(cluster), "mesh traffic after the restart")


def test_stop_holds_ztunnel_down_until_started(cluster: str, run_dir: Path) -> None:
    ClusterHandle(cluster).stop("ztunnel", node="node1")
    assert ztunnel_state(cluster, "node1") == "stopped"
    # Instead of a fixed wait: the supervisor restarts a crashed process twice (backoff 0.5 s, then 1 s)
    # while the ztunnel stays down, past the 1 s backoff the ztunnel would get after its crash above.
    supervisor_restarts(run_dir, cluster, 2)
    assert ztunnel_state(cluster, "node1") == "stopped"
    assert ztunnel_pid(cluster, "node1") is None
    assert "STOPPED" in ambit(cluster, "status").stdout
    with pytest.raises(ControlError, match="not running"):
        ClusterHandle(cluster).kill("ztunnel", node="node1")
    ClusterHandle(cluster).start("ztunnel", node="node1")
    assert ztunnel_state(cluster, "node1") == "running"
    assert "STOPPED" not in ambit(cluster, "status").stdout
    wait_for(lambda: curl_ok(cluster), "mesh traffic after start")


def test_data_plane_survives_a_stopped_control_plane(cluster: str) -> None:
    assert curl_ok(cluster)
    out = ClusterHandle(cluster).stop("controlplane")
    assert "controlplane-1" in out and "controlplane-2" in out
    try:
        wait_for(lambda: control_plane_ready(cluster) == "0/2", "both replicas down")
        for _ in range(3):
            assert curl_ok(cluster), "the data plane keeps working without the control plane"
    finally:
        ClusterHandle(cluster).start("controlplane")
    wait_for(lambda: control_plane_ready(cluster) == "2/2", "both replicas back")
    assert curl_ok(cluster)


def test_restart_ztunnel_replaces_it_gracefully(cluster: str, run_dir: Path) -> None:
    old = ztunnel_pid(cluster, "node2")
    assert old is not None
    out = ClusterHandle(cluster).restart("ztunnel", node="node2")
    new = ztunnel_pid(cluster, "node2")
    assert new is not None and new != old
    assert f"pid {old} drained" in out and f"pid {new} serves" in out
    assert not (run_dir / cluster / "pids" / "ztunnel-node2-draining.json").exists()
    assert not Path(f"/proc/{old}/cmdline").exists() or not Path(f"/proc/{old}/cmdline").read_bytes()
    assert ztunnel_state(cluster, "node2") == "running"
    wait_for(lambda: curl_ok(cluster), "mesh traffic after the replacement", 20)
