"""Traffic management in the waypoint, end to end: Gateway API routes (GAMMA) on Istio's helloworld —
a weighted 90/10 split measured against its binomial bound, a header match, request timeouts and
retries, precedence; VirtualService faults; DestinationRule outlier detection and connection pool;
HTTPLocalRateLimitPolicy burst, sustained rate and per-client override; RequestMirror.

One 2-node cluster with a waypoint in namespace `tm`. Every request is made from the curl pod by one
Python process (keep-alive, so thousands of requests take seconds) that prints what it got.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import SAMPLES, ambient_namespace, ambit, ready, temporary_cluster, wait_for

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

NS = "tm"
SPLIT = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: helloworld
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - matches:
    - headers:
      - name: x-canary
        value: "true"
    backendRefs:
    - name: helloworld-v2
      port: 5000
  - backendRefs:
    - name: helloworld-v1
      port: 5000
      weight: 90
    - name: helloworld-v2
      port: 5000
      weight: 10
"""
TIMEOUT = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: helloworld
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - timeouts:
      request: 500ms
    backendRefs:
    - name: helloworld
      port: 5000
"""
BACKENDS = f"""apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: {NS}
spec:
  selector:
    app: backend
  ports:
  - name: http
    port: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: flaky
  namespace: {NS}
  labels:
    app: backend
spec:
  containers:
  - name: app
    image: ambit/sample
    env:
    - name: SAMPLE_FAIL_STATUSES
      value: "200:0.5,503:0.5"
    ports:
    - containerPort: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: steady
  namespace: {NS}
  labels:
    app: backend
spec:
  containers:
  - name: app
    image: ambit/sample
    ports:
    - containerPort: 8000
"""
OUTLIER_BACKENDS = f"""apiVersion: v1
kind: Service
metadata:
  name: outlier
  namespace: {NS}
spec:
  selector:
    app: outlier
  ports:
  - name: http
    port: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: broken
  namespace: {NS}
  labels:
    app: outlier
spec:
  containers:
  - name: app
    image: ambit/sample
    env:
    - name: SAMPLE_FAIL_STATUSES
      value: "503:1"
    ports:
    - containerPort: 8000
---
apiVersion: v1
kind: Pod
metadata:
  name: fine
  namespace: {NS}
  labels:
    app: outlier
spec:
  containers:
  - name: app
    image: ambit/sample
    ports:
    - containerPort: 8000
"""


def retry_route(retry: str) -> str:
    """An HTTPRoute on the backend Service with ``retry`` (YAML, already indented) or none."""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: backend
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: backend
    port: 8000
  rules:
  - backendRefs:
    - name: backend
      port: 8000
{retry}"""


# Sends N GETs over keep-alive connections (a new one after any close) and prints one JSON line:
# {"statuses": {code: count}, "bodies": {first line: count}, "seconds": [elapsed per request]}.
CLIENT = r"""
import http.client, json, sys, time, collections
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
headers = dict(h.split(":", 1) for h in sys.argv[5:])
statuses, bodies, seconds = collections.Counter(), collections.Counter(), []
conn = None
for _ in range(n):
    if conn is None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
    started = time.monotonic()
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    seconds.append(round(time.monotonic() - started, 3))
    statuses[response.status] += 1
    bodies[body.split(",")[0].strip()] += 1
    if response.getheader("connection", "").lower() == "close":
        conn.close()
        conn = None
print(json.dumps({"statuses": statuses, "bodies": bodies, "seconds": seconds}))
"""


