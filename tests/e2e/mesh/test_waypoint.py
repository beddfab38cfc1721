"""Waypoints end to end on real namespaces: `ambit waypoint apply`, Istio's helloworld and curl samples,
HTTP/1.1, HTTP/2 prior knowledge and a WebSocket through the waypoint, its request metrics, and an L7
AuthorizationPolicy with targetRefs.

One 3-node cluster is shared by the module and torn down whatever happens. Proof that a request went
through the waypoint, not around it: the waypoint's own ``istio_requests_total`` (reporter
``waypoint``) counts it with the client's principal, and the destination ztunnel admits covered
traffic only from the waypoint's identity (no bypass).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.apps.load import LoadResult
from ambit.proxy.config_dump import ConfigDump
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import AMBIT, SAMPLES, ambient_namespace, ambit, ready, temporary_cluster, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.timeout(300),
]  # the module fixture brings up a cluster and waypoints

NS = "wp"
CURL = f"spiffe://cluster.local/ns/{NS}/sa/curl"
ALLOW_GET_HELLO = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: hello-get-only
  namespace: {NS}
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: helloworld
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/{NS}/sa/curl"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/hello"]
"""
GRPC_ECHO = f"""apiVersion: v1
kind: Service
metadata:
  name: grpc-echo
  namespace: {NS}
spec:
  selector:
    app: grpc-echo
  ports:
  - name: grpc
    port: 7070
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: grpc-echo
  namespace: {NS}
spec:
  replicas: 1
  selector:
    matchLabels:
      app: grpc-echo
  template:
    metadata:
      labels:
        app: grpc-echo
    spec:
      containers:
      - name: grpc-echo
        image: ambit/grpc-echo
        command: ["ambit", "app", "grpc-echo", "serve", "--port", "7070"]
        ports:
        - containerPort: 7070
"""
GATEWAY_POLICY = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: waypoint-get-only
  namespace: {NS}
spec:
  targetRefs:
  - kind: Gateway
    group: gateway.networking.k8s.io
    name: waypoint
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/{NS}/sa/curl"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/hello"]
"""
PLAIN_NS = "plain"  # ambient, no waypoint: the "other services" of the all-replicas-down test
OTHER_CLIENT = f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: other
  namespace: {NS}
---
apiVersion: v1
kind: Pod
metadata:
  name: other
  namespace: {NS}
  labels:
    app: other
spec:
  serviceAccountName: other
  containers:
  - name: other
    image: curlimages/curl
    command: ["sleep", "infinity"]
"""


def handle(cluster: str) -> ClusterHandle:
    return ClusterHandle(cluster)


def pods(cluster: str, namespace: str = NS) -> list[dict[str, Any]]:
    return handle(cluster).pods(namespace)


def by_app(cluster: str, app: str) -> list[dict[str, Any]]:
    return [p for p in pods(cluster) if p["metadata"]["labels"].get("app") == app]


