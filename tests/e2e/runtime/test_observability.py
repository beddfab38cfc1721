"""Looking into a running cluster: `ambit logs` (a pod's own log, a ztunnel's access log, the daemon's),
`ambit ztunnel-config workloads|services|policies|certificates|connections` (tables and `-o json`), and a
ztunnel's `/config_dump` on its admin port (127.0.0.1:15000 in the node's namespace).

One 2-node cluster (zones a, b) with ztunnels and Istio's httpbin + curl in an ambient namespace is shared
by the module and torn down with `ambit down` whatever happens. The CLI is used for what is under test
(`ambit logs`, `ambit ztunnel-config`) and for `ambit up`; everything else (objects, exec in pods and
nodes) goes through :class:`ClusterHandle`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import SAMPLES, ambient_namespace, ambit, ready, temporary_cluster, wait_for

pytestmark = pytest.mark.root

NAMESPACE = "mesh"
AMBIENT_NS = ambient_namespace(NAMESPACE)
ZONES = {"node1": "a", "node2": "b"}
CURL_ID = "spiffe://cluster.local/ns/mesh/sa/curl"
HTTPBIN_ID = "spiffe://cluster.local/ns/mesh/sa/httpbin"
DENY_NOBODY = """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-nobody
  namespace: mesh
spec:
  selector:
    matchLabels:
      app: httpbin
  action: DENY
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/elsewhere/sa/nobody"]
"""
# Opens one connection to httpbin through the mesh, completes one request on it, then holds it open.
HOLD = """
import socket, sys, time
s = socket.create_connection(("httpbin", 8000), timeout=10)
s.sendall(b"GET /hold HTTP/1.1\\r\\nHost: httpbin\\r\\n\\r\\n")
print(s.recv(65536).split(b"\\r\\n", 1)[0].decode(), flush=True)
time.sleep(60)
"""


def pods(cluster: str, namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(namespace)


def by_app(cluster: str) -> dict[str, dict[str, Any]]:
    """The mesh pods by their app label (httpbin, curl)."""
    return {p["metadata"]["labels"]["app"]: p for p in pods(cluster)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if not (SAMPLES / "httpbin.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    with temporary_cluster(cluster_name("o"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "2", "--zones", "a,b")
        handle = ClusterHandle(name)
        handle.apply(AMBIENT_NS)
        for sample in ("httpbin.yaml", "curl.yaml"):
            handle.apply((SAMPLES / sample).read_text(), namespace=NAMESPACE)
        wait_for(lambda: len(pods(name)) == 2 and all(ready(p) for p in pods(name)), "ambient pods ready", 60)
        yield name


def curl(cluster: str, client: str, url: str) -> subprocess.CompletedProcess[str]:
    return ClusterHandle(cluster).exec(
        ["curl", "-sS", "-m", "5", url], pod=client, namespace=NAMESPACE, check=False
    )


def access_lines(cluster: str, node: str) -> list[dict[str, Any]]:
    """The structured access-log lines in `ambit logs ztunnel-NODE`."""
    out = ambit(cluster, "logs", f"ztunnel-{node}").stdout
    marker = "ambit.ztunnel.access: "
    return [json.loads(line.split(marker, 1)[1]) for line in out.splitlines() if marker in line]


def config(cluster: str, section: str, *node: str) -> Any:
    args = ["--node", node[0]] if node else []
    return json.loads(ambit(cluster, "ztunnel-config", section, *args, "-o", "json").stdout)


def test_logs_show_the_request_in_the_pod_log_and_the_connection_in_both_ztunnels(cluster: str) -> None:
    apps = by_app(cluster)
    server, client = apps["httpbin"], apps["curl"]
    server_node, client_node = server["spec"]["nodeName"], client["spec"]["nodeName"]
    path = f"/obs-{uuid.uuid4().hex}"
    assert path not in ambit(cluster, "logs", server["metadata"]["name"], "-n", NAMESPACE).stdout

    def seen(node: str, direction: str) -> list[dict[str, Any]]:
        return [
            line
            for line in access_lines(cluster, node)
            if line["direction"] == direction
            and line["src.identity"] == CURL_ID
            and line["dst.workload"] == server["metadata"]["name"]
        ]

    inbound_before = len(seen(server_node, "inbound"))
    outbound_before = len(seen(client_node, "outbound"))
    result = curl(cluster, client["metadata"]["name"], f"http://httpbin:8000{path}")
    assert result.returncode == 0 and json.loads(result.stdout)["path"] == path, result

    # The sample app logs every request: method, path, status, and the peer it saw (the client pod).
    app_log = ambit(cluster, "logs", server["metadata"]["name"], "-n", NAMESPACE).stdout
    [line] = [x for x in app_log.splitlines() if path in x]
    assert f" {client['status']['podIP']}:" in line and f"GET {path} 200" in line, line

    # One access-log line per connection, written when it closes, on both ends of the tunnel.
    wait_for(lambda: len(seen(server_node, "inbound")) > inbound_before, "the server ztunnel's line", 10)
    wait_for(lambda: len(seen(client_node, "outbound")) > outbound_before, "the client ztunnel's line", 10)
    inbound = seen(server_node, "inbound")[-1]
    assert inbound["outcome"] == "ok" and inbound["error"] is None
    assert inbound["src.addr"].split(":")[0] == client["status"]["podIP"]
    assert inbound["dst.addr"] == f"{server['status']['podIP']}:8080"
    assert inbound["dst.identity"] == HTTPBIN_ID
    assert inbound["bytes_sent"] > len(path) and inbound["bytes_recv"] > 0
    outbound = seen(client_node, "outbound")[-1]
    assert outbound["dst.service"] == "httpbin.mesh.svc.cluster.local"
    assert outbound["dst.addr"].endswith(":8000") and outbound["outcome"] == "ok"


def test_logs_of_the_daemon_and_of_an_unknown_component(cluster: str) -> None:
    assert f"runtime daemon of {cluster} ready" in ambit(cluster, "logs", "daemon").stdout
    missing = ambit(cluster, "logs", "no-such-thing", check=False)
    assert missing.returncode != 0 and "no log for no-such-thing" in missing.stderr


def test_ztunnel_config_workloads_services_and_certificates(cluster: str) -> None:
    apps = by_app(cluster)
    server = apps["httpbin"]
    server_node, name, ip = server["spec"]["nodeName"], server["metadata"]["name"], server["status"]["podIP"]
    # Every node's ztunnel knows the workload (keyed by node when no --node is given).
    workloads = config(cluster, "workloads")
    assert set(workloads) == set(ZONES)
    for node_view in workloads.values():
        [mine] = [w for w in node_view.values() if w["name"] == name]
        assert mine["namespace"] == NAMESPACE and mine["addresses"] == [ip] and mine["node"] == server_node
        assert mine["tunnel_protocol"] == "HBONE" and mine["service_account"] == "httpbin"
    services = config(cluster, "services", server_node)
    vip = ClusterHandle(cluster).get("Service", "httpbin", NAMESPACE)["spec"]["clusterIP"]
    assert any(
        s["name"] == "httpbin" and s["namespace"] == NAMESPACE and vip in s["vips"] for s in services.values()
    )
    # The certificate of the identity served on that node, valid now, and expiring (a short-lived leaf).
    certs = config(cluster, "certificates", server_node)
    assert HTTPBIN_ID in certs
    if apps["curl"]["spec"]["nodeName"] != server_node:
        assert CURL_ID not in certs, "a ztunnel holds certificates only for the identities it serves"
    not_after = datetime.fromisoformat(certs[HTTPBIN_ID]["not_after"])
    now = datetime.now(UTC)
    assert now < not_after < now + timedelta(days=7), not_after
    table = ambit(cluster, "ztunnel-config", "certificates", "--node", server_node).stdout
    [row] = [line.split() for line in table.splitlines() if line.startswith(HTTPBIN_ID)]
    assert row[2:4] == ["Available", "true"], row


def test_ztunnel_config_policies_follow_the_store(cluster: str) -> None:
    node = by_app(cluster)["httpbin"]["spec"]["nodeName"]

    def names() -> list[str]:
        return [p["name"] for p in config(cluster, "policies", node).values()]

    assert "deny-nobody" not in names()
    handle = ClusterHandle(cluster)
    handle.apply(DENY_NOBODY)
    try:
        wait_for(lambda: "deny-nobody" in names(), "the policy in the ztunnel's config", 20)
        policy = config(cluster, "policies", node)[f"{NAMESPACE}/deny-nobody"]
        assert policy["action"] == "DENY" and policy["scope"] == "WORKLOAD_SELECTOR"
        [rule] = policy["rules"]
        [clause] = rule["clauses"]
        [match] = clause["matches"]
        assert match["principals"] == [{"kind": "EXACT", "value": "cluster.local/ns/elsewhere/sa/nobody"}]
        table = ambit(cluster, "ztunnel-config", "policies", "--node", node).stdout
        assert any(
            line.split()[:4] == [NAMESPACE, "deny-nobody", "Deny", "WorkloadSelector"]
            for line in table.splitlines()
        ), table
    finally:
        handle.delete("AuthorizationPolicy", "deny-nobody", NAMESPACE)
    wait_for(lambda: "deny-nobody" not in names(), "the policy gone from the ztunnel's config", 20)


def test_ztunnel_config_connections_lists_a_live_inbound_connection(cluster: str) -> None:
    apps = by_app(cluster)
    server, client = apps["httpbin"], apps["curl"]
    node = server["spec"]["nodeName"]
    hold_argv = [sys.executable, "-c", HOLD]
    with ClusterHandle(cluster).popen(
        hold_argv,
        pod=client["metadata"]["name"],
        namespace=NAMESPACE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as hold:
        try:
            assert hold.stdout is not None
            assert hold.stdout.readline().strip() == "HTTP/1.1 200 OK"
            live = [
                c
                for c in config(cluster, "connections", node)
                if c["source"].split(":")[0] == client["status"]["podIP"]
            ]
            assert len(live) == 1, live
            [conn] = live
            assert conn["direction"] == "inbound" and conn["protocol"] == "HBONE"
            assert conn["workload"] == f"{NAMESPACE}/{server['metadata']['name']}"
            assert conn["destination"] == f"{server['status']['podIP']}:8080"
            assert conn["source_identity"] == CURL_ID and conn["destination_identity"] == HTTPBIN_ID
            assert conn["bytes_received"] > 0 and conn["bytes_sent"] > 0
        finally:
            hold.terminate()
    wait_for(lambda: config(cluster, "connections", node) == [], "the closed connection gone", 10)


def test_config_dump_on_the_admin_port(cluster: str) -> None:
    server = by_app(cluster)["httpbin"]
    node, uid = server["spec"]["nodeName"], server["metadata"]["uid"]
    handle = ClusterHandle(cluster)
    out = handle.exec(["curl", "-sS", "-m", "5", "http://localhost:15000/config_dump"], node=node)
    dump = json.loads(out.stdout)
    assert dump["synced"] is True
    workload = dump["workloads"][uid]
    assert workload["name"] == server["metadata"]["name"] and workload["addresses"] == [
        server["status"]["podIP"]
    ]
    assert workload["locality"]["zone"] == ZONES[node], "locality comes from the node's zone label"
    assert dump["pods"][uid]["state"] == "serving" and dump["pods"][uid]["identity"] == HTTPBIN_ID
    not_after = datetime.fromisoformat(dump["certificates"][HTTPBIN_ID]["not_after"])
    assert not_after > datetime.now(UTC)
    # The admin port is bound to loopback only: not reachable on the node's underlay address.
    underlay = {"node1": "172.30.0.11", "node2": "172.30.0.12"}[node]
    other = next(n for n in ZONES if n != node)
    remote = handle.exec(
        ["curl", "-sS", "-m", "3", f"http://{underlay}:15000/config_dump"], node=other, check=False
    )
    assert remote.returncode != 0
    metrics = handle.exec(["curl", "-sS", "-m", "3", f"http://{underlay}:15020/metrics"], node=other)
    assert "istio_tcp_connections_opened_total" in metrics.stdout  # while metrics are served on every address