def pods(cluster: str) -> list[dict[str, Any]]:
    return ClusterHandle(cluster).pods(NS)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    if not (SAMPLES / "helloworld-versions.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    with temporary_cluster(cluster_name("t"), tmp_path_factory.mktemp("run")) as name:
        ambit(name, "up", "--nodes", "2")
        h = ClusterHandle(name)
        h.apply(ambient_namespace(NS))
        for sample in ("helloworld.yaml", "helloworld-versions.yaml", "curl.yaml"):
            h.apply((SAMPLES / sample).read_text(), namespace=NS)
        h.apply(BACKENDS)
        h.apply(OUTLIER_BACKENDS)
        ambit(name, "waypoint", "apply", "-n", NS, "--enroll-namespace", "--wait", "--timeout", "120")
        wait_for(
            lambda: len(pods(name)) == 9 and all(ready(p) for p in pods(name)),
            "helloworld v1/v2, curl, the backends and two waypoint replicas ready",
            within=120,
        )
        yield name


def requests(
    cluster: str, n: int, path: str = "/hello", *headers: str, host: str = "helloworld", port: int = 5000
) -> dict[str, Any]:
    h = ClusterHandle(cluster)
    client = next(p for p in pods(cluster) if p["metadata"]["labels"].get("app") == "curl")["metadata"][
        "name"
    ]
    argv = ["python3", "-c", CLIENT, host, str(port), path, str(n), *headers]
    result = h.exec(argv, pod=client, namespace=NS, timeout=120)
    return dict(json.loads(result.stdout))


def binomial_bounds(n: int, p: float, z: float = 3.29) -> tuple[float, float]:
    """The 99.9 % interval (normal approximation) of a Binomial(n, p) count."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


def version_counts(result: dict[str, Any]) -> tuple[int, int]:
    bodies = result["bodies"]
    return bodies.get("Hello version: v1", 0), bodies.get("Hello version: v2", 0)


def test_a_90_10_split_and_a_header_match(cluster: str) -> None:
    h = ClusterHandle(cluster)
    before = requests(cluster, 200)
    v1, v2 = version_counts(before)
    assert v1 > 40 and v2 > 40, "control: without a route both versions get about half"
    h.apply(SPLIT)
    try:
        wait_for(
            lambda: version_counts(requests(cluster, 50, "/hello", "x-canary:true")) == (0, 50),
            "the route reaches the waypoints",
            within=30,
        )
        result = requests(cluster, 2000)
        assert result["statuses"] == {"200": 2000}, result["statuses"]
        v1, v2 = version_counts(result)
        low, high = binomial_bounds(2000, 0.10)
        assert v1 + v2 == 2000 and low <= v2 <= high, (v1, v2, low, high)
        marked = requests(cluster, 200, "/hello", "x-canary:true")
        assert version_counts(marked) == (0, 200), "marked requests go to v2 only"
    finally:
        h.delete("HTTPRoute", "helloworld", NS)


def test_a_request_timeout_answers_504(cluster: str) -> None:
    h = ClusterHandle(cluster)
    h.apply(TIMEOUT)
    try:
        wait_for(
            lambda: requests(cluster, 1, "/delay/2")["statuses"] == {"504": 1}, "the timeout applies", 30
        )
        result = requests(cluster, 5, "/delay/2")
        assert result["statuses"] == {"504": 5}
        assert all(0.5 <= s <= 1.0 for s in result["seconds"]), result["seconds"]
        assert requests(cluster, 5, "/hello")["statuses"] == {"200": 5}  # control: a fast path is untouched
    finally:
        h.delete("HTTPRoute", "helloworld", NS)


def backend_failures(cluster: str, n: int) -> int:
    result = requests(cluster, n, "/get", host="backend", port=8000)
    statuses = result["statuses"]
    assert set(statuses) <= {"200", "503"}, statuses
    return int(statuses.get("503", 0))


def test_retries_hide_a_flaky_backend_and_istio_default_does_not_retry_503(cluster: str) -> None:
    """Of two backend pods, one fails half its requests by itself. Retries to another host hide it;
    without retries a quarter of the requests fail (the control); Istio's default policy (no ``retry``
    on the route) does not retry 503 either."""
    h = ClusterHandle(cluster)
    low, high = binomial_bounds(1000, 0.25)
    try:
        h.apply(retry_route("    retry:\n      attempts: 0\n"))
        wait_for(lambda: backend_failures(cluster, 40) > 0, "the route reaches the waypoints", 30)
        failed = backend_failures(cluster, 1000)
        assert low <= failed <= high, (failed, low, high)

        h.apply(retry_route("    retry:\n      attempts: 2\n      codes: [503]\n"))
        wait_for(lambda: backend_failures(cluster, 100) == 0, "the retry policy reaches the waypoints", 30)
        assert backend_failures(cluster, 1000) == 0

        h.apply(retry_route(""))  # no retry: Istio's default, which does not retry 503 (since 1.24)
        wait_for(lambda: backend_failures(cluster, 60) > 0, "the default policy reaches the waypoints", 30)
        failed = backend_failures(cluster, 1000)
        assert low <= failed <= high, (failed, low, high)
    finally:
        h.delete("HTTPRoute", "backend", NS)


def hello_route(name: str, version: str, match: str) -> str:
    """An HTTPRoute on helloworld sending ``match`` (YAML of one match, indented) to ``version``."""
    return f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {name}
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - matches:
{match}
    backendRefs:
    - name: helloworld-{version}
      port: 5000
"""


def waypoint_pods(cluster: str) -> list[str]:
    """The names of the waypoint's replicas in the namespace."""
    return [
        p["metadata"]["name"]
        for p in pods(cluster)
        if p["metadata"]["labels"].get("gateway.networking.k8s.io/gateway-name") == "waypoint"
    ]


def waypoint_dumps(cluster: str) -> list[dict[str, Any]]:
    """Every waypoint replica's ``/config_dump``."""
    h = ClusterHandle(cluster)
    url = "http://127.0.0.1:15000/config_dump"
    return [
        json.loads(h.exec(["curl", "-s", "-m", "5", url], pod=pod, namespace=NS).stdout)
        for pod in waypoint_pods(cluster)
    ]


