"""`ambit up` / `status` / `exec` / `down` on real namespaces: scheduling, readiness, service DNAT,
crash-safe teardown (daemon killed with SIGKILL), two clusters side by side.

One cluster is shared by the module; every test that makes its own cleans it up with `ambit down`.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ambit.identity.tokens import load_verifier
from ambit.runtime import hostcheck
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.netns import list_netns
from ambit.testing.e2e import SAMPLES, ambit, ready, wait_for

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("run")
    old = os.environ.get("AMBIT_RUN_DIR")
    os.environ["AMBIT_RUN_DIR"] = str(path)
    yield path
    if old is None:
        del os.environ["AMBIT_RUN_DIR"]
    else:
        os.environ["AMBIT_RUN_DIR"] = old


@pytest.fixture(scope="module")
def cluster(run_dir: Path, cluster_name: Callable[[str], str]) -> Iterator[str]:
    name = cluster_name("c")
    try:
        ambit(
            name,
            "up",
            "--nodes",
            "3",
            "--no-ztunnel",
            "-f",
            str(SAMPLES / "httpbin.yaml"),
            "-f",
            str(SAMPLES / "curl.yaml"),
        )
        yield name
    finally:
        ambit(name, "down", check=False)


def pods(name: str) -> list[dict[str, Any]]:
    return ClusterHandle(name).pods(namespace=None)


def test_pods_are_spread_and_ready(cluster: str) -> None:
    items = pods(cluster)
    cps = [p for p in items if p["metadata"]["namespace"] == "ambit-system"]
    assert len(cps) == 2
    assert len({p["spec"]["nodeName"] for p in cps}) == 2  # replicas on different nodes
    for p in items:
        assert p["status"]["phase"] == "Running"
        assert p["status"]["podIP"].startswith("10.244.")
        assert {"type": "Ready", "status": "True"} in [
            {"type": c["type"], "status": c["status"]} for c in p["status"]["conditions"]
        ]
    apps = [p for p in items if p["metadata"]["namespace"] == "default"]
    assert {p["metadata"]["labels"]["app"] for p in apps} == {"httpbin", "curl"}
    assert all(p["metadata"]["name"].startswith(("httpbin-", "curl-")) for p in apps)


def test_exec_pod_to_pod_and_service_vip(cluster: str) -> None:
    items = pods(cluster)
    httpbin = next(p for p in items if p["metadata"]["labels"].get("app") == "httpbin")
    client = next(p for p in items if p["metadata"]["labels"].get("app") == "curl")
    name = client["metadata"]["name"]
    direct = ambit(
        cluster, "exec", name, "--", "curl", "-s", "-m", "5", f"http://{httpbin['status']['podIP']}:8080/ip"
    )
    assert json.loads(direct.stdout)["origin"] == client["status"]["podIP"]
    via_vip = ambit(cluster, "exec", name, "--", "curl", "-s", "-m", "5", "http://httpbin:8000/headers")
    echo = json.loads(via_vip.stdout)
    assert echo["pod"] == httpbin["metadata"]["name"]
    assert echo["peer"].split(":")[0] == client["status"]["podIP"]  # DNAT keeps the source
    node = ambit(cluster, "exec", "--node", "node1", "--", "ip", "-4", "-o", "addr")
    assert "172.30.0.11" in node.stdout


PROBED = """
apiVersion: v1
kind: Pod
metadata: {name: probed-%(name)s, namespace: default, labels: {app: probed-%(name)s}}
spec:
  containers:
  - name: app
    image: sample
    ports: [{containerPort: 8080}]
    readinessProbe:
      httpGet: {path: "%(path)s", port: 8080}
