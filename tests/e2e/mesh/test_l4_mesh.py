"""The L4 mesh end to end on real namespaces: `ambit up` with ztunnels, an ambient namespace, Istio's
httpbin and curl samples, traffic across nodes over HBONE with mutual TLS, and an L4 DENY policy.

One 3-node cluster is shared by the module and torn down with `ambit down` whatever happens. The cluster
is driven through :class:`ClusterHandle` (objects, exec in pods and nodes, the namespace label); only
`ambit up` goes through the CLI (it detaches the daemon).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import (
    SAMPLES,
    ambient_namespace,
    ambit,
    ready,
    temporary_cluster,
    wait_for,
    wait_meshed,
)

pytestmark = pytest.mark.root

NAMESPACE = "mesh"
AMBIENT_NS = ambient_namespace(NAMESPACE)
DENY_CURL = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-curl
  namespace: mesh
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/mesh/sa/curl"]
"""


def pods(cluster: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(namespace)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if not (SAMPLES / "httpbin.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    with temporary_cluster(cluster_name("m"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "3")
        handle = ClusterHandle(name)
        handle.apply(AMBIENT_NS)
        for sample in ("httpbin.yaml", "curl.yaml"):
            handle.apply((SAMPLES / sample).read_text(), namespace=NAMESPACE)
        handle.apply((SAMPLES / "curl.yaml").read_text(), namespace="default")  # a client outside the mesh
        wait_for(lambda: len(pods(name)) == 2 and all(ready(p) for p in pods(name)), "ambient pods ready")
        wait_for(lambda: all(ready(p) for p in pods(name, "default")), "the non-mesh client ready")
        # Ready in the store is not yet known to every ztunnel: wait until each node's ztunnel holds
        # httpbin as a healthy workload (the config push can lag the pod's status on a busy machine)
        httpbin_uid = by_app(name, "httpbin")["metadata"]["uid"]
        handle = ClusterHandle(name)
        wait_for(
            lambda: all(
                handle.ztunnel_config(node)["workloads"].get(httpbin_uid, {}).get("status") == "HEALTHY"
                for node in handle.nodes()
            ),
            "httpbin healthy in every ztunnel's config",
        )
        yield name


def by_app(cluster: str, app: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    return next(p for p in pods(cluster, namespace) if p["metadata"]["labels"].get("app") == app)


def curl(cluster: str, url: str, namespace: str = NAMESPACE) -> subprocess.CompletedProcess[str]:
    client = by_app(cluster, "curl", namespace)["metadata"]["name"]
    return ClusterHandle(cluster).exec(
        ["curl", "-sS", "-m", "5", url], pod=client, namespace=namespace, check=False
    )


def httpbin_vip(cluster: str) -> str:
    return str(ClusterHandle(cluster).get("Service", "httpbin", NAMESPACE)["spec"]["clusterIP"])


def destination_connections(cluster: str, source: str | None, security: str = "mutual_tls") -> float:
    """istio_tcp_connections_opened_total reported by httpbin's ztunnel with `security`, from `source`
    (None: any source)."""
    node = by_app(cluster, "httpbin")["spec"]["nodeName"]
    total = 0.0
    for line in metrics(cluster, node).splitlines():
        if (
            line.startswith("istio_tcp_connections_opened_total{")
            and 'reporter="destination"' in line
            and (source is None or f'source_workload="{source}"' in line)
            and f'connection_security_policy="{security}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics(cluster: str, node: str) -> str:
    return (
        ClusterHandle(cluster)
        .exec(["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"], node=node)
        .stdout
    )


def test_traffic_goes_through_both_ztunnels_with_mutual_tls(cluster: str) -> None:
    server, client = by_app(cluster, "httpbin"), by_app(cluster, "curl")
    result = curl(cluster, "http://httpbin:8000/headers")
    assert result.returncode == 0, result.stderr
    echo = json.loads(result.stdout)
    assert echo["pod"] == server["metadata"]["name"]
    assert echo["peer"].split(":")[0] == client["status"]["podIP"], "the app sees the client pod's own IP"
    lines = [
        line
        for line in metrics(cluster, server["spec"]["nodeName"]).splitlines()
        if line.startswith("istio_tcp_connections_opened_total{") and 'reporter="destination"' in line
    ]
    assert any(
        'source_principal="spiffe://cluster.local/ns/mesh/sa/curl"' in line
        and 'connection_security_policy="mutual_tls"' in line
        and 'destination_principal="spiffe://cluster.local/ns/mesh/sa/httpbin"' in line
        for line in lines
    ), lines


HOLD_OPEN = """
import socket, time
s = socket.create_connection(("httpbin", 8000), timeout=5)
s.sendall(b"GET /ip HTTP/1.1\\r\\nHost: httpbin\\r\\n\\r\\n")
s.recv(65536)
print("open", flush=True)
s.settimeout(30)
try:
    while s.recv(65536):
        pass
except OSError:
    pass
print("closed", time.time(), flush=True)
"""


def test_l4_deny_on_source_principal_and_removal(cluster: str) -> None:
    client = by_app(cluster, "curl")["metadata"]["name"]
    handle = ClusterHandle(cluster)
    held = handle.popen(
        ["python3", "-c", HOLD_OPEN], pod=client, namespace=NAMESPACE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert held.stdout is not None and held.stdout.readline().strip() == "open"
        handle.apply(DENY_CURL)
        applied = time.time()
        closed = held.stdout.readline().split()
        assert closed[:1] == ["closed"], closed
        print(f"open connection closed {float(closed[1]) - applied:.2f} s after the apply returned")
        # From the apply returning (the store has the policy): the control plane's push (debounced
        # 100 ms) and the ztunnel's re-check of its open connections.
        assert float(closed[1]) - applied < 1.0, f"closed {float(closed[1]) - applied:.2f} s after the DENY"
        wait_for(
            lambda: curl(cluster, "http://httpbin:8000/ip").returncode != 0, "the DENY to take effect", 20
        )
    finally:
        held.kill()
        held.communicate()  # reaps it and closes the pipe
        handle.delete("AuthorizationPolicy", "deny-curl", NAMESPACE)
    wait_for(lambda: curl(cluster, "http://httpbin:8000/ip").returncode == 0, "traffic to come back", 20)


STRICT = """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: strict
  namespace: mesh
spec:
  mtls:
    mode: STRICT
"""


def test_strict_refuses_a_non_mesh_client_and_permissive_admits_it(cluster: str) -> None:
    url = f"http://{httpbin_vip(cluster)}:8000/ip"
    before = destination_connections(cluster, None, "none")
    assert curl(cluster, url, "default").returncode == 0, "PERMISSIVE (the default) admits plaintext"
    wait_for(
        lambda: destination_connections(cluster, None, "none") > before,
        "the plaintext inbound to be counted",
        10,
    )
    handle = ClusterHandle(cluster)
    handle.apply(STRICT)
    try:
        wait_for(lambda: curl(cluster, url, "default").returncode != 0, "STRICT to refuse plaintext", 20)
        assert curl(cluster, "http://httpbin:8000/ip").returncode == 0, "mesh clients still get through"
        assert ready(by_app(cluster, "httpbin")), "under STRICT the pod stays ready (probes are not captured)"
    finally:
        handle.delete("PeerAuthentication", "strict", NAMESPACE)
    wait_for(lambda: curl(cluster, url, "default").returncode == 0, "PERMISSIVE again", 20)


def test_unenrolling_and_reenrolling_a_running_namespace(cluster: str) -> None:
    pods_before = {p["metadata"]["uid"] for p in pods(cluster)}
    handle = ClusterHandle(cluster)
    handle.set_ambient(NAMESPACE, False)
    try:
        # Released by the data plane (no capture, no longer served), not only un-labelled.
        wait_meshed(cluster, NAMESPACE, False, 2)
        counted = destination_connections(cluster, "curl")
        assert curl(cluster, "http://httpbin:8000/ip").returncode == 0, "plain TCP still works"
        assert destination_connections(cluster, "curl") == counted, "that request did not pass a ztunnel"
    finally:
        handle.set_ambient(NAMESPACE, True)
    wait_meshed(cluster, NAMESPACE, True, 2)
    counted = destination_connections(cluster, "curl")
    wait_for(lambda: curl(cluster, "http://httpbin:8000/ip").returncode == 0, "mesh traffic", 20)
    wait_for(lambda: destination_connections(cluster, "curl") > counted, "mesh traffic counted again", 10)
    assert {p["metadata"]["uid"] for p in pods(cluster)} == pods_before, "no pod was restarted"