def waypoints_have(cluster: str, *names: str, kind: str = "HTTPRoute") -> bool:
    """Whether every waypoint replica's config dump lists the routes ``names`` of ``kind``."""
    for dump in waypoint_dumps(cluster):
        keys = list(dump.get("routes", {}))
        if not all(any(key.startswith(f"{NS}/{kind}/{name}/") for key in keys) for name in names):
            return False
    return True


def waypoints_list(cluster: str, section: str, name: str) -> bool:
    """Whether every waypoint replica's config dump lists ``<ns>/<name>`` in ``section``
    (``traffic_policies``: DestinationRules, ``rate_limits``: HTTPLocalRateLimitPolicies)."""
    return all(f"{NS}/{name}" in dump.get(section, {}) for dump in waypoint_dumps(cluster))


def all_to(cluster: str, version: str, *headers: str) -> bool:
    return version_counts(requests(cluster, 20, "/hello", *headers)) == (
        (20, 0) if version == "v1" else (0, 20)
    )


@pytest.mark.parametrize(
    ("older", "newer", "winner", "headers"),
    [
        pytest.param(
            "    - path: {type: PathPrefix, value: /}\n      headers: [{name: x-a, value: '1'}]\n",
            "    - path: {type: Exact, value: /hello}\n",
            "v2",
            ("x-a:1",),
            id="exact path beats a prefix with more headers",
        ),
        pytest.param(
            "    - path: {type: PathPrefix, value: /hello}\n",
            "    - path: {type: PathPrefix, value: /}\n      method: GET\n",
            "v1",
            (),
            id="the longest prefix beats a method",
        ),
        pytest.param(
            "    - path: {type: PathPrefix, value: /}\n      headers: [{name: x-a, value: '1'}]\n",
            "    - path: {type: PathPrefix, value: /}\n      method: GET\n",
            "v2",
            ("x-a:1",),
            id="a method beats headers",
        ),
        pytest.param(
            "    - path: {type: Exact, value: /hello}\n",
            "    - path: {type: Exact, value: /hello}\n",
            "v1",
            (),
            id="a tie goes to the oldest route",
        ),
    ],
)
def test_route_precedence(
    cluster: str, older: str, newer: str, winner: str, headers: tuple[str, ...]
) -> None:
    """Two routes on one Service whose matches both match: the Gateway API's precedence decides. The
    older route is named so that the name order would pick the newer one (only the age may decide a tie);
    the creation timestamps are a second apart (the store's resolution)."""
    h = ClusterHandle(cluster)
    loser = "v2" if winner == "v1" else "v1"
    older_version, newer_version = ("v1", "v2")
    h.apply(hello_route("z-older", older_version, older))
    try:
        time.sleep(1.1)
        h.apply(hello_route("a-newer", newer_version, newer))
        wait_for(lambda: waypoints_have(cluster, "z-older", "a-newer"), "both routes in every waypoint", 30)
        assert all_to(cluster, winner, *headers), f"{winner} takes every request"
        assert not all_to(cluster, loser, *headers)
    finally:
        h.delete("HTTPRoute", "z-older", NS)
        h.delete("HTTPRoute", "a-newer", NS)


def virtual_service(http_rule: str) -> str:
    """A VirtualService on helloworld with one http rule (YAML, indented under ``http:``)."""
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: helloworld
  namespace: {NS}
spec:
  hosts:
  - helloworld
  http:
{http_rule}"""


ROUTE_TO_HELLOWORLD = """    route:
    - destination:
        host: helloworld
        port:
          number: 5000
"""


def test_an_injected_abort_is_not_retried(cluster: str) -> None:
    h = ClusterHandle(cluster)
    rule = "  - fault:\n      abort:\n        httpStatus: 503\n        percentage:\n          value: 50\n"
    rule += "    retries:\n      attempts: 3\n      retryOn: 5xx\n" + ROUTE_TO_HELLOWORLD
    h.apply(virtual_service(rule))
    try:
        wait_for(lambda: "503" in requests(cluster, 40)["statuses"], "the fault reaches the waypoints", 30)
        statuses = requests(cluster, 1000)["statuses"]
        low, high = binomial_bounds(1000, 0.5)
        # retried, an abort would reach the client at 0.5 ** 4 = 6 %; not retried (as Envoy), at 50 %
        assert low <= statuses.get("503", 0) <= high, (statuses, low, high)
    finally:
        h.delete("VirtualService", "helloworld", NS)


def test_an_injected_delay_does_not_count_against_the_route_timeout(cluster: str) -> None:
    h = ClusterHandle(cluster)
    rule = "  - fault:\n      delay:\n        fixedDelay: 300ms\n        percentage:\n          value: 30\n"
    rule += "    timeout: 200ms\n" + ROUTE_TO_HELLOWORLD
    h.apply(virtual_service(rule))
    try:
        wait_for(lambda: max(requests(cluster, 20)["seconds"]) >= 0.3, "the delay reaches the waypoints", 30)
        result = requests(cluster, 200)
        assert result["statuses"] == {"200": 200}, "a delayed request is not cut by the 200 ms timeout"
        delayed = sum(1 for s in result["seconds"] if s >= 0.3)
        low, high = binomial_bounds(200, 0.3)
        assert low <= delayed <= high, (delayed, low, high)
    finally:
        h.delete("VirtualService", "helloworld", NS)


TRACE = r"""
import http.client, json, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
conn = http.client.HTTPConnection(host, port, timeout=10)
start, trace = time.monotonic(), []
while time.monotonic() - start < seconds:
    conn.request("GET", "/get")
    response = conn.getresponse()
    response.read()
    trace.append((round(time.monotonic() - start, 3), response.status))
    time.sleep(0.02)
