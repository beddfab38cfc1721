"""The runtime's network on real namespaces: pods, routing, service DNAT, capture, teardown.

Every address used here exists only inside namespaces these tests create; all traffic starts inside
them. Servers are sockets created inside pod namespaces (nsexec) and served by threads of this process,
so there is no child process to clean up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.runtime import capture, hostcheck, netplan, nsexec
from ambit.runtime.netns import NetError, NetRuntime, PodNet, list_netns, netns_pids
from ambit.runtime.services import Endpoint, ServicePort

pytestmark = pytest.mark.root

SO_ORIGINAL_DST = 80
IP_TRANSPARENT = getattr(socket, "IP_TRANSPARENT", 19)
VIP = "10.96.0.10"


# --- helpers -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Accepted:
    peer: tuple[str, int]
    local: tuple[str, int]
    original_dst: tuple[str, int] | None  # None when conntrack has no entry (no nft rules loaded)

    @property
    def redirected(self) -> bool:
        return self.original_dst is not None and self.original_dst != self.local


def original_dst(sock: socket.socket) -> tuple[str, int] | None:
    try:
        raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    except OSError:
        return None
    (port,) = struct.unpack_from("!H", raw, 2)
    return socket.inet_ntoa(raw[4:8]), port


class Server:
    """A TCP server in a netns: answers ``<tag>:<request>`` and records every accepted connection."""

    def __init__(self, netns: str, port: int, tag: str, host: str = "0.0.0.0") -> None:
        def setup(sock: socket.socket) -> None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(64)

        self.tag = tag.encode()
        self.sock = nsexec.socket_in_netns(netns, setup=setup)
        self.sock.settimeout(0.2)
        self.accepted: queue.Queue[Accepted] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"server:{tag}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.accepted.put(Accepted(peer, conn.getsockname(), original_dst(conn)))
                conn.settimeout(3)
                try:
                    data = conn.recv(1024)
                    conn.sendall(self.tag + b":" + data)
                except OSError:
                    pass

    def next(self, timeout: float = 3.0) -> Accepted:
        return self.accepted.get(timeout=timeout)

    def drain(self) -> list[Accepted]:
        out = []
        while not self.accepted.empty():
            out.append(self.accepted.get_nowait())
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def talk(
    netns: str,
    ip: str,
    port: int,
    message: bytes = b"hello",
    *,
    mark: int | None = None,
    bind: str | None = None,
    transparent: bool = False,
    timeout: float = 3.0,
) -> bytes:
    """Connect from inside ``netns``, send ``message``, return the whole answer."""

    def setup(sock: socket.socket) -> None:
        if transparent:
            sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
        if mark is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, mark)
        if bind is not None:
            sock.bind((bind, 0))

    with nsexec.socket_in_netns(netns, setup=setup) as sock:
        sock.settimeout(timeout)
        sock.connect((ip, port))
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(4096):
            chunks.append(chunk)
        return b"".join(chunks)


@contextlib.contextmanager
def running(rt: NetRuntime, layout: netplan.ClusterLayout) -> Iterator[NetRuntime]:
    """A created cluster network that is torn down however the block ends."""
    try:
        rt.create_cluster(netplan.plan_cluster(layout))
        yield rt
    finally:
        rt.teardown()


def sysctl(netns: str, key: str) -> str:
    return nsexec.run(netns, ["sysctl", "-n", key]).stdout.strip()


def ip_json(netns: str, *args: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(nsexec.run(netns, ["ip", "-j", *args]).stdout or "[]")
    return data


# --- fixtures ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cluster:
    rt: NetRuntime
    pods: dict[str, PodNet]


@pytest.fixture(scope="module")
def cluster(
    cluster_name: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """3 nodes; pods a, b on node 1, c on node 2, d on node 3."""
    name = cluster_name("")
    rt = NetRuntime(name, tmp_path_factory.mktemp("state"))
    with running(rt, netplan.ClusterLayout.simple(name, 3)):
        pods = {}
        for key, node in (("a", 1), ("b", 1), ("c", 2), ("d", 3)):
            pods[key] = rt.add_pod(node, f"{key * 8}-0000-4000-8000-000000000000")
        yield Cluster(rt, pods)
    assert not rt.owned_netns()
    assert not rt.state_path.exists()


@pytest.fixture
def servers() -> Iterator[Callable[..., Server]]:
    made: list[Server] = []

    def make(netns: str, port: int, tag: str, host: str = "0.0.0.0") -> Server:
        server = Server(netns, port, tag, host)
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            server.close()


@pytest.fixture
def ambient(cluster: Cluster) -> Iterator[PodNet]:
    """A pod on node 1 with capture installed."""
    pod = cluster.rt.add_pod(1, "e0e0e0e0-0000-4000-8000-000000000000")
    try:
        capture.apply(pod.netns)
        yield pod
    finally:
        capture.remove(pod.netns)
        cluster.rt.remove_pod(pod.uid)


# --- layout ------------------------------------------------------------------------------------------


def test_layout_in_namespaces(cluster: Cluster) -> None:
    rt, pods = cluster.rt, cluster.pods
    name = rt.cluster
    assert set(rt.owned_netns()) == {
        f"ambit-{name}-fabric",
        *(f"ambit-{name}-node{i}" for i in (1, 2, 3)),
        *(p.netns for p in pods.values()),
    }
    assert [p.ip for p in pods.values()] == ["10.244.1.2", "10.244.1.3", "10.244.2.2", "10.244.3.2"]
    assert pods["a"].netns == f"ambit-{name}-pod-aaaaaaaa"

    node1 = rt.node_netns(1)
    eth0 = ip_json(node1, "addr", "show", "dev", "eth0")[0]
    assert [(a["local"], a["prefixlen"]) for a in eth0["addr_info"]] == [("172.30.0.11", 24)]
    lo = ip_json(node1, "-4", "addr", "show", "dev", "lo")[0]
    assert {a["local"] for a in lo["addr_info"]} == {"127.0.0.1", "169.254.1.1", "169.254.7.127"}
    assert sysctl(node1, "net.ipv4.ip_forward") == "1"
    assert sysctl(node1, "net.ipv4.conf.p2.proxy_arp") == "1"
    routes = {r["dst"]: r for r in ip_json(node1, "route")}
    assert routes["10.244.2.0/24"]["gateway"] == "172.30.0.12"
    assert routes["10.244.3.0/24"]["gateway"] == "172.30.0.13"
    assert routes["10.244.1.2"]["dev"] == "p2" and routes["10.244.1.3"]["dev"] == "p3"
    assert "default" not in routes

    a = pods["a"].netns
    pod_eth0 = ip_json(a, "addr", "show", "dev", "eth0")[0]
    assert [(x["family"], x["local"]) for x in pod_eth0["addr_info"]] == [("inet", "10.244.1.2")]
    assert sysctl(a, "net.ipv4.tcp_migrate_req") == "1"
    assert sysctl(a, "net.ipv4.ip_forward") == "0"
    got = ip_json(a, "route", "get", "10.244.1.3")[0]
    assert got["gateway"] == "169.254.1.1" and got["dev"] == "eth0"  # even the same node goes via the node
    # the fabric bridge carries the nodes
    ports = ip_json(f"ambit-{name}-fabric", "link", "show", "master", "br0")
    assert sorted(p["ifname"] for p in ports) == ["n1", "n2", "n3"]


# --- pod to pod --------------------------------------------------------------------------------------


def test_pod_to_pod_same_node_and_across_nodes(cluster: Cluster, servers: Callable[..., Server]) -> None:
    pods = cluster.pods
    srv = {key: servers(pod.netns, 8080, key) for key, pod in pods.items()}
    for src, dst in [("a", "b"), ("b", "a"), ("a", "c"), ("a", "d"), ("c", "d"), ("d", "b")]:
        answer = talk(pods[src].netns, pods[dst].ip, 8080, f"from {src}".encode())
        assert answer == f"{dst}:from {src}".encode()
        seen = srv[dst].next()
        assert seen.peer[0] == pods[src].ip  # no NAT between pods
        assert not seen.redirected


def test_same_node_traffic_passes_the_node(cluster: Cluster, servers: Callable[..., Server]) -> None:
    a, b = cluster.pods["a"], cluster.pods["b"]
    node1 = cluster.rt.node_netns(1)
    table = f"""table inet probe-count {{
\tchain forward {{
\t\ttype filter hook forward priority 0; policy accept;
\t\tip saddr {a.ip} ip daddr {b.ip} tcp dport 8080 counter
\t}}
}}
"""
    nsexec.run(node1, ["nft", "-f", "-"], input_text=table)
    try:
        servers(b.netns, 8080, "b")
        assert talk(a.netns, b.ip, 8080) == b"b:hello"
        listing = json.loads(nsexec.run(node1, ["nft", "-j", "list", "table", "inet", "probe-count"]).stdout)
        counters = [
            e["counter"]["packets"]
            for item in listing["nftables"]
            if "rule" in item
            for e in item["rule"]["expr"]
            if "counter" in e
        ]
        assert counters and counters[0] >= 3  # at least SYN, ACK, data
    finally:
        nsexec.run(node1, ["nft", "delete", "table", "inet", "probe-count"])


@contextlib.contextmanager
def count_packets(netns: str, name: str, match: str) -> Iterator[Callable[[], int]]:
    """Count packets matching ``match`` at ``netns``'s prerouting while the block runs."""
    table = f"table ip count-{name}"
    nsexec.run(
        netns,
        ["nft", "-f", "-"],
        input_text=f"{table} {{\n\tchain pre {{\n\t\ttype filter hook prerouting priority -300;\n"
        f"\t\t{match} counter\n\t}}\n}}\n",
    )

    def read() -> int:
        listing = json.loads(nsexec.run(netns, ["nft", "-j", "list", *table.split()]).stdout)
        return sum(
            e["counter"]["packets"]
            for item in listing["nftables"]
            if "rule" in item
            for e in item["rule"]["expr"]
            if "counter" in e
        )

    try:
        yield read
    finally:
        nsexec.run(netns, ["nft", "delete", *table.split()])


