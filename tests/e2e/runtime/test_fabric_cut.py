"""A node cut off the fabric (`ClusterHandle.cut`, `ambit fault`) on a real cluster: silent drops both
ways, scoped to that node, TCP connections hang (no reset) and carry on after the heal; `ambit down`
leaves nothing behind.

One cluster (3 nodes, no ztunnels: plain pod-to-pod traffic over the underlay) shared by the module,
three sample-app pods pinned with `spec.nodeName`: `a` on node1, `b` on node2, `c` on node3. The cut
phase stays short (well under the ~20 s after which node1's ARP entry for node2 would expire and its
own stack answer "no route to host" instead of letting the connection time out).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ambit.runtime import faults, netplan, nsexec
from ambit.runtime.handle import ClusterHandle, HandleError
from ambit.runtime.layout import STORE_FABRIC_PORT
from ambit.testing.e2e import ambit, ready, temporary_cluster, wait_for

pytestmark = pytest.mark.root

PORT = 8080
PODS = {"a": "node1", "b": "node2", "c": "node3"}
CURL_TIMEOUT = 28  # curl's exit code for "operation timed out" (7 would be refused / unreachable)
HANG = 3.0  # how long the held connection waits for a reply during the cut


def pod(name: str, node: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "cut"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "ambit/sample", "ports": [{"containerPort": PORT}]}],
        },
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("f"), tmp_path_factory.mktemp("run")) as name:
        started = time.monotonic()
        ambit(name, "up", "--nodes", "3", "--no-ztunnel")
        handle = ClusterHandle(name)
        handle.apply([pod(p, n) for p, n in PODS.items()])
        wait_for(lambda: all(ready(handle.pod(p)) for p in PODS), "pods a, b, c ready", 60)
        print(f"\ncluster up with its pods in {time.monotonic() - started:.1f}s")
        yield name


def ip(cluster: str, name: str) -> str:
    return str(ClusterHandle(cluster).pod(name)["status"]["podIP"])


def curl(cluster: str, src: str, dst_ip: str, timeout: float = 2.0) -> subprocess.CompletedProcess[str]:
    """`curl -m timeout http://dst_ip:8080/hello` from pod ``src``."""
    argv = ["curl", "-sS", "-m", f"{timeout:g}", f"http://{dst_ip}:{PORT}/hello"]
    return ClusterHandle(cluster).exec(argv, pod=src, check=False, timeout=timeout + 10)


def served_by(cluster: str, src: str, dst: str) -> bool:
    proc = curl(cluster, src, ip(cluster, dst), 5)
    return proc.returncode == 0 and f"instance: {dst}" in proc.stdout


def assert_times_out(cluster: str, src: str, dst_ip: str) -> None:
    started = time.monotonic()
    proc = curl(cluster, src, dst_ip)
    elapsed = time.monotonic() - started
    assert proc.returncode == CURL_TIMEOUT, (src, dst_ip, proc.returncode, proc.stderr)
    assert elapsed >= 1.9, f"failed after {elapsed:.2f}s: not a silent drop ({proc.stderr})"


PROBE = """
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("ok")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("error", exc.errno)
"""


def tcp_connect(cluster: str, dst: str, port: int, *, node: str) -> str:
    """A TCP connect from ``node``'s own namespace: ok, timeout, refused or error."""
    argv = [sys.executable, "-c", PROBE, dst, str(port), "1.5"]
    return ClusterHandle(cluster).exec(argv, node=node, timeout=15).stdout.strip()


def store_listener(cluster: str, node: str) -> str:
    """A TCP connect from ``node`` to the store's heartbeat listener on the fabric bridge."""
    return tcp_connect(cluster, netplan.FABRIC_STORE_ADDRESS, STORE_FABRIC_PORT, node=node)


# Holds one HTTP keep-alive connection: a request before the cut, one during it (reports whether the
# reply times out, resets or arrives), then, healed, waits for that reply to come after all.
HOLDER = """
import socket, sys

def response(sock):
    data = b""
    while b"\\r\\n\\r\\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\\r\\n\\r\\n")
    fields = [line.split(b":", 1) for line in head.split(b"\\r\\n")[1:]]
    length = next(int(value) for key, value in fields if key.lower() == b"content-length")
    while len(body) < length:
        body += sock.recv(65536)
    return head.split(b"\\r\\n")[0]

def report(what):
    print(what, flush=True)

request = b"GET /hello HTTP/1.1\\r\\nHost: b\\r\\n\\r\\n"
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(request)
report("open " + response(s).decode())
sys.stdin.readline()  # cut
s.settimeout(float(sys.argv[3]))
s.sendall(request)
try:
    line = response(s)
    report("data " + line.decode() if line else "eof")
except TimeoutError:
    report("timeout")
except ConnectionResetError:
    report("reset")
except OSError as exc:
    report(f"error {exc.errno}")
sys.stdin.readline()  # healed
s.settimeout(20)
try:
    line = response(s)
    report("resumed " + line.decode() if line else "eof")
except OSError as exc:
    report(f"lost {exc!r}")
"""