print(json.dumps(trace))
"""
OUTLIER_RULE = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: outlier
  namespace: {NS}
spec:
  host: outlier
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 4s
      maxEjectionPercent: 100
"""


def test_outlier_detection_ejects_a_failing_backend_inline(cluster: str) -> None:
    """`broken` answers 503 to everything, `fine` 200. With consecutive5xxErrors 3, a 4 s base ejection
    and a 1 s interval: exactly 3 failures, then none while it is ejected (4 s: base x 1), 3 more when it
    is back, none for 8 s (base x 2), 3 more, then none for 12 s (past the end of the 20 s trace).
    Returns happen at interval sweeps, so each gap is its ejection time plus at most one interval."""
    h = ClusterHandle(cluster)
    h.apply(OUTLIER_RULE)
    try:
        client = next(p for p in pods(cluster) if p["metadata"]["labels"].get("app") == "curl")["metadata"][
            "name"
        ]

        def trace(seconds: float) -> list[tuple[float, int]]:
            out = h.exec(
                ["python3", "-c", TRACE, "outlier", "8000", str(seconds)],
                pod=client,
                namespace=NS,
                timeout=60,
            )
            return [(t, s) for t, s in json.loads(out.stdout)]

        wait_for(
            lambda: waypoints_list(cluster, "traffic_policies", "outlier"), "the rule in every waypoint", 30
        )
        failures = [t for t, s in trace(20.0) if s == 503]
        assert len(failures) == 9, failures
        bursts = [failures[0:3], failures[3:6], failures[6:9]]
        first_gap, second_gap = bursts[1][0] - bursts[0][-1], bursts[2][0] - bursts[1][-1]
        assert 4.0 <= first_gap < 5.5, ("nothing reached it during its first ejection (4 s)", failures)
        assert 8.0 <= second_gap < 9.5, ("its second ejection lasted base x 2 (8 s)", failures)
        # the replica that carried the trace shows `broken` ejected a third time
        tracked = [
            o
            for dump in waypoint_dumps(cluster)
            for o in dump.get("outliers", [])
            if o["name"] == f"{NS}/broken"
        ]
        assert any(o["ejected"] and o["ejections"] == 3 for o in tracked), tracked
    finally:
        h.delete("DestinationRule", "outlier", NS)


POOL_RULE = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: helloworld-pool
  namespace: {NS}
spec:
  host: helloworld
  trafficPolicy:
    connectionPool:
      http:
        http2MaxRequests: 2
"""
CONCURRENT = r"""
import http.client, json, sys, threading
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
statuses, lock = {}, threading.Lock()
def one():
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("GET", path)
    status = conn.getresponse().status
    with lock:
        statuses[status] = statuses.get(status, 0) + 1
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(statuses))
"""


def test_connection_pool_overflow_answers_503_uo(cluster: str) -> None:
    """With at most 2 requests in flight to helloworld, 12 concurrent 1-second requests: 2 per waypoint
    replica get through at a time, the rest are answered 503 with response flag UO at once."""
    h = ClusterHandle(cluster)
    client = next(p for p in pods(cluster) if p["metadata"]["labels"].get("app") == "curl")["metadata"][
        "name"
    ]

    def burst() -> dict[str, int]:
        argv = ["python3", "-c", CONCURRENT, "helloworld", "5000", "/delay/1", "12"]
        return dict(json.loads(h.exec(argv, pod=client, namespace=NS, timeout=60).stdout))

    assert burst() == {"200": 12}, "control: without a limit every request gets through"
    h.apply(POOL_RULE)
    try:
        wait_for(
            lambda: waypoints_list(cluster, "traffic_policies", "helloworld-pool"),
            "the rule in every waypoint",
            30,
        )
        statuses = burst()
        assert set(statuses) == {"200", "503"}, statuses
        assert 2 <= statuses["200"] <= 4, statuses  # 2 per replica (the client ztunnel spreads connections)
        assert waypoint_flag_count(cluster, "UO") >= statuses["503"]
    finally:
        h.delete("DestinationRule", "helloworld-pool", NS)


def waypoint_flag_count(cluster: str, flag: str) -> float:
    """The waypoint replicas' ``istio_requests_total`` with response flag ``flag``, summed."""
    h = ClusterHandle(cluster)
    total = 0.0
    for pod in waypoint_pods(cluster):
        text = h.exec(
            ["curl", "-s", "-m", "5", "http://127.0.0.1:15020/metrics"], pod=pod, namespace=NS
        ).stdout
        for line in text.splitlines():
            if line.startswith("istio_requests_total{") and f'response_flags="{flag}"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