def test_pod_cannot_spoof_another_pods_address(cluster: Cluster, servers: Callable[..., Server]) -> None:
    a, b, c = cluster.pods["a"], cluster.pods["b"], cluster.pods["c"]
    servers(c.netns, 8080, "c")
    with (
        count_packets(c.netns, "spoofed", f"ip saddr {b.ip} tcp dport 8080") as spoofed,
        count_packets(c.netns, "genuine", f"ip saddr {a.ip} tcp dport 8080") as genuine,
    ):
        # the node's strict rp_filter drops a's packets that claim b's address
        with pytest.raises(OSError):
            talk(a.netns, c.ip, 8080, bind=b.ip, transparent=True, timeout=1.0)
        assert spoofed() == 0  # (with rp_filter=0 on the node, the SYN arrives here)
        assert talk(a.netns, c.ip, 8080) == b"c:hello"
        assert genuine() > 0


# --- services (non-mesh path) ------------------------------------------------------------------------


def test_service_dnat_to_other_nodes(cluster: Cluster, servers: Callable[..., Server]) -> None:
    rt, pods = cluster.rt, cluster.pods
    srv_c = servers(pods["c"].netns, 8080, "c")
    srv_d = servers(pods["d"].netns, 8080, "d")
    try:
        rt.set_services(1, [ServicePort(VIP, 80, endpoints=(Endpoint(pods["d"].ip, 8080),))])
        assert talk(pods["a"].netns, VIP, 80) == b"d:hello"
        assert srv_d.next().peer[0] == pods["a"].ip  # DNAT only; the client's address is kept

        both = (Endpoint(pods["c"].ip, 8080), Endpoint(pods["d"].ip, 8080))
        rt.set_services(1, [ServicePort(VIP, 80, endpoints=both)])
        answers = {talk(pods["a"].netns, VIP, 80) for _ in range(16)}
        assert answers == {b"c:hello", b"d:hello"}  # random per connection (all one: p = 2**-15)
        srv_c.drain()
        srv_d.drain()

        # replaced atomically: the new mapping is all there is
        rt.set_services(1, [ServicePort(VIP, 80, endpoints=(Endpoint(pods["c"].ip, 8080),))])
        assert {talk(pods["b"].netns, VIP, 80) for _ in range(4)} == {b"c:hello"}

        # from the node's own netns (output hook)
        assert talk(rt.node_netns(1), VIP, 80) == b"c:hello"
        # node 2 has no services: its table is independent, and refuses the whole range
        with pytest.raises(ConnectionRefusedError):
            talk(pods["c"].netns, VIP, 80)
        with pytest.raises(ConnectionRefusedError):
            talk(pods["a"].netns, VIP, 81)  # a VIP port that is not a service
    finally:
        rt.set_services(1, [])