def test_a_cut_drops_node2_silently_both_ways_and_heal_restores_it(cluster: str) -> None:
    handle = ClusterHandle(cluster)
    a, b = ip(cluster, "a"), ip(cluster, "b")
    assert handle.cuts() == set()
    assert served_by(cluster, "a", "b")
    assert served_by(cluster, "a", "c")
    holder = handle.popen(
        [sys.executable, "-c", HOLDER, b, str(PORT), str(HANG)],
        pod="a",
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # a traceback shows up in the line a test reads
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    try:
        opened = holder.stdout.readline().strip()
        assert opened == "open HTTP/1.1 200 OK", opened

        started = time.monotonic()
        assert handle.cut("node2") is True
        assert handle.cut("node2") is False  # idempotent
        assert handle.cuts() == {"node2"}
        cut_at = time.monotonic()
        holder.stdin.write("cut\n")
        holder.stdin.flush()

        assert_times_out(cluster, "a", b)  # node1 -> node2
        assert_times_out(cluster, "b", a)  # node2 -> node1
        assert served_by(cluster, "a", "c")  # node1 -> node3: the cut is scoped to node2
        assert served_by(cluster, "b", "b")  # inside node2: its pod reaches itself...
        loopback = ["curl", "-sS", "-m", "2", f"http://127.0.0.1:{PORT}/hello"]
        local = handle.exec(loopback, pod="b", check=False)
        assert "instance: b" in local.stdout, local.stderr  # ...and its own localhost
        # the fabric bridge's own address (the store's heartbeat listener) is cut off too
        assert store_listener(cluster, "node2") == "timeout"
        assert store_listener(cluster, "node1") in ("ok", "refused")  # an answer came back: reachable
        during = holder.stdout.readline().strip()
        assert during == "timeout", during  # the held connection hangs: no RST, no ICMP
        cut_for = time.monotonic() - cut_at

        assert handle.heal("node2") is True
        assert handle.heal("node2") is False  # idempotent
        assert handle.cuts() == set()
        healed_at = time.monotonic()
        holder.stdin.write("healed\n")
        holder.stdin.flush()
        assert served_by(cluster, "a", "b")
        assert served_by(cluster, "b", "a")
        assert store_listener(cluster, "node2") in ("ok", "refused")
        after = holder.stdout.readline().strip()
        resumed_in = time.monotonic() - healed_at
        # the request sent during the cut was retransmitted and answered on the same connection
        assert after == "resumed HTTP/1.1 200 OK", after
        assert holder.wait(5) == 0
        print(
            f"cut for {cut_for:.1f}s; held connection answered {resumed_in:.1f}s after the heal; "
            f"whole test {time.monotonic() - started:.1f}s"
        )
    finally:
        if holder.poll() is None:
            holder.kill()  # ours, by its own pid
        holder.wait(5)
        holder.stdin.close()
        holder.stdout.close()
        handle.heal("node2")


def test_several_cuts_at_once_errors_and_the_cli(cluster: str) -> None:
    handle = ClusterHandle(cluster)
    try:
        assert ambit(cluster, "fault", "cut", "3").stdout.strip() == "node/node3 cut off the fabric"
        assert ambit(cluster, "fault", "cut", "node3").stdout.strip() == "node/node3 already cut"
        assert handle.cut("node2") is True
        assert ambit(cluster, "fault", "list").stdout.split() == ["node2", "node3"]
        assert handle.cuts() == {"node2", "node3"}
        assert_times_out(cluster, "a", ip(cluster, "c"))
        assert ambit(cluster, "fault", "heal", "node3").stdout.strip() == "node/node3 healed"
        assert ambit(cluster, "fault", "heal", "3").stdout.strip() == "node/node3 was not cut"
        assert handle.cuts() == {"node2"}  # healing node3 left node2's cut alone
        assert served_by(cluster, "a", "c")
        assert handle.heal("node2") is True
        assert ambit(cluster, "fault", "list").stdout == ""
    finally:
        handle.heal("node2")
        handle.heal("node3")
    for bad in ("node4", "node0", "bogus"):
        with pytest.raises(HandleError, match="has no node"):
            handle.cut(bad)
    failed = ambit(cluster, "fault", "cut", "9", check=False)
    assert failed.returncode == 1 and "has no node 'node9'" in failed.stderr, failed.stderr


def test_down_leaves_no_cut_behind(cluster: str) -> None:
    """Last in the module: it takes the cluster down (the fixture's own `down` then finds nothing)."""
    handle = ClusterHandle(cluster)
    handle.cut("node2")
    handle.cut("node3")
    fabric = netplan.fabric_netns(cluster)
    listed = nsexec.run(fabric, ["nft", "list", "tables", faults.FAMILY]).stdout
    assert "ambit_cut_n2" in listed and "ambit_cut_n3" in listed
    handle.down()
    assert not os.path.exists(nsexec.netns_path(fabric))  # the tables went with their namespace
    host = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    assert faults.TABLE_PREFIX not in host  # and none was ever in the host's
    for call in (handle.cuts, lambda: handle.cut("node2"), lambda: handle.heal("node2")):
        with pytest.raises(HandleError, match="is not up"):
            call()
    failed = ambit(cluster, "fault", "list", check=False)
    assert failed.returncode == 1 and "is not up" in failed.stderr, failed.stderr