# -- rate limits (policy.ambit.dev/v1alpha1 HTTPLocalRateLimitPolicy) -----------------------------------


def rate_limit(name: str, service: str, limits: str) -> str:
    """An HTTPLocalRateLimitPolicy on ``service`` with ``limits`` (YAML, indented under ``spec``)."""
    return f"""apiVersion: policy.ambit.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata:
  name: {name}
  namespace: {NS}
spec:
  targetRefs:
  - group: ""
    kind: Service
    name: {service}
{limits}"""


SPECIAL_CLIENT = f"""apiVersion: v1
kind: ServiceAccount
metadata:
  name: special
  namespace: {NS}
---
apiVersion: v1
kind: Pod
metadata:
  name: special
  namespace: {NS}
  labels:
    app: special
spec:
  serviceAccountName: special
  containers:
  - name: app
    image: ambit/sample
    ports:
    - containerPort: 8000
"""
# N requests at once, each on its own new connection (so the client ztunnel spreads them over the
# waypoint replicas); prints [[status, retry-after or null], ...]. http.client never retries.
BURST = r"""
import http.client, json, sys, threading
host, port, path, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
out, lock, gate = [], threading.Lock(), threading.Barrier(n)
def one():
    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.connect()
    gate.wait()
    conn.request("GET", path, headers={"connection": "close"})
    response = conn.getresponse()
    response.read()
    with lock:
        out.append([response.status, response.getheader("retry-after")])
threads = [threading.Thread(target=one) for _ in range(n)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""
# Open-loop load: W workers from wall-clock time START for S seconds, each sending R requests per second,
# every request on a new connection. Prints [[completed at (s after START), status], ...]; a request that
# fails outright is status 0 (asserted absent: there are no hidden retries, and no failure may hide).
LOAD = r"""
import http.client, json, sys, threading, time
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
start, seconds, workers, rate = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
out, lock = [], threading.Lock()
def worker(offset):
    due = start + offset / rate
    while True:
        now = time.time()
        if now - start >= seconds:
            return
        if now < due:
            time.sleep(due - now)
        due += 1.0 / rate
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", path, headers={"connection": "close"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except Exception:
            status = 0
        finally:
            conn.close()
        with lock:
            out.append([round(time.time() - start, 4), status])