def test_service_dnat_same_node_hairpin_and_no_endpoints(
    cluster: Cluster, servers: Callable[..., Server]
) -> None:
    rt, pods = cluster.rt, cluster.pods
    srv_a = servers(pods["a"].netns, 8080, "a")
    srv_b = servers(pods["b"].netns, 8080, "b")
    try:
        rt.set_services(
            1,
            [
                ServicePort(VIP, 80, endpoints=(Endpoint(pods["b"].ip, 8080),)),
                ServicePort("10.96.0.11", 80, endpoints=(Endpoint(pods["a"].ip, 8080),)),
                ServicePort("10.96.0.12", 80),
            ],
        )
        assert talk(pods["a"].netns, VIP, 80) == b"b:hello"  # same-node endpoint
        assert srv_b.next().peer[0] == pods["a"].ip
        assert talk(pods["a"].netns, "10.96.0.11", 80) == b"a:hello"  # a reaches itself
        assert srv_a.next().peer[0] == netplan.GATEWAY_IP  # hairpin flows are SNATed
        with pytest.raises(ConnectionRefusedError):
            talk(pods["a"].netns, "10.96.0.12", 80)
    finally:
        rt.set_services(1, [])


# --- capture -----------------------------------------------------------------------------------------


def test_capture_rules_load(ambient: PodNet) -> None:
    assert capture.is_applied(ambient.netns)
    capture.apply(ambient.netns)  # idempotent
    rules = ip_json(ambient.netns, "rule")
    marked = [r for r in rules if r.get("fwmark") == "0x111"]
    assert len(marked) == 1 and marked[0]["table"] == "133" and marked[0]["fwmask"] == "0xfff"
    local = ip_json(ambient.netns, "route", "show", "table", "133")
    assert local == [{"type": "local", "dst": "default", "dev": "lo", "scope": "host", "flags": []}]
    assert sysctl(ambient.netns, "net.ipv4.tcp_migrate_req") == "1"


