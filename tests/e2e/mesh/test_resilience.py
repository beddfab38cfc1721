"""No single point of failure, measured: open-loop load (≥ 100 req/s for ≥ 10 s, new and kept-alive
connections mixed, every request recorded by `ambit app load`) spanning a failure.

Placement (3 nodes, ambient namespace `res`): `server` has endpoints on node1 and node3 only;
`client` runs on node1 and `victim` on node2. Each test injects one event while the load runs:

* both control-plane replicas stopped, and node3's ztunnel restarted during the outage (it must serve
  from its cache): 0 failed;
* `ambit restart ztunnel --node node1` (the client's own node, graceful overlapping replacement):
  0 failed;
* node2's ztunnel killed and held down: between node1 and node3, 0 failed; node2's pod reaches nothing.

Every run also has 0 requests retried: the load client retries a request once on a new connection
when a kept-alive one dies under it (`LoadResult.retried`), which would hide a dropped connection.
Each event is injected once the load is seen running (connections opened by node1's ztunnel), not
after a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from ambit.apps.load import LoadResult
from ambit.runtime import pcap
from ambit.runtime.control import ControlError
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import AMBIT, ambit, ready, temporary_cluster, wait_for

pytestmark = pytest.mark.root

NS = "res"
RATE = 100
DURATION = 12.0
RESTART_DURATION = 20.0  # room for starting the load and a new ztunnel on a busy machine (< the 25 s drain)


def deployment(name: str, node: str, app: str) -> str:
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {app}, placement: {name}}}
  template:
    metadata:
      labels: {{app: {app}, placement: {name}}}
    spec:
      nodeSelector:
        kubernetes.io/hostname: {node}
      containers:
      - name: app
        image: ambit/sample
        ports:
        - containerPort: 8080
"""


MANIFESTS = "\n---\n".join(
    [
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NS}\n  labels:\n"
        "    istio.io/dataplane-mode: ambient\n",
        deployment("server-a", "node1", "server"),
        deployment("server-c", "node3", "server"),
        deployment("client", "node1", "client"),
        deployment("victim", "node2", "victim"),
        f"apiVersion: v1\nkind: Service\nmetadata:\n  name: server\n  namespace: {NS}\nspec:\n"
        "  selector: {app: server}\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n",
    ]
)


def pods(cluster: str) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(NS)


def pod_name(cluster: str, placement: str) -> str:
    return str(
        next(
            p["metadata"]["name"]
            for p in pods(cluster)
            if p["metadata"]["labels"].get("placement") == placement
        )
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("r"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "3")
        ClusterHandle(name).apply(MANIFESTS)
        wait_for(lambda: len(pods(name)) == 4 and all(ready(p) for p in pods(name)), "pods ready", 90)
        yield name


def load(cluster: str, placement: str, out: Path, *, duration: float = DURATION) -> subprocess.Popen[str]:
    """Start `ambit app load` inside a pod's netns (so its traffic is captured like the app's)."""
    args = [
        AMBIT,
        "app",
        "load",
        "http://server/",
        "--rate",
        str(RATE),
        "--duration",
        str(duration),
        "--mode",
        "mixed",
        "--connections",
        "8",
        "--timeout",
        "5",
        "--json",
        str(out),
    ]
    return ClusterHandle(cluster).popen(
        args,
        pod=pod_name(cluster, placement),
        namespace=NS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], out: Path) -> LoadResult:
    stdout, stderr = proc.communicate(timeout=DURATION + 60)
    assert out.exists(), f"the load client wrote no records:\n{stdout}\n{stderr}"
    return LoadResult.from_json(out.read_text())


def assert_no_failures(result: LoadResult) -> None:
    assert result.total >= RATE * DURATION * 0.95, f"only {result.total} requests scheduled"
    failures = [(r.outcome, r.detail) for r in result.failures][:10]
    assert result.failed == 0, f"{result.failed} of {result.total} failed: {failures}"
    kinds = result.connections()
    assert kinds.get("new", 0) > 0 and kinds.get("reused", 0) > 0, kinds
    retried = [(r.index, round(r.scheduled, 2), r.outcome) for r in result.records if r.retried][:10]
    assert result.retried == 0, f"{result.retried} requests retried on a new connection: {retried}"


def opened_from(cluster: str, node: str, workload: str) -> float:
    """Outbound connections from ``workload`` that ``node``'s (current) ztunnel has opened."""
    reply = ClusterHandle(cluster).exec(
        ["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"], node=node
    )
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in reply.stdout.splitlines()
        if line.startswith("istio_tcp_connections_opened_total{")
        and 'reporter="source"' in line
        and f'source_workload="{workload}"' in line
    )