threads = [threading.Thread(target=worker, args=(i / workers,)) for i in range(workers)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(out))
"""


def pod_named(cluster: str, app: str) -> str:
    return str(
        next(p for p in pods(cluster) if p["metadata"]["labels"].get("app") == app)["metadata"]["name"]
    )


def test_a_rate_limit_admits_its_burst_and_answers_the_rest_429(cluster: str) -> None:
    """total 1/s with a burst of 20, two waypoint replicas (10 each): 60 requests at once from idle get
    20 through (± 1 per replica) and 40 answered 429 with retry-after; the control (no policy) admits all."""
    h = ClusterHandle(cluster)
    client = pod_named(cluster, "curl")

    def burst() -> list[tuple[int, str | None]]:
        argv = ["python3", "-c", BURST, "helloworld", "5000", "/hello", "60"]
        return [(s, r) for s, r in json.loads(h.exec(argv, pod=client, namespace=NS, timeout=60).stdout)]

    assert {s for s, _ in burst()} == {200}, "control: without the policy every request gets through"
    before = waypoint_flag_count(cluster, "RL")
    h.apply(rate_limit("hello-burst", "helloworld", "  total:\n    requestsPerSecond: 1\n    burst: 20\n"))
    try:
        wait_for(
            lambda: waypoints_list(cluster, "rate_limits", "hello-burst"), "the policy in every waypoint", 30
        )
        answers = burst()
        admitted = [r for s, r in answers if s == 200]
        limited = [r for s, r in answers if s == 429]
        assert len(admitted) + len(limited) == 60, answers
        print(f"burst: {len(admitted)} admitted, {len(limited)} answered 429")
        assert 18 <= len(admitted) <= 22, (len(admitted), len(limited))
        assert all(r is not None and int(r) >= 1 for r in limited), limited
        assert waypoint_flag_count(cluster, "RL") - before >= len(limited)  # counted as Envoy's RL flag
    finally:
        h.delete("HTTPLocalRateLimitPolicy", "hello-burst", NS)


def test_a_rate_limit_holds_its_rate_under_overload_and_an_override_its_own(cluster: str) -> None:
    """Three open-loop loads at once, each 60 new connections/s for 12 s, counted over the last 10 s:
    curl → helloworld-v1 under total 20/s admits 200 ± 5 %; on helloworld-v2 (identity 20/s, the
    `special` client overridden to 10/s) curl admits 200 ± 5 % and `special` 100 ± 5 %."""
    h = ClusterHandle(cluster)
    h.apply(SPECIAL_CLIENT)
    h.apply(rate_limit("v1-total", "helloworld-v1", "  total:\n    requestsPerSecond: 20\n"))
    h.apply(
        rate_limit(
            "v2-per-client",
            "helloworld-v2",
            "  identity:\n    requestsPerSecond: 20\n"
            "  overrides:\n  - requestsPerSecond: 10\n    clientRefs:\n"
            f"    - kind: ServiceAccount\n      namespace: {NS}\n      name: special\n",
        )
    )
    try:
        wait_for(
            lambda: all(ready(p) for p in pods(cluster)) and len(pods(cluster)) == 10, "special ready", 60
        )
        wait_for(
            lambda: (
                waypoints_list(cluster, "rate_limits", "v1-total")
                and waypoints_list(cluster, "rate_limits", "v2-per-client")
            ),
            "both policies in every waypoint",
            30,
        )
        start = time.time() + 2.0
        runs = {
            "v1": (pod_named(cluster, "curl"), "helloworld-v1"),
            "v2": (pod_named(cluster, "curl"), "helloworld-v2"),
            "special": (pod_named(cluster, "special"), "helloworld-v2"),
        }
        results: dict[str, list[tuple[float, int]]] = {}

        def run(key: str) -> None:
            pod, host = runs[key]
            argv = ["python3", "-c", LOAD, host, "5000", "/hello", str(start), "12", "6", "10"]
            results[key] = [
                (t, s) for t, s in json.loads(h.exec(argv, pod=pod, namespace=NS, timeout=60).stdout)
            ]

        threads = [threading.Thread(target=run, args=(key,)) for key in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        admitted = {}
        for key, done in results.items():
            statuses = {s for _, s in done}
            assert statuses <= {200, 429}, (key, statuses)  # nothing failed, nothing was retried
            assert sum(1 for t, _ in done if 2.0 <= t < 12.0) >= 400, (key, "the load was not sustained")
            admitted[key] = sum(1 for t, s in done if s == 200 and 2.0 <= t < 12.0)
        print(f"admitted in the 10 s window: {admitted}")
        assert 190 <= admitted["v1"] <= 210, admitted
        assert 190 <= admitted["v2"] <= 210, admitted
        assert 95 <= admitted["special"] <= 105, admitted
    finally:
        h.delete("HTTPLocalRateLimitPolicy", "v1-total", NS)
        h.delete("HTTPLocalRateLimitPolicy", "v2-per-client", NS)
        h.delete("Pod", "special", NS)
        h.delete("ServiceAccount", "special", NS)


# -- mirroring --------------------------------------------------------------------------------------------

MIRROR = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: helloworld
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - filters:
    - type: RequestMirror
      requestMirror:
        backendRef:
          name: helloworld-v2
          port: 5000
        percent: 50
    backendRefs:
    - name: helloworld-v1
      port: 5000
"""


def served(cluster: str, version: str, marker: str) -> int:
    """How many requests carrying ``marker`` the helloworld ``version`` pods logged."""
    count = 0
    for pod in pods(cluster):
        labels = pod["metadata"]["labels"]
        if labels.get("app") == "helloworld" and labels.get("version") == version:
            log = ambit(cluster, "logs", pod["metadata"]["name"], "-n", NS).stdout
            count += sum(1 for line in log.splitlines() if marker in line)
    return count


def test_a_mirror_target_sees_its_share_and_the_client_only_the_primary(cluster: str) -> None:
    h = ClusterHandle(cluster)
    h.apply(MIRROR)
    try:
        wait_for(lambda: waypoints_have(cluster, "helloworld"), "the route in every waypoint", 30)
        marker = f"mirror-{time.time_ns()}"
        result = requests(cluster, 600, f"/hello?run={marker}")
        assert result["statuses"] == {"200": 600}, result["statuses"]
        assert version_counts(result) == (600, 0), "the client sees only the primary's answers"
        assert served(cluster, "v1", marker) == 600
        low, high = binomial_bounds(600, 0.5)
        seen: list[int] = []

        def settled() -> bool:  # mirrors are fire and forget: wait until the count stops moving
            seen.append(served(cluster, "v2", marker))
            return len(seen) >= 2 and seen[-1] == seen[-2]

        wait_for(settled, "the mirrored requests reach v2", 20, interval=1.0)
        print(f"mirror: v2 saw {seen[-1]} of 600 (99.9 % interval {low:.0f}..{high:.0f})")
        assert low <= seen[-1] <= high, (seen[-1], low, high)
    finally:
        h.delete("HTTPRoute", "helloworld", NS)