def test_capture_outbound_redirect_and_mark_bypass(
    cluster: Cluster, ambient: PodNet, servers: Callable[..., Server]
) -> None:
    c = cluster.pods["c"]
    outbound = servers(ambient.netns, capture.OUTBOUND_PORT, "ztunnel-out", host="127.0.0.1")
    srv_c = servers(c.netns, 8080, "c")

    assert talk(ambient.netns, c.ip, 8080) == b"ztunnel-out:hello"
    seen = outbound.next()
    assert seen.original_dst == (c.ip, 8080)
    assert seen.peer[0] == ambient.ip and seen.local == ("127.0.0.1", capture.OUTBOUND_PORT)
    assert srv_c.drain() == []

    # ztunnel's own (marked) sockets are not captured and really leave the pod
    assert talk(ambient.netns, c.ip, 8080, mark=capture.ZTUNNEL_MARK) == b"c:hello"
    assert srv_c.next().peer[0] == ambient.ip
    assert outbound.drain() == []

    # loopback is not captured
    servers(ambient.netns, 9000, "local", host="127.0.0.1")
    assert talk(ambient.netns, "127.0.0.1", 9000) == b"local:hello"


def test_capture_inbound_redirect_except_hbone_and_probes(
    cluster: Cluster, ambient: PodNet, servers: Callable[..., Server]
) -> None:
    d = cluster.pods["d"]
    inbound = servers(ambient.netns, capture.INBOUND_PLAIN_PORT, "ztunnel-in")
    hbone = servers(ambient.netns, capture.HBONE_PORT, "hbone")
    app = servers(ambient.netns, 8080, "app")

    assert talk(d.netns, ambient.ip, 8080) == b"ztunnel-in:hello"
    seen = inbound.next()
    assert seen.original_dst == (ambient.ip, 8080) and seen.peer[0] == d.ip

    assert talk(d.netns, ambient.ip, capture.HBONE_PORT) == b"hbone:hello"
    assert not hbone.next().redirected

    # readiness probes come from the node with source 169.254.7.127 and reach the app directly
    assert cluster.rt.probe_tcp(1, ambient.ip, 8080)
    assert app.next().peer[0] == netplan.PROBE_SOURCE
    assert inbound.drain() == []
    assert not cluster.rt.probe_tcp(1, ambient.ip, 8081)  # nothing listens there


