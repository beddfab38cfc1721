"""The node's Ztunnel: pods come and go, config dump, whole-node drain."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from ambit.model.identity import DEFAULT_TRUST_DOMAIN
from ambit.proxy.sockets import Address, LoopbackSocketFactory
from ambit.testing.ztunnel_mesh import VIP, Mesh, closed_by_peer, echo, eventually
from ambit.ztunnel.inputs import PodInfo, open_listeners


class PodSockets(LoopbackSocketFactory):
    """A pod's own socket factory (its netns in production), sharing the mesh's capture table;
    records every socket it dials."""

    def __init__(self, mesh: Mesh) -> None:
        super().__init__()
        self._table = mesh.sockets._table
        self.dialled: list[tuple[Address, str | None]] = []

    async def connect_socket(self, dst: Address, **kwargs: Any) -> socket.socket:
        self.dialled.append((dst, kwargs.get("source_ip")))
        return await super().connect_socket(dst, **kwargs)


async def test_remove_pod_stops_at_once_and_forgets_an_unused_identity(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(3)

    conn = await mesh.connect(2, (VIP, 80))
    assert await echo(conn, b"hi") == b"hi"
    dump = zt_b.config_dump()
    assert dump.pods["b"].identity == "spiffe://cluster.local/ns/default/sa/web"
    assert "spiffe://cluster.local/ns/default/sa/web" in dump.certificates
    assert dump.synced and dump.inbound_connections == 1

    assert await zt_b.remove_pod("b")
    assert not await zt_b.remove_pod("b")
    assert await closed_by_peer(conn)
    with pytest.raises(ConnectionRefusedError):
        await mesh.connect_to(9, (mesh.ip(3), 8080), (mesh.ip(3), 15006))
    assert zt_b.config_dump().certificates == {}


async def test_add_pod_again_replaces_the_old_proxy(mesh: Mesh) -> None:
    zt = mesh.ztunnel("node-1")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    mesh.apply(a)
    first = await mesh.serve(zt, a)
    second = await mesh.serve(zt, a)  # the listeners can be made again: the old ones were closed
    assert first.state == "closed" and second.state == "serving"
    assert zt.pods["a"] is second


async def test_ztunnel_drain_finishes_open_connections_then_closes(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(3)

    conn = await mesh.connect(2, (VIP, 80))
    assert await echo(conn, b"one") == b"one"
    [proxy] = zt_a.pods.values()
    drain = asyncio.ensure_future(zt_a.drain(10.0))
    await eventually(lambda: proxy.state == "draining")  # the drain began (not a fixed sleep)
    assert await echo(conn, b"two") == b"two"
    assert not drain.done()
    conn.write_eof()
    assert await conn.read_all() == b""
    await asyncio.wait_for(drain, 5.0)
    assert zt_a.pods == {} and not zt_a.ready()


async def test_each_pods_hbone_connections_are_dialled_by_its_own_socket_factory(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a1 = mesh.workload("a1", 2, "sleep", node="node-1")
    a2 = mesh.workload("a2", 4, "curl", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a1, a2, b, mesh.service())
    factories: dict[str, PodSockets] = {}
    for w in (a1, a2):
        factories[w.uid] = PodSockets(mesh)
        listeners = await open_listeners(mesh.sockets, w.addresses[0], zt_a.config)
        pod = PodInfo(w.uid, w.name, w.namespace, w.service_account, DEFAULT_TRUST_DOMAIN)
        await zt_a.add_pod(pod, listeners, sockets=factories[w.uid])
    await mesh.serve(zt_b, b)
    await mesh.app(3)

    for n in (2, 4, 2):
        conn = await mesh.connect(n, (VIP, 80))
        assert await echo(conn, b"hi") == b"hi"
    hbone = (mesh.ip(3), 15008)
    assert factories["a1"].dialled == [(hbone, mesh.ip(2))], "one pooled connection, dialled by a1's factory"
    assert factories["a2"].dialled == [(hbone, mesh.ip(4))]
    assert zt_a.pool.connection_count == 2
