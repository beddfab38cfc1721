"""The node's Ztunnel: pods come and go, config dump, whole-node drain."""

from __future__ import annotations

import asyncio

import pytest

from ambit.testing.ztunnel_mesh import VIP, Mesh, closed_by_peer, echo


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
    assert dump["pods"]["b"]["identity"] == "spiffe://cluster.local/ns/default/sa/web"
    assert "spiffe://cluster.local/ns/default/sa/web" in dump["certificates"]
    assert dump["synced"] and dump["inbound_connections"] == 1

    assert await zt_b.remove_pod("b")
    assert not await zt_b.remove_pod("b")
    assert await closed_by_peer(conn)
    with pytest.raises(ConnectionRefusedError):
        await mesh.connect_to(9, (mesh.ip(3), 8080), (mesh.ip(3), 15006))
    assert zt_b.config_dump()["certificates"] == {}


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
    drain = asyncio.ensure_future(zt_a.drain(10.0))
    await asyncio.sleep(0.1)
    assert await echo(conn, b"two") == b"two"
    assert not drain.done()
    conn.write_eof()
    assert await conn.read_all() == b""
    await asyncio.wait_for(drain, 5.0)
    assert zt_a.pods == {} and not zt_a.ready()