def test_capture_transparent_upstream(
    cluster: Cluster, ambient: PodNet, servers: Callable[..., Server]
) -> None:
    """ztunnel connects to the app from the client's pod IP; the app's replies come back to it."""
    client_ip = cluster.pods["d"].ip  # a foreign address inside the ambient pod
    app = servers(ambient.netns, 8080, "app")
    answer = talk(
        ambient.netns, ambient.ip, 8080, mark=capture.ZTUNNEL_MARK, bind=client_ip, transparent=True
    )
    assert answer == b"app:hello"
    seen = app.next()
    assert seen.peer[0] == client_ip and not seen.redirected

    # control: without the capture's connmark + policy route the replies leave the pod and are lost
    capture.remove(ambient.netns)
    assert not capture.is_applied(ambient.netns)
    with pytest.raises(OSError):
        talk(
            ambient.netns,
            ambient.ip,
            8080,
            mark=capture.ZTUNNEL_MARK,
            bind=client_ip,
            transparent=True,
            timeout=1.0,
        )
    capture.apply(ambient.netns)


# --- pods come and go ----------------------------------------------------------------------------------


def test_pod_removal_frees_everything_and_address_is_reused(cluster: Cluster) -> None:
    rt = cluster.rt
    node2 = rt.node_netns(2)
    first = rt.add_pod(2, "f1f1f1f1-0000-4000-8000-000000000000")
    assert first.ip == "10.244.2.3" and first.veth == "p3"
    assert rt.pod(first.uid) == first
    with pytest.raises(NetError, match="short id"):
        rt.add_pod(2, "f1f1f1f1-ffff-4000-8000-000000000000")
    assert rt.remove_pod(first.uid) == []
    assert first.netns not in list_netns()
    assert not any(link["ifname"] == "p3" for link in ip_json(node2, "link"))
    assert "10.244.2.3" not in {r["dst"] for r in ip_json(node2, "route")}
    assert rt.remove_pod(first.uid) == []  # idempotent
    second = rt.add_pod(2, "f2f2f2f2-0000-4000-8000-000000000000")
    try:
        assert second.ip == "10.244.2.3"
    finally:
        rt.remove_pod(second.uid)
    assert rt.pod(second.uid) is None


def test_remove_pod_cuts_off_lingering_processes(cluster: Cluster) -> None:
    rt = cluster.rt
    pod = rt.add_pod(3, "a2a2a2a2-0000-4000-8000-000000000000")
    proc = nsexec.popen(pod.netns, ["sleep", "30"])
    try:
        for _ in range(100):  # until `ip netns exec` has entered the namespace and exec'd sleep
            if proc.pid in netns_pids(pod.netns):
                break
            time.sleep(0.05)
        assert rt.remove_pod(pod.uid) == [proc.pid]
        assert pod.netns not in list_netns()
        # the pod is cut off even though its namespace lives on with the process
        assert not any(link["ifname"] == pod.veth for link in ip_json(rt.node_netns(3), "link"))
    finally:
        proc.kill()
        proc.wait(5)
        rt.remove_pod(pod.uid)


# --- lifecycle -----------------------------------------------------------------------------------------


def test_teardown_removes_everything_and_host_is_unchanged(
    cluster_name: Callable[[str], str], tmp_path: Path, servers: Callable[..., Server]
) -> None:
    before = hostcheck.snapshot()
    name = cluster_name("h")
    rt = NetRuntime(name, tmp_path)
    with running(rt, netplan.ClusterLayout.simple(name, 2)):
        a = rt.add_pod(1, "a1a1a1a1-0000-4000-8000-000000000000")
        b = rt.add_pod(2, "b1b1b1b1-0000-4000-8000-000000000000")
        capture.apply(a.netns)
        rt.set_services(1, [ServicePort(VIP, 80, endpoints=(Endpoint(b.ip, 8080),))])
        servers(b.netns, 8080, "b")
        assert talk(a.netns, b.ip, 8080, mark=capture.ZTUNNEL_MARK) == b"b:hello"
        assert rt.state_path.exists()
        assert len(rt.owned_netns()) == 5
    assert rt.owned_netns() == []
    assert not rt.state_path.exists()
    assert not rt.exists()
    assert rt.teardown().deleted == []  # idempotent
    after = hostcheck.snapshot()
    assert before == after, "\n".join(before.diff(after))


def test_failing_block_still_tears_down(cluster_name: Callable[[str], str], tmp_path: Path) -> None:
    name = cluster_name("f")
    rt = NetRuntime(name, tmp_path)
    with pytest.raises(RuntimeError, match="boom"), running(rt, netplan.ClusterLayout.simple(name, 1)):
        rt.add_pod(1, "c1c1c1c1-0000-4000-8000-000000000000")
        raise RuntimeError("boom")
    assert rt.owned_netns() == []
    assert not rt.state_path.exists()