# -- TCPRoute: weighted TCP shifting ---------------------------------------------------------------------


def echo_pod(version: str) -> str:
    """A TCP echo pod of ``version`` on 9000 that answers each line ``<version> <line>``."""
    return f"""apiVersion: v1
kind: Pod
metadata:
  name: echo-{version}
  namespace: {NS}
  labels:
    app: echo
    version: {version}
spec:
  containers:
  - name: echo
    image: ambit/sample
    command: ["ambit", "app", "sample", "--tcp-port", "9000", "--tcp-prefix", "{version}"]
    ports:
    - containerPort: 9000
"""


def echo_service(name: str, selector: str) -> str:
    return f"""apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {NS}
spec:
  selector:
    app: echo
{selector}  ports:
  - name: tcp
    port: 9000
"""


ECHO = "---\n".join(
    [
        echo_pod("v1"),
        echo_pod("v2"),
        echo_service("echo", ""),
        echo_service("echo-v1", "    version: v1\n"),
        echo_service("echo-v2", "    version: v2\n"),
    ]
)
TCP_SHIFT = f"""apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata:
  name: echo
  namespace: {NS}
spec:
  parentRefs:
  - group: ""
    kind: Service
    name: echo
    port: 9000
  rules:
  - backendRefs:
    - name: echo-v1
      port: 9000
      weight: 80
    - name: echo-v2
      port: 9000
      weight: 20
"""
# N TCP connections (4 at a time), each sends one line and reads the answer; prints {first word: count}.
TCP_CLIENT = r"""
import collections, json, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
counts, lock = collections.Counter(), threading.Lock()
def worker(k):
    for _ in range(k):
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"hi\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = s.recv(1024)
                if not chunk:
                    break
                answer += chunk
        with lock:
            counts[answer.split(b" ")[0].decode() or "closed"] += 1
threads = [threading.Thread(target=worker, args=(n // 4,)) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(json.dumps(counts))
"""


def test_a_tcp_route_shifts_connections_by_weight(cluster: str) -> None:
    """TCP echo v1 and v2 behind one Service: without a route both answer (the control); with a TCPRoute
    80/20 on the Service, v2's share of 400 connections lies within the 99.9 % binomial interval around
    20 %, and every connection is answered."""
    h = ClusterHandle(cluster)
    h.apply(ECHO)
    client = pod_named(cluster, "curl")

    def connect(n: int) -> dict[str, int]:
        argv = ["python3", "-c", TCP_CLIENT, "echo", "9000", str(n)]
        return dict(json.loads(h.exec(argv, pod=client, namespace=NS, timeout=120).stdout))

    try:
        wait_for(lambda: all(ready(p) for p in pods(cluster)) and len(pods(cluster)) == 11, "echo ready", 60)
        wait_for(lambda: set(connect(40)) == {"v1", "v2"}, "both echo pods answer through the waypoint", 30)
        h.apply(TCP_SHIFT)
        wait_for(
            lambda: waypoints_have(cluster, "echo", kind="TCPRoute"), "the TCPRoute in every waypoint", 30
        )
        counts = connect(400)
        low, high = binomial_bounds(400, 0.2)
        print(f"TCPRoute 80/20: {counts} (v2 99.9 % interval {low:.0f}..{high:.0f})")
        assert set(counts) <= {"v1", "v2"} and sum(counts.values()) == 400, counts
        assert low <= counts.get("v2", 0) <= high, (counts, low, high)
    finally:
        h.delete("TCPRoute", "echo", NS)
        for name in ("echo", "echo-v1", "echo-v2"):
            h.delete("Service", name, NS)
        for name in ("echo-v1", "echo-v2"):
            h.delete("Pod", name, NS)


REDIRECT_AND_REWRITE = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: helloworld
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - matches:
    - path: {{type: PathPrefix, value: /old}}
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {{type: ReplaceFullPath, replaceFullPath: /hello}}
        statusCode: 301
  - matches:
    - path: {{type: PathPrefix, value: /api}}
    filters:
    - type: URLRewrite
      urlRewrite:
        path: {{type: ReplacePrefixMatch, replacePrefixMatch: /hello}}
    backendRefs:
    - name: helloworld-v1
      port: 5000
