"""NetnsSocketFactory on real namespaces: ztunnel's listeners inside a pod netns, capture, marks.

The test process plays ztunnel: it stays in the host namespace and makes every socket through the
factory, which creates it inside the pod's namespace (from an open netns fd, as the node agent hands
it over). Servers standing in for other pods are sockets made inside their namespaces with nsexec.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ambit.net.netns import current_netns_id, netns_path, socket_here_in_netns
from ambit.proxy.netns_sockets import NetnsSocketFactory
from ambit.runtime import capture, netplan, nsexec
from ambit.runtime.netns import NetRuntime, PodNet
from ambit.ztunnel.config import PACKET_MARK, ZtunnelConfig
from ambit.ztunnel.inputs import PodListeners, open_listeners

pytestmark = pytest.mark.root

CONFIG = ZtunnelConfig(node="node1")


@dataclass
class Cluster:
    rt: NetRuntime
    ambient: PodNet  # node 1, capture installed
    other: PodNet  # node 2, not captured


@pytest.fixture(scope="module")
def cluster(
    cluster_name: Callable[[str], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    name = cluster_name("z")
    rt = NetRuntime(name, tmp_path_factory.mktemp("state"))
    try:
        rt.create_cluster(netplan.plan_cluster(netplan.ClusterLayout.simple(name, 2)))
        ambient = rt.add_pod(1, "a1a1a1a1-0000-4000-8000-000000000000")
        other = rt.add_pod(2, "b2b2b2b2-0000-4000-8000-000000000000")
        capture.apply(ambient.netns)
        yield Cluster(rt, ambient, other)
    finally:
        rt.teardown()
    assert not rt.owned_netns()


@pytest.fixture
def netns_fd(cluster: Cluster) -> Iterator[int]:
    fd = os.open(netns_path(cluster.ambient.netns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def echo_server(netns: str, port: int, tag: bytes) -> Iterator[None]:
    """A thread answering ``tag:<request>`` on 0.0.0.0:port inside ``netns``."""

    def setup(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        sock.listen(16)

    srv = nsexec.socket_in_netns(netns, setup=setup)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                with contextlib.suppress(OSError):
                    conn.sendall(tag + b":" + conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        srv.close()


def connect_from(netns: str, ip: str, port: int) -> socket.socket:
    sock = nsexec.socket_in_netns(netns)
    sock.settimeout(3)
    sock.connect((ip, port))
    return sock


def accept(listener: socket.socket, timeout: float = 3.0) -> socket.socket:
    ready, _, _ = select.select([listener], [], [], timeout)
    assert ready, "nothing arrived at the listener"
    conn, _ = listener.accept()
    return conn


class _Transport:
    """Enough of a transport for ``original_destination``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def get_extra_info(self, name: str) -> object:
        return {"socket": self.sock, "sockname": self.sock.getsockname()}.get(name)


async def test_listeners_live_in_the_pod_netns(cluster: Cluster, netns_fd: int) -> None:
    factory = NetnsSocketFactory(netns_fd)
    home = current_netns_id()
    listeners = await open_listeners(factory, "0.0.0.0", CONFIG)
    try:
        assert current_netns_id() == home  # the loop thread never left
        for sock in (listeners.outbound, listeners.inbound_plaintext, listeners.hbone):
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # HBONE from another node reaches 15008 in the pod (not captured)
        with (
            connect_from(cluster.other.netns, cluster.ambient.ip, CONFIG.hbone_port) as client,
            accept(listeners.hbone) as conn,
        ):
            assert conn.getpeername()[0] == cluster.other.ip
            assert client.getpeername() == (cluster.ambient.ip, CONFIG.hbone_port)
        # the host namespace has nothing on 15008
        with socket.socket() as probe:
            probe.settimeout(1)
            assert probe.connect_ex(("127.0.0.1", CONFIG.hbone_port)) != 0
        # an overlapping ztunnel can bind the same ports (SO_REUSEPORT)
        second = await open_listeners(NetnsSocketFactory(netns_fd), "0.0.0.0", CONFIG)
        second.close()
    finally:
        listeners.close()


async def test_capture_redirects_to_the_listeners_and_original_dst(cluster: Cluster, netns_fd: int) -> None:
    factory = NetnsSocketFactory(netns_fd)
    listeners: PodListeners = await open_listeners(factory, "0.0.0.0", CONFIG)
    try:
        # outbound: the app connects to the other pod; capture sends it to 15001
        with connect_from(cluster.ambient.netns, cluster.other.ip, 8080), accept(listeners.outbound) as conn:
            assert factory.original_destination(_Transport(conn)) == (cluster.other.ip, 8080)  # type: ignore[arg-type]
        # inbound plaintext: another pod connects to the app port; capture sends it to 15006
        with (
            connect_from(cluster.other.netns, cluster.ambient.ip, 9090),
            accept(listeners.inbound_plaintext) as conn,
        ):
            assert conn.getpeername()[0] == cluster.other.ip
            assert factory.original_destination(_Transport(conn)) == (cluster.ambient.ip, 9090)  # type: ignore[arg-type]
    finally:
        listeners.close()


async def test_marked_upstream_sockets_bypass_capture(cluster: Cluster, netns_fd: int) -> None:
    factory = NetnsSocketFactory(netns_fd)
    with echo_server(cluster.other.netns, 8080, b"other"):
        sock = await factory.connect_socket((cluster.other.ip, 8080), mark=CONFIG.mark, connect_timeout=3)
        with sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK) == PACKET_MARK
            assert sock.getsockname()[0] == cluster.ambient.ip  # made in the pod netns
            sock.setblocking(True)
            sock.settimeout(3)
            sock.sendall(b"hi")
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(100) == b"other:hi"  # reached the real server: not redirected to 15001
        # an upstream duplex through the same path
        duplex = await factory.connect_upstream((cluster.other.ip, 8080), mark=CONFIG.mark, connect_timeout=3)
        try:
            duplex.write(b"yo")
            duplex.write_eof()
            assert await asyncio.wait_for(duplex.read_all(), 3) == b"other:yo"
        finally:
            duplex.close()


def test_closed_fd_is_refused(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY)
    os.close(fd)
    with pytest.raises(OSError):
        NetnsSocketFactory(fd)


def test_socket_made_on_the_calling_thread_lives_in_the_pod_and_the_thread_comes_home(
    cluster: Cluster, netns_fd: int
) -> None:
    """The per-connection fast path: setns in, socket(), setns back, on the caller's own thread."""
    home = current_netns_id()
    for _ in range(200):
        with socket_here_in_netns(netns_fd) as sock:
            sock.bind((cluster.ambient.ip, 0))  # only the pod's namespace has this address
            assert current_netns_id() == home
    with socket.socket() as host_sock, pytest.raises(OSError):
        host_sock.bind((cluster.ambient.ip, 0))