def test_create_rolls_back_on_failure_and_refuses_twice(
    cluster_name: Callable[[str], str], tmp_path: Path
) -> None:
    name = cluster_name("r")
    layout = netplan.ClusterLayout.simple(name, 2)
    plan = netplan.plan_cluster(layout)
    broken = dataclasses.replace(
        plan, steps=(*plan.steps, netplan.IpBatch(netplan.node_netns(name, 2), ("link set dev nosuch up",)))
    )
    rt = NetRuntime(name, tmp_path)
    with pytest.raises(NetError, match="nosuch"):
        rt.create_cluster(broken)
    assert rt.owned_netns() == [] and not rt.state_path.exists()

    with running(rt, layout):
        with pytest.raises(NetError, match="already exists"):
            rt.create_cluster(plan)
        with pytest.raises(NetError, match="already exists"):
            NetRuntime(name, tmp_path / "elsewhere").create_cluster(plan)  # found by name, not state
    assert rt.owned_netns() == []


def test_teardown_after_a_crash(cluster_name: Callable[[str], str], tmp_path: Path) -> None:
    name = cluster_name("c")
    first = NetRuntime(name, tmp_path)
    try:
        first.create_cluster(netplan.plan_cluster(netplan.ClusterLayout.simple(name, 2)))
        pod = first.add_pod(2, "d1d1d1d1-0000-4000-8000-000000000000")
        # a restarted daemon reads the state and carries on
        second = NetRuntime(name, tmp_path)
        assert second.pod(pod.uid) == pod
        assert second.add_pod(2, "d2d2d2d2-0000-4000-8000-000000000000").ip == "10.244.2.3"
        # state lost entirely: the sweep by name still finds every namespace of this cluster
        second.state_path.unlink()
        third = NetRuntime(name, tmp_path)
        assert third.exists()
        report = third.teardown()
        assert len(report.deleted) == 5 and report.lingering_pids == {}
        assert third.owned_netns() == []
    finally:
        first.teardown()


def test_two_clusters_side_by_side(
    cluster_name: Callable[[str], str], tmp_path: Path, servers: Callable[..., Server]
) -> None:
    # one name is a prefix of the other: teardown must still only touch its own namespaces
    x, xb = cluster_name("x"), cluster_name("x-b")
    rx, rxb = NetRuntime(x, tmp_path / "x"), NetRuntime(xb, tmp_path / "xb")
    with running(rx, netplan.ClusterLayout.simple(x, 2)), running(rxb, netplan.ClusterLayout.simple(xb, 2)):
        pods = {}
        for key, rt in (("x", rx), ("xb", rxb)):
            pods[key] = (rt.add_pod(1, f"a{key}".ljust(8, "0")), rt.add_pod(2, f"b{key}".ljust(8, "0")))
        # same addresses in both clusters, no clash
        assert [p.ip for p in pods["x"]] == [p.ip for p in pods["xb"]] == ["10.244.1.2", "10.244.2.2"]
        for key in ("x", "xb"):
            client, server = pods[key]
            servers(server.netns, 8080, key)
            assert talk(client.netns, server.ip, 8080) == f"{key}:hello".encode()

        rx.teardown()
        assert rx.owned_netns() == []
        assert len(rxb.owned_netns()) == 5
        client, server = pods["xb"]
        assert talk(client.netns, server.ip, 8080) == b"xb:hello"
    assert rxb.owned_netns() == []


# --- nsexec ------------------------------------------------------------------------------------------


def test_nsexec_returns_thread_to_host_namespace(cluster: Cluster) -> None:
    host = nsexec.current_netns_id()
    pod = cluster.pods["a"]
    inside = nsexec.call_in_netns(pod.netns, nsexec.current_netns_id)
    assert inside == nsexec.netns_id(pod.netns) != host
    assert nsexec.current_netns_id() == host

    def check_and_fail() -> None:
        raise ValueError("inside")

    with pytest.raises(ValueError, match="inside"):
        nsexec.call_in_netns(pod.netns, check_and_fail)
    assert nsexec.current_netns_id() == host
    # an fd works as a target too (ztunnel receives pod netns fds over SCM_RIGHTS)
    with open(nsexec.netns_path(pod.netns)) as f:
        assert nsexec.call_in_netns(f.fileno(), nsexec.current_netns_id) == inside
    # commands run inside the namespace
    out = nsexec.run(pod.netns, ["ip", "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    assert json.loads(out)[0]["addr_info"][0]["local"] == pod.ip
