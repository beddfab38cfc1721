"""Nothing crosses nodes in plaintext: a packet capture on the fabric bridge (inside the cluster's own
fabric namespace) while a pod on node 1 sends HTTP requests carrying a unique marker to a service whose
endpoints are on nodes 2 and 3.

- Enrolled namespace: every packet between nodes is TCP to or from the runtime's fabric ports
  (``FABRIC_PORTS``: 15008 HBONE, 15012 xDS/CA),
  and the marker is never in the captured bytes.
- The control, which proves the check can fail: with the namespace un-enrolled, the same requests cross
  the fabric as plaintext to port 9080 and the marker is found.

One 3-node cluster is shared by the module and torn down with `ambit down` whatever happens. The capture
is the one `ambit demo` uses (:mod:`ambit.runtime.pcap`). Traffic starts only once every pod is captured
and served by its node's ztunnel (or, for the control, neither): the namespace label alone is seen
before the kubelet has captured the pods.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.runtime import pcap
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.layout import FABRIC_PORTS, HBONE_PORT
from ambit.testing.e2e import ambit, ready, temporary_cluster, wait_for, wait_meshed

pytestmark = pytest.mark.root

NAMESPACE = "mesh"
REQUESTS = 16
APP_PORT = 9080
MANIFESTS = """apiVersion: v1
kind: Namespace
metadata:
  name: mesh
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: mesh
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 9080
""" + "".join(
    f"""---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: mesh
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {app}
      part: {name}
  template:
    metadata:
      labels:
        app: {app}
        part: {name}
    spec:
      nodeName: {node}
      containers:
      - name: main
        image: {image}
{extra}"""
    for name, app, node, image, extra in (
        ("web-2", "web", "node2", "sample", "        ports:\n        - containerPort: 9080\n"),
        ("web-3", "web", "node3", "sample", "        ports:\n        - containerPort: 9080\n"),
        ("client", "client", "node1", "curl", '        command: ["sleep", "3600"]\n'),
    )
)


def pods(cluster: str) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(NAMESPACE)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump (make setup installs it)")
    with temporary_cluster(cluster_name("p"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "3")
        ClusterHandle(name).apply(MANIFESTS)
        wait_for(lambda: len(pods(name)) == 3 and all(ready(p) for p in pods(name)), "the pods ready", 60)
        yield name


def send(cluster: str, marker: str) -> list[dict[str, Any]]:
    """REQUESTS requests from the client on node1 to the web service, each on a new connection, each
    carrying the marker in a header; the echoed bodies."""
    client = next(p for p in pods(cluster) if p["metadata"]["labels"]["app"] == "client")
    loop = (
        f"for i in $(seq {REQUESTS}); do "
        f"curl -sS -m 5 -H 'X-Marker: {marker}' -w '\\n' http://web/echo || exit 1; done"
    )
    name = client["metadata"]["name"]
    out = ClusterHandle(cluster).exec(["sh", "-c", loop], pod=name, namespace=NAMESPACE, timeout=180).stdout
    bodies = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(bodies) == REQUESTS
    assert all(b["headers"].get("X-Marker") == marker for b in bodies), "the app received the marker"
    assert {b["peer"].rsplit(":", 1)[0] for b in bodies} == {client["status"]["podIP"]}
    return bodies


def capture(cluster: str, path: Path, marker: str) -> tuple[pcap.Summary, list[dict[str, Any]]]:
    proc = pcap.start(cluster, path)
    try:
        bodies = send(cluster, marker)
    finally:
        pcap.stop(proc)
    return pcap.summarise(path), bodies


def test_enrolled_traffic_crosses_the_fabric_only_as_mtls(cluster: str, tmp_path: Path) -> None:
    wait_meshed(cluster, NAMESPACE, True, 3)
    by_app = {p["metadata"]["labels"]["part"]: p for p in pods(cluster)}
    marker = f"ambit-e2e-{uuid.uuid4().hex}"
    summary, bodies = capture(cluster, tmp_path / "mesh.pcap", marker)
    assert {b["node"] for b in bodies} == {"node2", "node3"}, "both endpoints answered"
    ports = summary.by_port()
    assert ports[HBONE_PORT] > 0, ports
    assert set(ports) <= FABRIC_PORTS, f"plaintext between nodes: {ports}"
    assert not summary.contains(marker), "the marker crossed the fabric in plaintext"
    # The tunnels run from the client pod's address to each endpoint pod's 15008.
    tunnels = {(p.src, p.dst) for p in summary.packets if p.dport == HBONE_PORT}
    client_ip = by_app["client"]["status"]["podIP"]
    assert {(client_ip, by_app[w]["status"]["podIP"]) for w in ("web-2", "web-3")} <= tunnels, tunnels


def test_control_unenrolled_traffic_shows_the_marker_in_plaintext(cluster: str, tmp_path: Path) -> None:
    ClusterHandle(cluster).set_ambient(NAMESPACE, False)
    try:
        wait_meshed(cluster, NAMESPACE, False, 3)
        marker = f"ambit-e2e-{uuid.uuid4().hex}"
        summary, bodies = capture(cluster, tmp_path / "plain.pcap", marker)
        assert {b["node"] for b in bodies} == {"node2", "node3"}
        assert summary.by_port()[APP_PORT] > 0, (summary.by_port(), len(summary.raw), bodies[:1])
        assert summary.contains(marker), "plaintext requests must show the marker on the fabric"
    finally:
        ClusterHandle(cluster).set_ambient(NAMESPACE, True)
    wait_meshed(cluster, NAMESPACE, True, 3)
