"""Fail closed: no certificate, no config yet; and drain."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from ambit.identity.certs import WorkloadCert
from ambit.model.identity import Identity
from ambit.net.hbone import HboneConnectionProtocol, HboneServer
from ambit.net.tasks import spawn
from ambit.proxy.accesslog import ACCESS_LOGGER
from ambit.testing.clock import FakeClock
from ambit.testing.ztunnel_mesh import VIP, Mesh, closed_by_peer, echo, eventually
from ambit.ztunnel import proxy as proxy_module
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.inputs import PodInfo, open_listeners
from ambit.ztunnel.manager import Ztunnel
from ambit.ztunnel.proxy import PodProxy, PodStartError


async def test_no_certificate_means_the_pod_is_not_served(mesh: Mesh) -> None:
    async def no_cert(identity: Identity) -> WorkloadCert:
        raise RuntimeError("CA unreachable")

    zt = mesh.ztunnel("node-1", fetch=no_cert)
    a = mesh.workload("a", 2, "sleep", node="node-1")
    mesh.apply(a)
    listeners = await open_listeners(mesh.sockets, mesh.ip(2), zt.config)
    with pytest.raises(PodStartError, match="no certificate"):
        await zt.add_pod(PodInfo("a", "a-pod", "default", "sleep"), listeners)
    assert "a" not in zt.pods
    with pytest.raises(OSError):  # nothing listens: the app's connection is refused
        await mesh.connect(2, (VIP, 80))


async def test_expired_certificate_refuses_instead_of_sending_plaintext(
    mesh: Mesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    clock = FakeClock(datetime.now(UTC))
    fetched = 0

    async def once(identity: Identity) -> WorkloadCert:
        nonlocal fetched
        fetched += 1
        if fetched > 1:
            raise RuntimeError("CA unreachable")
        return mesh.pki.issue(identity)

    zt_a = Ztunnel(
        ZtunnelConfig(node="node-1"),
        fetch=once,
        bundle=mesh.pki.bundle,
        store=mesh.store,
        sockets=mesh.sockets,
        clock=clock,
    )
    mesh.ztunnels.append(zt_a)
    zt_a.mark_synced()
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    app = await mesh.app(3)

    clock.advance(2 * 3600)  # A's certificate (1 h) has expired; the refresh keeps failing
    await clock.settle()

    client = await mesh.connect(2, (VIP, 80))
    client.write(b"secret")
    assert await closed_by_peer(client)
    assert app.peers == [] and app.received == 0  # nothing reached B's app, tunnelled or not
    await eventually(
        lambda: any('"response_flags":"IDENTITY_ERROR"' in r.getMessage() for r in caplog.records)
    )


async def test_in_cluster_destination_is_held_until_sync_then_refused(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1", synced=False, sync_timeout=0.5)
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    app = await mesh.app(3)
    loop = asyncio.get_running_loop()

    started = loop.time()
    held = await mesh.connect(2, (VIP, 80))
    held.write(b"hello")
    assert await closed_by_peer(held)
    assert loop.time() - started >= 0.45
    assert app.peers == []

    # held, then served as soon as the config syncs
    waiting = await mesh.connect(2, (VIP, 80))
    waiting.write(b"hello")
    await eventually(lambda: zt_a.state.waiting == 1)  # held by the sync gate, not yet refused
    zt_a.mark_synced()
    assert await asyncio.wait_for(waiting.read_exactly(5), 5) == b"hello"


async def test_external_destination_passes_through_before_sync(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1", synced=False, sync_timeout=5.0)
    a = mesh.workload("a", 2, "sleep", node="node-1")
    mesh.apply(a)
    await mesh.serve(zt_a, a)
    external = await mesh.app(9, 9090)  # not in the config, outside the cluster CIDRs
    loop = asyncio.get_running_loop()

    started = loop.time()
    client = await mesh.connect(2, (mesh.ip(9), 9090))
    assert await echo(client, b"out") == b"out"
    assert loop.time() - started < 2.0  # not held for the sync timeout
    assert external.peers[0][0] == mesh.ip(2)

    # after sync an unknown destination inside the cluster is refused, outside still passes through
    zt_a.mark_synced()
    unknown = await mesh.connect(2, ("10.244.9.9", 80))
    assert await closed_by_peer(unknown)
    again = await mesh.connect(2, (mesh.ip(9), 9090))
    assert await echo(again, b"out") == b"out"


async def test_drain_lets_open_tunnels_finish_and_refuses_new_connections(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    await mesh.serve(zt_a, a)
    proxy_b = await mesh.serve(zt_b, b)
    await mesh.app(3)
    loop = asyncio.get_running_loop()

    open_conn = await mesh.connect(2, (VIP, 80))
    assert await echo(open_conn, b"one") == b"one"

    drain = asyncio.ensure_future(proxy_b.drain(10.0))
    await eventually(lambda: proxy_b.state == "draining")

    refused = await mesh.connect(2, (VIP, 80))
    refused.write(b"x")
    assert await closed_by_peer(refused)
    with pytest.raises(ConnectionRefusedError):  # B's own listeners are closed too
        await mesh.connect_to(9, (mesh.ip(3), 8080), (mesh.ip(3), 15006))

    assert await echo(open_conn, b"two") == b"two"  # the open tunnel still works
    assert not drain.done()
    started = loop.time()
    open_conn.write_eof()
    assert await open_conn.read_all() == b""
    await asyncio.wait_for(drain, 5.0)
    assert loop.time() - started < 2.0
    assert proxy_b.state == "closed"


async def test_drain_aborts_what_is_left_at_the_deadline(mesh: Mesh) -> None:
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    proxy_a = await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(3)
    loop = asyncio.get_running_loop()

    open_conn = await mesh.connect(2, (VIP, 80))
    assert await echo(open_conn, b"one") == b"one"
    started = loop.time()
    await proxy_a.drain(0.3)
    assert 0.25 <= loop.time() - started < 3.0
    assert await closed_by_peer(open_conn)


@pytest.mark.parametrize("port", [15001, 15006])
async def test_a_connection_accepted_as_the_drain_starts_is_served_not_reset(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch, port: int
) -> None:
    """The overlapping-restart race (issue 4): the loop accepts a connection, and the drain closes the
    listener before ``connection_made`` runs. The client is connected and no other ztunnel can take
    it over: it must be served (and waited for), not reset."""
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    proxy_a = await mesh.serve(zt_a, a)
    await mesh.serve(zt_b, b)
    await mesh.app(2)
    await mesh.app(3)
    drains: list[asyncio.Task[None]] = []

    class AcceptedAsTheDrainStarts(proxy_module._Accepted):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)  # the loop accepted it; connection_made is queued behind the drain
            if not drains:
                drains.append(spawn(proxy_a.drain(10.0)))

    monkeypatch.setattr(proxy_module, "_Accepted", AcceptedAsTheDrainStarts)
    if port == 15001:
        conn = await mesh.connect(2, (VIP, 80))
    else:  # plaintext inbound: a client outside the mesh reaches A's app
        conn = await mesh.connect_to(9, (mesh.ip(2), 8080), (mesh.ip(2), 15006))
    assert await echo(conn, b"hello") == b"hello"
    assert drains and proxy_a.state == "draining"
    with pytest.raises(ConnectionRefusedError):  # the listener is closed: new connections are refused
        await mesh.connect_to(9, (mesh.ip(2), 8080), (mesh.ip(2), 15006))
    assert await echo(conn, b"again") == b"again"
    assert not drains[0].done()  # the drain waits for it
    conn.write_eof()
    assert await conn.read_all() == b""
    await asyncio.wait_for(drains[0], 5.0)
    assert proxy_a.state == "closed"


async def test_an_hbone_connection_accepted_as_the_drain_starts_does_not_hold_the_drain(
    mesh: Mesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The HBONE side of the overlapping-restart race: B's 15008 listener has accepted A's connection
    (TLS handshake still under way) when B's drain starts. A's stream is refused (without a replacement
    ztunnel here, the retry finds B's listener closed); then the connection must end — GOAWAY seen by A
    or closed by B — so that B's drain finishes when its last stream does, not at the deadline."""
    zt_a = mesh.ztunnel("node-1")
    zt_b = mesh.ztunnel("node-2")
    a = mesh.workload("a", 2, "sleep", node="node-1")
    b = mesh.workload("b", 3, "web", node="node-2", service=True)
    mesh.apply(a, b, mesh.service())
    drains: list[asyncio.Task[None]] = []
    served: dict[str, PodProxy] = {}
    make_protocol = HboneServer._make_protocol

    def accepted_as_the_drain_starts(server: HboneServer) -> HboneConnectionProtocol:
        proto = make_protocol(server)
        proxy_b = served.get("b")
        if not drains and proxy_b is not None and proxy_b.hbone is server:
            drains.append(spawn(proxy_b.drain(5.0)))
        return proto

    monkeypatch.setattr(HboneServer, "_make_protocol", accepted_as_the_drain_starts)
    await mesh.serve(zt_a, a)
    served["b"] = await mesh.serve(zt_b, b)
    await mesh.app(3)
    loop = asyncio.get_running_loop()

    conn = await mesh.connect(2, (VIP, 80))
    conn.write(b"x")
    assert await closed_by_peer(conn)  # no replacement ztunnel to take the retry: refused
    assert drains
    started = loop.time()
    await asyncio.wait_for(drains[0], 10.0)
    assert loop.time() - started < 2.0, "B's drain waited for its deadline"
    assert not any(c.is_usable for key in list(zt_a.pool._conns) for c in zt_a.pool.connections(key))