def waypoint_pods(cluster: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(cluster)
        if p["metadata"]["labels"].get("gateway.networking.k8s.io/gateway-name") == "waypoint"
    ]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if not (SAMPLES / "helloworld.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    with temporary_cluster(cluster_name("w"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "3")
        h = handle(name)
        h.apply(ambient_namespace(NS))
        for sample in ("helloworld.yaml", "curl.yaml"):
            h.apply((SAMPLES / sample).read_text(), namespace=NS)
        h.apply(OTHER_CLIENT)
        h.apply(GRPC_ECHO)
        h.apply(ambient_namespace(PLAIN_NS))
        h.apply((SAMPLES / "httpbin.yaml").read_text(), namespace=PLAIN_NS)
        ambit(name, "waypoint", "apply", "-n", NS, "--enroll-namespace", "--wait", "--timeout", "120")
        wait_for(
            lambda: len(pods(name)) == 7 and all(ready(p) for p in pods(name)),
            "helloworld v1/v2, curl, other, grpc-echo and two waypoint replicas ready",
            within=120,
        )
        wait_for(
            lambda: all(ready(p) for p in pods(name, PLAIN_NS)) and bool(pods(name, PLAIN_NS)),
            "httpbin ready",
        )
        yield name


def curl(cluster: str, *args: str, client: str = "curl") -> subprocess.CompletedProcess[str]:
    pod = by_app(cluster, client)[0]["metadata"]["name"]
    return handle(cluster).exec(["curl", "-sS", "-m", "10", *args], pod=pod, namespace=NS, check=False)


def waypoint_requests(cluster: str, **labels: str) -> float:
    """istio_requests_total summed over both waypoint replicas, for series carrying every ``labels``."""
    total = 0.0
    for pod in waypoint_pods(cluster):
        text = (
            handle(cluster)
            .exec(
                ["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"],
                pod=pod["metadata"]["name"],
                namespace=NS,
            )
            .stdout
        )
        for line in text.splitlines():
            if not line.startswith("istio_requests_total{"):
                continue
            if all(f'{key}="{value}"' in line for key, value in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_requests_reach_v1_and_v2_through_the_waypoint(cluster: str) -> None:
    before = waypoint_requests(cluster, reporter="waypoint", source_principal=CURL, response_code="200")
    versions = set()
    for _ in range(20):
        result = curl(cluster, "http://helloworld:5000/hello")
        assert result.returncode == 0, result.stderr
        found = re.match(r"Hello version: (v\d), instance: ", result.stdout)
        assert found, result.stdout
        versions.add(found.group(1))
    assert versions == {"v1", "v2"}
    after = waypoint_requests(cluster, reporter="waypoint", source_principal=CURL, response_code="200")
    assert after - before == 20, "every request was counted by the waypoint, with the curl principal"


def test_request_headers_access_log_histograms_and_config_dump(cluster: str) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    result = curl(cluster, "-H", f"traceparent: {traceparent}", "http://helloworld:5000/headers")
    assert result.returncode == 0, result.stderr
    headers = {k.lower(): v for k, v in json.loads(result.stdout)["headers"].items()}
    assert headers["traceparent"] == traceparent  # passed unchanged
    request_id = headers["x-request-id"]  # generated by the waypoint (curl sent none)
    assert re.fullmatch(r"[0-9a-f-]{36}", request_id)
    kept = curl(cluster, "-H", "x-request-id: mine-1", "http://helloworld:5000/headers")
    assert {k.lower(): v for k, v in json.loads(kept.stdout)["headers"].items()}["x-request-id"] == "mine-1"

    h = handle(cluster)
    logged, dumps = [], []
    for pod in waypoint_pods(cluster):
        name = pod["metadata"]["name"]
        text = h.layout.log(f"pod-{NS}-{name}-istio-proxy").read_text()
        logged += [
            line for line in text.splitlines() if "ambit.waypoint.access" in line and request_id in line
        ]
        dumps.append(
            ConfigDump.from_json(
                json.loads(
                    h.exec(
                        ["curl", "-s", "-m", "5", "http://127.0.0.1:15000/config_dump"],
                        pod=name,
                        namespace=NS,
                    ).stdout
                )
            )
        )
    assert len(logged) == 1, "one access-log line for the request, on the replica that served it"
    entry = json.loads(logged[0][logged[0].index("{") :])
    assert (entry["path"], entry["response_code"], entry["src.identity"]) == ("/headers", 200, CURL)
    key = f"{NS}/helloworld.{NS}.svc.cluster.local"
    for dump in dumps:
        assert dump.waypoint is not None and dump.waypoint.gateway == f"{NS}/waypoint"
        assert key in dump.waypoint.services and dump.synced
        assert {w.name for w in dump.workloads.values() if any(k == key for k, _ in w.services)} >= {
            p["metadata"]["name"] for p in by_app(cluster, "helloworld")
        }
    metrics_text = "".join(
        h.exec(
            ["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"],
            pod=p["metadata"]["name"],
            namespace=NS,
        ).stdout
        for p in waypoint_pods(cluster)
    )
    for family in (
        "istio_request_duration_milliseconds_bucket",
        "istio_request_bytes_bucket",
        "istio_response_bytes_bucket",
    ):
        assert f"{family}{{" in metrics_text and 'reporter="waypoint"' in metrics_text, family


def test_http2_prior_knowledge_through_the_waypoint(cluster: str) -> None:
    before = waypoint_requests(cluster, source_principal=CURL, response_code="200")
    result = curl(
        cluster, "--http2-prior-knowledge", "-w", "\\n%{http_version}", "http://helloworld:5000/hello"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Hello version: ") and result.stdout.endswith("\n2"), result.stdout
    assert waypoint_requests(cluster, source_principal=CURL, response_code="200") == before + 1


def test_websocket_through_the_waypoint(cluster: str) -> None:
    pod = by_app(cluster, "curl")[0]["metadata"]["name"]
    key = base64.b64encode(os.urandom(16)).decode()
    script = (
        "import socket,sys\n"
        "s=socket.create_connection(('helloworld',5000),timeout=10)\n"
        f"s.sendall(b'GET /ws HTTP/1.1\\r\\nHost: helloworld:5000\\r\\nUpgrade: websocket\\r\\n"
        f"Connection: Upgrade\\r\\nSec-WebSocket-Key: {key}\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n')\n"
        "head=b''\n"
        "while b'\\r\\n\\r\\n' not in head: head+=s.recv(1)\n"
        "sys.stdout.write(head.split(b'\\r\\n')[0].decode()+'\\n')\n"
        "payload=b'ping'\n"
        "mask=b'\\x01\\x02\\x03\\x04'\n"
        "s.sendall(bytes([0x81,0x80|len(payload)])+mask+bytes(b^mask[i%4] for i,b in enumerate(payload)))\n"
        "frame=s.recv(2)\n"
        "n=frame[1]&0x7f\n"
        "data=b''\n"
        "while len(data)<n: data+=s.recv(n-len(data))\n"
        "sys.stdout.write(data.decode()+'\\n')\n"
    )
    result = handle(cluster).exec(["python3", "-c", script], pod=pod, namespace=NS, check=False)
    assert result.returncode == 0, result.stderr
    status, echoed = result.stdout.splitlines()[:2]
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert re.fullmatch(r"helloworld-v[12]-\S+: ping", echoed), echoed


def test_grpc_unary_and_streaming_through_the_waypoint(cluster: str) -> None:
    before_ok = waypoint_requests(cluster, request_protocol="grpc", grpc_response_status="0")
    before_not_found = waypoint_requests(cluster, request_protocol="grpc", grpc_response_status="5")
    pod = by_app(cluster, "curl")[0]["metadata"]["name"]
    call = [AMBIT, "app", "grpc-echo", "call", "--target", "grpc-echo:7070", "--unary", "3", "--stream", "4"]
    result = handle(cluster).exec(call, pod=pod, namespace=NS, check=False)
    assert result.returncode == 0, (result.stdout, result.stderr)
    answer = json.loads(result.stdout)
    echo = by_app(cluster, "grpc-echo")[0]["metadata"]["name"]
    assert answer["unary"] == [f"{echo}: unary-{i}" for i in range(3)]
    assert answer["unary_trailers"] == {"x-echo-pod": echo}  # trailing metadata kept
    assert answer["stream"] == [f"{echo}: stream-{i}" for i in range(4)]
    assert (answer["fail_code"], answer["fail_details"]) == ("NOT_FOUND", "no such thing")
    # the waypoint saw them as gRPC: 3 unary + 1 stream OK, 1 NOT_FOUND (grpc-status 5)
    assert waypoint_requests(cluster, request_protocol="grpc", grpc_response_status="0") == before_ok + 4
    assert (
        waypoint_requests(cluster, request_protocol="grpc", grpc_response_status="5") == before_not_found + 1
    )


def test_l7_policy_allows_get_hello_from_curl_only(cluster: str) -> None:
    h = handle(cluster)
    h.apply(ALLOW_GET_HELLO)
    try:

        def answers() -> tuple[str, str, str]:
            get = curl(
                cluster, "-o", "/dev/null", "-w", "%{http_code}", "http://helloworld:5000/hello"
            ).stdout
            post = curl(cluster, "-X", "POST", "-w", "\n%{http_code}", "http://helloworld:5000/hello").stdout
            other = curl(
                cluster,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "http://helloworld:5000/hello",
                client="other",
            ).stdout
            return get, post, other

        wait_for(lambda: answers()[1].endswith("403"), "the policy reaches the waypoints", within=20)
        get, post, other = answers()
        assert get == "200"
        assert post == "RBAC: access denied\n403"
        assert other == "403"
    finally:
        h.delete("AuthorizationPolicy", "hello-get-only", NS)
    wait_for(
        lambda: (
            curl(
                cluster, "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}", "http://helloworld:5000/hello"
            ).stdout
            == "200"
        ),
        "the policy is gone",
        within=20,
    )


DENY_HELLO = f"""apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-hello
  namespace: {NS}
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: helloworld
  action: DENY
  rules:
  - to:
    - operation:
        paths: ["/hello"]
"""


def test_a_path_deny_is_not_sidestepped_by_another_spelling(cluster: str) -> None:
    h = handle(cluster)
    h.apply(DENY_HELLO)
    try:
        base = "http://helloworld:5000"
        wait_for(lambda: code(cluster, f"{base}/hello") == "403", "the DENY reaches the waypoints", 20)
        for spelling in ("//hello", "/./hello", "/x/../hello", "/%68ello", "/hello?x=1"):
            assert code(cluster, f"{base}{spelling}", path_as_is=True) == "403", spelling
        assert code(cluster, f"{base}/hello2") == "200"  # control: another path is not denied
    finally:
        h.delete("AuthorizationPolicy", "deny-hello", NS)


HBONE_PROBE = """
import asyncio, sys
from pathlib import Path
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.identity.tls import client_context
from ambit.model.identity import Identity
from ambit.net.hbone import TunnelRejected, connect_hbone
from ambit.protocol.hbone import request_headers

ca_dir, pod_ip, pod_sa, who, host = sys.argv[1:6]

async def main() -> None:
    ca = CertificateAuthority.load(Path(ca_dir))
    context = client_context(issue(ca, Identity("cluster.local", "wp", who)), ca.trust_bundle)
    conn = await connect_hbone(pod_ip, 15008, context, Identity("cluster.local", "wp", pod_sa))
    try:
        stream = await conn.open_stream(f"{pod_ip}:5000", request_headers(pod_ip, host=host or None))
    except TunnelRejected as exc:
        print(exc.status)
        return
    stream.write(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    reply = await stream.read_all()
    print(reply.split(b" ", 2)[1].decode())

asyncio.run(main())
"""


def test_a_peer_that_is_not_the_waypoint_is_refused_for_covered_traffic(cluster: str) -> None:
    """A raw HBONE client on a node, holding a real mesh certificate: for service-addressed traffic to
    helloworld (covered by the waypoint) only the waypoint's identity is admitted."""
    h = handle(cluster)
    target = next(p for p in by_app(cluster, "helloworld"))
    pod_ip, node = target["status"]["podIP"], target["spec"]["nodeName"]
    python = str(Path(AMBIT).parent / "python")
    service = f"helloworld.{NS}.svc.cluster.local"

    def probe(who: str, host: str) -> str:
        argv = [python, "-c", HBONE_PROBE, str(h.layout.ca_dir), pod_ip, "default", who, host]
        result = h.exec(argv, node=node, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert probe("curl", service) == "401"  # a mesh identity, but not the waypoint's: refused
    assert probe("waypoint", service) == "200"  # control: the waypoint's identity is admitted
    assert probe("curl", "") == "200"  # pod-addressed traffic is not covered by a service waypoint


def pod_ip_of(cluster: str, version: str) -> str:
    pod = next(p for p in by_app(cluster, "helloworld") if p["metadata"]["labels"].get("version") == version)
    return str(pod["status"]["podIP"])


def code(
    cluster: str, url: str, method: str = "GET", client: str = "curl", *, path_as_is: bool = False
) -> str:
    """The status curl got (``path_as_is``: send the path exactly as written, no ``..`` squashing)."""
    extra = ["--path-as-is"] if path_as_is else []
    return curl(
        cluster, *extra, "-X", method, "-o", "/dev/null", "-w", "%{http_code}", url, client=client
    ).stdout


def test_waypoint_for_all_covers_pod_addressed_traffic(cluster: str) -> None:
    h = handle(cluster)
    ambit(cluster, "waypoint", "apply", "-n", NS, "--for", "all")
    try:
        pod_url = f"http://{pod_ip_of(cluster, 'v1')}:5000/hello"
        vip_url = "http://helloworld:5000/hello"

        def through_waypoint() -> bool:
            before = waypoint_requests(cluster, source_principal=CURL)
            return (
                code(cluster, pod_url) == "200"
                and waypoint_requests(cluster, source_principal=CURL) == before + 1
            )

        wait_for(through_waypoint, "pod-IP traffic going through the waypoint", within=20)

        # a Service-targeted policy covers only service-addressed traffic, as in Istio
        h.apply(ALLOW_GET_HELLO)
        wait_for(
            lambda: code(cluster, vip_url, "POST") == "403", "the Service policy reaches the waypoints", 20
        )
        assert code(cluster, pod_url, "POST") == "200"

        # a Gateway-targeted policy covers everything through the waypoint, pod-addressed included
        h.apply(GATEWAY_POLICY)
        wait_for(
            lambda: code(cluster, pod_url, "POST") == "403", "the Gateway policy reaches the waypoints", 20
        )
        assert code(cluster, pod_url) == "200"
        assert code(cluster, pod_url, client="other") == "403"
        assert code(cluster, vip_url) == "200"
    finally:
        h.delete("AuthorizationPolicy", "hello-get-only", NS)
        h.delete("AuthorizationPolicy", "waypoint-get-only", NS)
        ambit(cluster, "waypoint", "apply", "-n", NS, "--for", "service")
    wait_for(lambda: code(cluster, pod_url, "POST") == "200", "back to a service waypoint, no policy", 20)


def test_a_replica_restarted_with_the_control_plane_down_serves_from_its_cache(cluster: str) -> None:
    h = handle(cluster)
    victim = waypoint_pods(cluster)[0]["metadata"]["name"]
    log = h.layout.log(f"pod-{NS}-{victim}-istio-proxy")
    h.stop("controlplane")
    try:
        starts = log.read_text().count("config from the cache")
        h.kill("pod", victim, namespace=NS)  # SIGKILL; the kubelet restarts the process
        wait_for(
            lambda: log.read_text().count("config from the cache") > starts,
            "the replica back from its cache",
            30,
        )

        def served_by_victim() -> bool:
            assert code(cluster, "http://helloworld:5000/hello") == "200"  # never fails meanwhile
            pod = next(p for p in waypoint_pods(cluster) if p["metadata"]["name"] == victim)
            text = h.exec(
                ["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"],
                pod=pod["metadata"]["name"],
                namespace=NS,
            ).stdout
            return 'response_code="200"' in text

        wait_for(served_by_victim, "the restarted replica serving with no control plane", 30, 0.2)
    finally:
        h.start("controlplane")
    wait_for(lambda: h.status().controlplane[0] == h.status().controlplane[1], "the control plane back", 60)


RATE = 100
HA_DURATION = 22.0


def load(cluster: str, out: Path, duration: float) -> subprocess.Popen[str]:
    """`ambit app load` in the curl pod: new-connection GETs through the waypoint, every one recorded."""
    args = [
        AMBIT,
        "app",
        "load",
        "http://helloworld:5000/hello",
        "--rate",
        str(RATE),
        "--duration",
        str(duration),
    ]
    args += ["--mode", "new", "--timeout", "5", "--json", str(out)]
    pod = by_app(cluster, "curl")[0]["metadata"]["name"]
    return handle(cluster).popen(
        args, pod=pod, namespace=NS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], out: Path, duration: float) -> LoadResult:
    stdout, stderr = proc.communicate(timeout=duration + 60)
    assert out.exists(), f"the load client wrote no records:\n{stdout}\n{stderr}"
    return LoadResult.from_json(out.read_text())


def client_connection_records(cluster: str) -> list[dict[str, Any]]:
    """The access-log lines (one per connection: its ConnectionRecord) of the curl pod's ztunnel."""
    node = by_app(cluster, "curl")[0]["spec"]["nodeName"]
    lines = ambit(cluster, "logs", f"ztunnel-{node}").stdout.splitlines()
    return [
        json.loads(line[line.index("{") :])
        for line in lines
        if "ambit.ztunnel.access" in line and "{" in line
    ]


def test_killing_one_of_two_replicas_fails_only_its_open_streams(cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    replicas = [p["metadata"]["name"] for p in waypoint_pods(cluster)]
    assert len(replicas) == 2
    before = waypoint_requests(cluster)
    proc = load(cluster, out, HA_DURATION)
    try:
        wait_for(
            lambda: waypoint_requests(cluster) >= before + 300,
            "the load to run through the waypoint",
            30,
            0.5,
        )
        victim = replicas[0]
        killed_at = time.monotonic()
        handle(cluster).kill("pod", victim, namespace=NS)  # SIGKILL: it writes nothing more
    finally:
        result = finish(proc, out, HA_DURATION)
    kill = killed_at - result.started_monotonic
    assert result.total >= RATE * HA_DURATION * 0.95, f"only {result.total} requests scheduled"
    assert result.retried == 0, "the load client retried requests on new connections: a failure was hidden"
    assert 2 < kill < HA_DURATION - 10, f"the kill was {kill:.1f} s into the load"
    reset = [
        r
        for r in client_connection_records(cluster)
        if r.get("dst.workload") == victim and r.get("outcome") == "error"
    ]
    served = {r.get("dst.workload") for r in client_connection_records(cluster) if r.get("outcome") == "ok"}
    assert set(replicas) <= served, f"both replicas carried traffic: {served}"
    failures = [(round(r.scheduled - kill, 2), r.outcome, r.detail) for r in result.failures]
    assert result.failed <= len(reset), (
        f"{result.failed} failed, {len(reset)} streams to {victim} reset: {failures[:10]}"
    )
    print(
        f"HA kill of {victim} at {kill:.2f} s: {result.total} requests, {result.failed} failed, "
        f"{len(reset)} streams to it reset"
    )
    late = [f for f in failures if f[0] >= 2.0]
    assert not late, f"failures 2 s or more after the kill: {late[:10]}"
    wait_for(
        lambda: len(waypoint_pods(cluster)) == 2 and all(ready(p) for p in waypoint_pods(cluster)),
        "the killed replica back",
        60,
    )


def test_all_replicas_down_fails_closed_and_service_returns(cluster: str) -> None:
    h = handle(cluster)
    replicas = [p["metadata"]["name"] for p in waypoint_pods(cluster)]
    for name in replicas:
        h.stop("pod", name, namespace=NS)
    try:
        wait_for(lambda: not any(ready(p) for p in waypoint_pods(cluster)), "both replicas unready", 30)
        node = by_app(cluster, "curl")[0]["spec"]["nodeName"]

        def client_sees_no_ready_replica() -> bool:
            workloads = h.ztunnel_config(node)["workloads"].values()
            return all(w["status"] == "UNHEALTHY" for w in workloads if w["name"] in replicas)

        wait_for(client_sees_no_ready_replica, "the client ztunnel to see both replicas unready", 20)
        refused = curl(cluster, "-o", "/dev/null", "-w", "%{http_code}", "http://helloworld:5000/hello")
        # fails closed: the client ztunnel resets the connection; a bypass would have answered 200
        assert refused.returncode != 0 and refused.stdout in ("", "000"), (refused.stdout, refused.stderr)
        # other services are untouched: 5 s of load on httpbin (ambient, no waypoint), 0 failed
        out = Path(h.layout.root) / "plain-load.json"
        pod = by_app(cluster, "curl")[0]["metadata"]["name"]
        args = [
            AMBIT,
            "app",
            "load",
            f"http://httpbin.{PLAIN_NS}:8000/get",
            "--rate",
            "50",
            "--duration",
            "5",
        ]
        args += ["--mode", "new", "--timeout", "5", "--json", str(out)]
        h.exec(args, pod=pod, namespace=NS, timeout=60)
        other = LoadResult.from_json(out.read_text())
        assert other.total >= 240 and other.failed == 0 and other.retried == 0, (other.total, other.failed)
    finally:
        for name in replicas:
            h.start("pod", name, namespace=NS)
    wait_for(lambda: any(ready(p) for p in waypoint_pods(cluster)), "a replica ready again", 60, 0.1)
    ready_at = time.monotonic()
    wait_for(
        lambda: (
            curl(cluster, "-o", "/dev/null", "-w", "%{http_code}", "http://helloworld:5000/hello").stdout
            == "200"
        ),
        "the service back through the waypoint",
        10,
        0.2,
    )
    assert time.monotonic() - ready_at <= 10