"""


def test_a_redirect_and_a_rewrite(cluster: str) -> None:
    """/old answers 301 to /hello on the same host and port (the waypoint answers: the path does not
    exist upstream); /api is rewritten to /hello, so the app's /hello answers. Without the route (the
    control) /api is the app's echo, not Hello."""
    h = ClusterHandle(cluster)
    client = pod_named(cluster, "curl")

    def curl(path: str) -> str:
        url = f"http://helloworld:5000{path}"
        argv = ["curl", "-s", "-m", "5", "-w", "\\n%{http_code} %{redirect_url}", url]
        return str(h.exec(argv, pod=client, namespace=NS).stdout)

    assert not curl("/api").startswith("Hello"), "control: /api is not /hello without the route"
    h.apply(REDIRECT_AND_REWRITE)
    try:
        wait_for(lambda: waypoints_have(cluster, "helloworld"), "the route in every waypoint", 30)
        assert curl("/old/x?y=1").endswith("301 http://helloworld:5000/hello?y=1")
        rewritten = curl("/api")
        assert rewritten.startswith("Hello version: v1") and rewritten.endswith("200 "), rewritten
    finally:
        h.delete("HTTPRoute", "helloworld", NS)


SUBSETS = f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: helloworld-subsets
  namespace: {NS}
spec:
  host: helloworld
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def test_a_virtual_service_subset_goes_to_that_subset_only(cluster: str) -> None:
    """Istio's classic canary: DestinationRule subsets by the version label and a VirtualService sending
    everything to subset v2. Control: without them both versions answer."""
    h = ClusterHandle(cluster)
    v1, v2 = version_counts(requests(cluster, 100))
    assert v1 > 20 and v2 > 20, "control: both versions answer without the subset"
    h.apply(SUBSETS)
    to_v2 = "  - route:\n    - destination:\n        host: helloworld\n        subset: v2\n"
    h.apply(virtual_service(to_v2 + "        port:\n          number: 5000\n"))
    try:
        wait_for(lambda: all_to(cluster, "v2"), "the subset route in every waypoint", 30)
        result = requests(cluster, 200)
        assert result["statuses"] == {"200": 200} and version_counts(result) == (0, 200), result
    finally:
        h.delete("VirtualService", "helloworld", NS)
        h.delete("DestinationRule", "helloworld-subsets", NS)


OTHER_NS = "tm-other"
OTHER_BACKEND = f"""apiVersion: v1
kind: Namespace
metadata:
  name: {OTHER_NS}
  labels:
    istio.io/dataplane-mode: ambient
---
apiVersion: v1
kind: Service
metadata:
  name: other
  namespace: {OTHER_NS}
spec:
  selector:
    app: other
  ports:
  - name: http
    port: 5000
---
apiVersion: v1
kind: Pod
metadata:
  name: other
  namespace: {OTHER_NS}
  labels:
    app: other
spec:
  containers:
  - name: app
    image: ambit/sample
    ports:
    - containerPort: 5000
"""
TO_OTHER = f"""apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: helloworld
  namespace: {NS}
spec:
  parentRefs:
  - kind: Service
    group: ""
    name: helloworld
    port: 5000
  rules:
  - backendRefs:
    - name: other
      namespace: {OTHER_NS}
      port: 5000
"""
GRANT = f"""apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: from-tm
  namespace: {OTHER_NS}
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    namespace: {NS}
  to:
  - group: ""
    kind: Service
    name: other
"""


def test_a_backend_in_another_namespace_needs_a_reference_grant(cluster: str) -> None:
    """An HTTPRoute on helloworld sending to Service `other` in another namespace: refused (500) until
    a ReferenceGrant in that namespace allows HTTPRoutes of `tm` to reach it, then answered by it."""
    h = ClusterHandle(cluster)
    h.apply(OTHER_BACKEND)
    h.apply(TO_OTHER)
    try:
        wait_for(
            lambda: bool(h.pods(OTHER_NS)) and all(ready(p) for p in h.pods(OTHER_NS)), "other ready", 60
        )
        wait_for(lambda: waypoints_have(cluster, "helloworld"), "the route in every waypoint", 30)
        assert requests(cluster, 20, "/get")["statuses"] == {"500": 20}, "control: no grant, no backend"
        h.apply(GRANT)

        def answered_by_other() -> bool:
            result = requests(cluster, 20, "/get")
            return result["statuses"] == {"200": 20}

        wait_for(answered_by_other, "the grant reaches the waypoints", 30)
        client = pod_named(cluster, "curl")
        body = h.exec(
            ["curl", "-s", "-m", "5", "http://helloworld:5000/get"], pod=client, namespace=NS
        ).stdout
        assert json.loads(body)["namespace"] == OTHER_NS, body
    finally:
        h.delete("HTTPRoute", "helloworld", NS)
        h.delete("ReferenceGrant", "from-tm", OTHER_NS)
        h.delete("Pod", "other", OTHER_NS)
        h.delete("Service", "other", OTHER_NS)
        h.delete("Namespace", OTHER_NS)