def wait_until_the_load_runs(cluster: str, before: float) -> None:
    """Until node1's ztunnel has opened 20 more connections from the client than ``before``."""
    wait_for(lambda: opened_from(cluster, "node1", "client") >= before + 20, "the load to start", 30, 0.5)


def drain_started(cluster: str, node: str) -> float | None:
    """When ``node``'s ztunnel last began to drain (its log line), as a Unix time."""
    lines = ambit(cluster, "logs", f"ztunnel-{node}").stdout.splitlines()
    for line in reversed(lines):
        if "ambit.cli.ztunnel: draining" in line:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
            return stamp.timestamp()  # the log's local time, as time.time() on this host
    return None


def test_control_plane_outage_loses_nothing_and_a_restarted_ztunnel_serves_from_cache(
    cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    before = opened_from(cluster, "node1", "client")
    proc = load(cluster, "client", out)
    try:
        wait_until_the_load_runs(cluster, before)
        ClusterHandle(cluster).stop("controlplane")
        assert_no_failures(finish(proc, out))
        # Still no control plane: node3's ztunnel restarts with no CA and no xDS, from its cache only.
        ClusterHandle(cluster).restart("ztunnel", node="node3")
        server_c = next(p for p in pods(cluster) if p["metadata"]["labels"].get("placement") == "server-c")
        url = f"http://{server_c['status']['podIP']}:8080/ip"
        for _ in range(5):
            reply = ClusterHandle(cluster).exec(
                ["curl", "-sS", "-m", "5", url], pod=pod_name(cluster, "client"), namespace=NS
            )
            assert json.loads(reply.stdout)["pod"] == server_c["metadata"]["name"]
    finally:
        with contextlib.suppress(ControlError):
            ClusterHandle(cluster).start("controlplane")


@pytest.mark.parametrize(
    "node",
    [
        pytest.param("node1", id="the-clients-node"),  # outbound 15001 and the HBONE pool change hands
        pytest.param("node3", id="a-servers-node"),  # inbound 15008 changes hands (server-c)
    ],
)
def test_overlapping_ztunnel_restart_loses_nothing(cluster: str, tmp_path: Path, node: str) -> None:
    out = tmp_path / "load.json"
    before = opened_from(cluster, "node1", "client")
    proc = load(cluster, "client", out, duration=RESTART_DURATION)
    try:
        # Starting the load in the pod, and a new ztunnel, take seconds on a busy machine: restart once
        # the load runs (not after a fixed sleep), and check below that the handover fell inside it.
        wait_until_the_load_runs(cluster, before)
        ClusterHandle(cluster).restart("ztunnel", node=node)
    finally:
        result = finish(proc, out)
    drained = drain_started(cluster, node)
    assert drained is not None, "the old ztunnel never logged its drain"
    into_load = drained - result.started_wall
    assert 0 < into_load < RESTART_DURATION - 2, f"the handover was {into_load:.1f} s into the load"
    assert_no_failures(result)


def test_a_dead_ztunnel_touches_only_its_node(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    before = opened_from(cluster, "node1", "client")
    proc = load(cluster, "client", out)
    try:
        wait_until_the_load_runs(cluster, before)
        ClusterHandle(cluster).kill("ztunnel", node="node2")
        ClusterHandle(cluster).stop("ztunnel", node="node2")
        result = finish(proc, out)
        marker = f"victim-{uuid.uuid4().hex}"
        capture = pcap.start(cluster, tmp_path / "fabric.pcap")
        try:
            victim = ClusterHandle(cluster).exec(
                ["curl", "-sS", "-m", "3", "-H", f"X-Marker: {marker}", "http://server/"],
                pod=pod_name(cluster, "victim"),
                namespace=NS,
                check=False,
            )
        finally:
            pcap.stop(capture)
        assert victim.returncode != 0, "a pod whose ztunnel is down must reach nothing"
        assert "curl: (" in victim.stderr, f"the victim's curl never ran: {victim.stderr}"  # it did try
        crossed = pcap.summarise(tmp_path / "fabric.pcap")
        assert not crossed.contains(marker), "the victim's request crossed the fabric in plaintext"
        victim_ip = next(p for p in pods(cluster) if p["metadata"]["name"] == pod_name(cluster, "victim"))
        assert not [p for p in crossed.packets if victim_ip["status"]["podIP"] in (p.src, p.dst)], (
            "nothing of the victim's leaves its node while its ztunnel is down"
        )
    finally:
        with contextlib.suppress(ControlError):
            ClusterHandle(cluster).start("ztunnel", node="node2")
    assert_no_failures(result)
    wait_for(
        lambda: (
            ClusterHandle(cluster)
            .exec(
                ["curl", "-sS", "-m", "3", "http://server/"],
                pod=pod_name(cluster, "victim"),
                namespace=NS,
                check=False,
            )
            .returncode
            == 0
        ),
        "node2's pod to recover after `ambit start`",
        40,
    )