"""


def test_http_readiness_probe_asks_the_path_not_just_the_port(cluster: str) -> None:
    """An httpGet readinessProbe passes on 2xx/3xx only: a port that accepts connections but answers
    503 on the probe path keeps the pod unready."""
    manifest = (
        PROBED % {"name": "ok", "path": "/status/200"}
        + "---"
        + PROBED
        % {
            "name": "bad",
            "path": "/status/503",
        }
    )
    handle = ClusterHandle(cluster)
    handle.apply(manifest)
    try:

        def probed(name: str) -> dict[str, Any] | None:
            return next((p for p in pods(cluster) if p["metadata"]["name"] == f"probed-{name}"), None)

        wait_for(lambda: (p := probed("ok")) is not None and ready(p), "the pod whose probe path answers 200")
        bad = probed("bad")
        assert bad is not None and bad["status"].get("podIP"), "the other pod runs too"
        assert not ready(bad), "a 503 on the probe path keeps the pod unready"
    finally:
        for name in ("ok", "bad"):
            handle.delete("Pod", f"probed-{name}", "default")


def test_status_shows_nodes_pods_and_control_plane(cluster: str) -> None:
    out = ambit(cluster, "status").stdout
    assert "daemon running" in out
    for node in ("node1", "node2", "node3"):
        assert node in out
    assert "controlplane-1" in out and "httpbin-" in out
    assert "CONTROL PLANE: 2/2 replicas ready" in out


def test_crashed_pod_process_is_restarted(cluster: str, run_dir: Path) -> None:
    items = pods(cluster)
    httpbin = next(p for p in items if p["metadata"]["labels"].get("app") == "httpbin")
    handle = ClusterHandle(cluster)
    key = f"pod-default-{httpbin['metadata']['name']}-httpbin"
    assert handle.layout.pid_file(key) == run_dir / cluster / "pids" / f"{key}.json"
    old = handle.pid(key)
    assert old is not None
    os.kill(old, signal.SIGKILL)
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = handle.pid(key) or old
        if new != old:
            break
        time.sleep(0.2)
    assert new != old
    # and it serves again
    client = next(p for p in items if p["metadata"]["labels"].get("app") == "curl")["metadata"]["name"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        proc = handle.exec(["curl", "-s", "-m", "2", "http://httpbin:8000/ip"], pod=client, check=False)
        if proc.returncode == 0 and proc.stdout:
            break
        time.sleep(0.3)
    assert proc.returncode == 0


TOKEN_POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "tokenpod", "namespace": "default"},
    "spec": {
        "serviceAccountName": "tokens",
        "containers": [{"name": "app", "image": "sample", "ports": [{"containerPort": 8080}]}],
    },
}


def test_every_pod_gets_a_bound_token_that_goes_with_it(cluster: str, run_dir: Path) -> None:
    handle = ClusterHandle(cluster)
    handle.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tokens"}}, TOKEN_POD])
    try:
        wait_for(lambda: ready(handle.pod("tokenpod")), "tokenpod ready")
        uid = handle.pod("tokenpod")["metadata"]["uid"]
        path = run_dir / cluster / "pods" / uid / "token"
        assert path.stat().st_mode & 0o777 == 0o600
        verified = load_verifier(handle.layout.tokens_dir).verify(path.read_text(), now=datetime.now(UTC))
        assert (verified.namespace, verified.pod_name, verified.pod_uid, verified.service_account) == (
            "default",
            "tokenpod",
            uid,
            "tokens",
        )
        pid = handle.pid("pod-default-tokenpod-app")
        assert pid is not None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"AMBIT_TOKEN_FILE={path}".encode() in environ, "the pod's process is told where it is"
    finally:
        handle.delete("Pod", "tokenpod", "default")
    wait_for(lambda: not path.parent.exists(), "the token removed with its pod")


def test_down_after_daemon_sigkill_and_two_clusters(
    run_dir: Path, cluster_name: Callable[[str], str]
) -> None:
    before = hostcheck.snapshot()
    a, b = cluster_name("a"), cluster_name("b")
    try:
        ambit(a, "up", "--nodes", "1", "--no-ztunnel")
        ambit(b, "up", "--nodes", "2", "--no-ztunnel")
        assert any(n.startswith(f"ambit-{a}-") for n in list_netns())
        daemon = json.loads((run_dir / a / "pids" / "daemon.json").read_text())["pid"]
        recorded = [json.loads(p.read_text())["pid"] for p in (run_dir / a / "pids").glob("pod-*.json")]
        assert recorded
        os.kill(daemon, signal.SIGKILL)
        ambit(a, "down")
        assert not [n for n in list_netns() if n.startswith(f"ambit-{a}-")]
        assert not (run_dir / a).exists()
        for pid in [daemon, *recorded]:
            assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()
        # b is untouched
        assert ClusterHandle(b).status().controlplane == (2, 2)
    finally:
        ambit(a, "down", check=False)
        ambit(b, "down", check=False)
    assert not [n for n in list_netns() if n.startswith((f"ambit-{a}-", f"ambit-{b}-"))]
    after = hostcheck.snapshot()
    assert before == after, "\n".join(before.diff(after))
