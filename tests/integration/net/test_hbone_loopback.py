"""HBONE client ↔ server on loopback with real mTLS and certificates from our CA."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import ssl
from datetime import UTC, datetime, timedelta

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from ambit.identity.tls import PeerIdentityError
from ambit.net.connect import connect_numeric
from ambit.net.duplex import StreamAborted
from ambit.net.hbone import (
    HboneConnectionProtocol,
    InboundTunnel,
    Timeouts,
    TunnelRejected,
    connect_hbone,
)
from ambit.net.pool import Dial, PoolKey
from ambit.protocol.hbone import HboneSettings, request_headers
from ambit.testing.hbone_env import HboneEnv, forwarding_handler, key, workload
from ambit.testing.ztunnel_mesh import eventually

CLIENT = workload("client")
SERVER = workload("server")
MiB = 1024 * 1024


async def setup(env: HboneEnv, **server_kwargs: object) -> tuple[int, int]:
    upstream = await env.echo_upstream()
    _server, port = await env.hbone_server(SERVER, **server_kwargs)  # type: ignore[arg-type]
    return upstream, port


async def test_one_kib_both_ways(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    payload = os.urandom(1024)
    stream.write(payload)
    assert await stream.read_exactly(1024) == payload
    stream.write_eof()
    assert await stream.read() == b""


async def _pump_both_ways(stream_write, stream_read, size: int) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    sent = hashlib.sha256()
    received = hashlib.sha256()
    chunk = os.urandom(256 * 1024)

    async def writer() -> None:
        left = size
        while left:
            part = chunk[: min(left, len(chunk))]
            sent.update(part)
            await stream_write(part)
            left -= len(part)

    async def reader() -> None:
        got = 0
        while got < size:
            data = await stream_read()
            assert data, "stream ended early"
            received.update(data)
            got += len(data)

    await asyncio.gather(writer(), reader())
    return sent.hexdigest(), received.hexdigest()


async def test_64_mib_both_ways(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")

    async def write(part: bytes) -> None:
        stream.write(part)
        await stream.drain()

    sent, received = await asyncio.wait_for(_pump_both_ways(write, stream.read, 64 * MiB), 60)
    assert sent == received
    stream.write_eof()
    assert await stream.read() == b""
    assert stream.bytes_out == 64 * MiB and stream.bytes_in == 64 * MiB


async def test_half_close_client_first(env: HboneEnv) -> None:
    """Client FIN reaches the upstream as EOF; the upstream can still answer afterwards."""
    got_eof = asyncio.Event()

    class AnswerAfterEof(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data

        def eof_received(self) -> bool:
            got_eof.set()
            self.t.write(b"after-eof:" + self.buf)  # type: ignore[attr-defined]
            self.t.close()
            return True

    server = await asyncio.get_running_loop().create_server(AnswerAfterEof, "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    _s, port = await env.hbone_server(SERVER)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{up_port}")
    stream.write(b"question")
    stream.write_eof()
    await asyncio.wait_for(got_eof.wait(), 5)
    assert await asyncio.wait_for(stream.read_all(), 5) == b"after-eof:question"
    server.close()
    await server.wait_closed()


async def test_half_close_upstream_first(env: HboneEnv) -> None:
    """Upstream FIN reaches the client as end of stream; the client can still send afterwards."""
    received = asyncio.get_running_loop().create_future()

    class GreetThenListen(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""
            transport.write(b"hello")  # type: ignore[attr-defined]
            transport.write_eof()  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.buf += data

        def eof_received(self) -> bool:
            received.set_result(self.buf)
            return False

    server = await asyncio.get_running_loop().create_server(GreetThenListen, "127.0.0.1", 0)
    up_port = server.sockets[0].getsockname()[1]
    _s, port = await env.hbone_server(SERVER)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{up_port}")
    assert await asyncio.wait_for(stream.read_all(), 5) == b"hello"
    stream.write(b"still talking")
    stream.write_eof()
    assert await asyncio.wait_for(received, 5) == b"still talking"
    server.close()
    await server.wait_closed()


async def test_150_concurrent_streams_share_two_connections(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    k = key(CLIENT, SERVER, port)
    streams = await asyncio.gather(*(pool.open_stream(k, f"127.0.0.1:{upstream}") for _ in range(150)))
    conns = pool.connections(k)
    assert len(conns) == 2, pool
    assert sorted(c.open_streams for c in conns) == [50, 100]
    for i, s in enumerate(streams):
        s.write(b"%d" % i)
    replies = await asyncio.gather(*(s.read_exactly(len(b"%d" % i)) for i, s in enumerate(streams)))
    assert replies == [b"%d" % i for i in range(150)]


def recording_dial(dialled: list[PoolKey]) -> Dial:
    """A dialer that records each key it makes a socket for (what a pod's netns dialer would do)."""

    async def dial(k: PoolKey) -> socket.socket:
        dialled.append(k)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await connect_numeric(sock, k.address)
        return sock

    return dial


async def test_the_requests_dialer_makes_each_new_connection_and_concurrent_connects_share_it(
    env: HboneEnv,
) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    k = key(CLIENT, SERVER, port)
    dialled: list[PoolKey] = []
    dial = recording_dial(dialled)
    streams = await asyncio.gather(
        *(pool.open_stream(k, f"127.0.0.1:{upstream}", dial=dial) for _ in range(150))
    )
    assert len(pool.connections(k)) == 2
    assert dialled == [k, k], "one dial per connection: concurrent requests wait for the shared connect"
    streams[0].write(b"dialled")
    assert await streams[0].read_exactly(7) == b"dialled"
    other: list[PoolKey] = []
    await pool.open_stream(k, f"127.0.0.1:{upstream}", dial=recording_dial(other))
    assert other == [], "a stream that fits on a pooled connection dials nothing"


async def test_pool_never_shares_a_connection_across_source_identities(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    other = workload("other-client")
    pool = env.pool({CLIENT: env.cert(CLIENT), other: env.cert(other)})
    await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    await pool.open_stream(key(other, SERVER, port), f"127.0.0.1:{upstream}")
    assert pool.connection_count == 2
    peers = set()
    for server in env.servers:
        peers |= {c.peer_identity for c in server.connections}
    assert peers == {CLIENT, other}


class SeenConnections(set[HboneConnectionProtocol]):
    """A server's connection set that also counts the connections it saw opened and closed."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0
        self.closed = 0
        self._changed = asyncio.Event()

    def add(self, element: HboneConnectionProtocol) -> None:
        self.opened += 1
        super().add(element)

    def discard(self, element: object) -> None:
        if element in self:
            self.closed += 1
            self._changed.set()
        super().discard(element)

    async def all_closed(self, at_least: int) -> None:
        """Until ``at_least`` connections were opened and every one of them closed."""
        while not (self.opened >= at_least and self.closed == self.opened):
            self._changed.clear()
            await self._changed.wait()


async def test_wrong_server_identity_refused_before_any_byte(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    impostor = workload("impostor")
    server, port = await env.hbone_server(impostor)
    server.connections = seen = SeenConnections()
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    with pytest.raises(PeerIdentityError, match="impostor"):
        await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    # the server saw the connection end (a positive end, not a fixed sleep): nothing more can come
    await asyncio.wait_for(seen.all_closed(1), 5)
    assert env.upstreams.accepted == 0, "nothing was forwarded"
    assert pool.connection_count == 0


@pytest.mark.parametrize("which", ["expired", "not-yet-valid"])
async def test_bad_client_certificate_validity_refused(env: HboneEnv, which: str) -> None:
    upstream, port = await setup(env)
    now = datetime.now(UTC)
    not_before = now - timedelta(hours=3) if which == "expired" else now + timedelta(hours=1)
    bad = env.cert(CLIENT, ttl=timedelta(hours=1), not_before=not_before)
    pool = env.pool({CLIENT: bad})
    with pytest.raises((ssl.SSLError, ConnectionError, StreamAborted)):
        stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
        stream.write(b"x")
        await stream.read_exactly(1)
    assert env.upstreams.accepted == 0


@pytest.mark.parametrize("which", ["expired", "not-yet-valid"])
async def test_bad_server_certificate_validity_refused(env: HboneEnv, which: str) -> None:
    upstream = await env.echo_upstream()
    now = datetime.now(UTC)
    not_before = now - timedelta(hours=3) if which == "expired" else now + timedelta(hours=1)
    bad = env.cert(SERVER, ttl=timedelta(hours=1), not_before=not_before)
    _s, port = await env.hbone_server(SERVER, cert=bad)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    with pytest.raises(ssl.SSLCertVerificationError):
        await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    assert env.upstreams.accepted == 0


async def test_certificate_from_another_ca_refused(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    stranger = HboneEnv.create()
    pool = env.pool({CLIENT: stranger.cert(CLIENT)})
    with pytest.raises((ssl.SSLError, ConnectionError, StreamAborted)):
        stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
        stream.write(b"x")
        await stream.read_exactly(1)
    assert env.upstreams.accepted == 0


async def test_denied_gets_401(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    _s, port = await env.hbone_server(SERVER, forwarding_handler(deny=lambda t: t.peer_identity == CLIENT))
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    with pytest.raises(TunnelRejected) as err:
        await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    assert err.value.status == 401
    assert env.upstreams.accepted == 0


async def test_refused_upstream_gets_503(env: HboneEnv) -> None:
    _s, port = await env.hbone_server(SERVER)
    closed = await env.echo_upstream()
    for server in env.upstreams.servers:
        server.close()
        await server.wait_closed()
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    with pytest.raises(TunnelRejected) as err:
        await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{closed}")
    assert err.value.status == 503


async def test_200_only_after_upstream_connected(env: HboneEnv) -> None:
    """The server's answer waits for the upstream connect (here: a handler that takes its time)."""
    upstream = await env.echo_upstream()
    order: list[str] = []

    async def slow(t: InboundTunnel) -> None:
        await asyncio.sleep(0.2)
        order.append("upstream-connected")
        await forwarding_handler()(t)

    _s, port = await env.hbone_server(SERVER, slow)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    order.append("client-got-200")
    assert order == ["upstream-connected", "client-got-200"]


async def raw_h2_client(env: HboneEnv, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=env.client_ctx(env.cert(CLIENT)), server_hostname=""
    )
    return reader, writer


async def read_events(
    conn: h2.connection.H2Connection, reader: asyncio.StreamReader
) -> list[h2.events.Event]:
    data = await asyncio.wait_for(reader.read(65536), 5)
    return conn.receive_data(data) if data else []


async def test_non_connect_gets_400_over_tls(env: HboneEnv) -> None:
    _u, port = await setup(env)
    reader, writer = await raw_h2_client(env, port)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(
        1, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "x")], True
    )
    writer.write(conn.data_to_send())
    statuses = []
    for _ in range(5):
        for ev in await read_events(conn, reader):
            if isinstance(ev, h2.events.ResponseReceived):
                statuses.append(dict(ev.headers)[b":status"])
        if statuses:
            break
    assert statuses == [b"400"]
    writer.close()


async def test_handshake_timeout_closes_silent_client(env: HboneEnv) -> None:
    _s, port = await env.hbone_server(SERVER, timeouts=Timeouts(handshake=0.5, idle=None))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = asyncio.get_running_loop().time()
    data = await asyncio.wait_for(reader.read(), 5)  # we never send a ClientHello
    elapsed = asyncio.get_running_loop().time() - started
    assert data == b""
    assert 0.3 < elapsed < 3.0
    writer.close()


async def test_first_request_timeout_closes_tls_client_that_sends_nothing(env: HboneEnv) -> None:
    _s, port = await env.hbone_server(SERVER, timeouts=Timeouts(first_request=0.5, idle=None))
    reader, writer = await raw_h2_client(env, port)
    started = asyncio.get_running_loop().time()
    while await asyncio.wait_for(reader.read(65536), 5):
        pass
    assert asyncio.get_running_loop().time() - started < 3.0
    writer.close()


async def test_keepalive_detects_dead_peer(env: HboneEnv) -> None:
    """A server that completes TLS and then goes silent is detected by PING within the timeout."""
    silent = await asyncio.get_running_loop().create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=env.server_ctx(env.cert(SERVER))
    )
    port = silent.sockets[0].getsockname()[1]
    conn = await connect_hbone(
        "127.0.0.1",
        port,
        env.client_ctx(env.cert(CLIENT)),
        SERVER,
        timeouts=Timeouts(keepalive_interval=0.2, keepalive_timeout=0.4),
    )
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert conn.proto.closed_reason == "keepalive timeout"
    silent.close()
    await silent.wait_closed()


async def test_a_silent_peer_is_dropped_within_5_s_at_the_default_keepalive(env: HboneEnv) -> None:
    """At the production defaults (PING every 2 s, 3 s to answer) a peer that went silent (partitioned,
    its host gone) is found dead and the connection closed within 5 s (Istio's ztunnel: 20 s); not
    before the first PING could have gone unanswered (the control: it is the keepalive that closes it)."""
    assert (Timeouts().keepalive_interval, Timeouts().keepalive_timeout) == (2.0, 2.9)
    silent = await asyncio.get_running_loop().create_server(
        asyncio.Protocol, "127.0.0.1", 0, ssl=env.server_ctx(env.cert(SERVER))
    )
    port = silent.sockets[0].getsockname()[1]
    conn = await connect_hbone("127.0.0.1", port, env.client_ctx(env.cert(CLIENT)), SERVER)
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(conn.wait_closed(), 8)
    took = asyncio.get_running_loop().time() - started
    assert conn.proto.closed_reason == "keepalive timeout"
    assert 3.0 <= took <= 6.5, f"closed after {took:.2f} s"  # 5 s nominal; a busy 2-core machine adds lag
    silent.close()
    await silent.wait_closed()


async def test_keepalive_keeps_a_live_connection(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool(
        {CLIENT: env.cert(CLIENT)}, timeouts=Timeouts(keepalive_interval=0.1, keepalive_timeout=0.3)
    )
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    await asyncio.sleep(1.0)
    stream.write(b"still here")
    assert await stream.read_exactly(10) == b"still here"


async def test_idle_connection_closes_and_leaves_pool(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)}, timeouts=Timeouts(idle=0.3))
    k = key(CLIENT, SERVER, port)
    stream = await pool.open_stream(k, f"127.0.0.1:{upstream}")
    [conn] = pool.connections(k)
    stream.write_eof()
    assert await stream.read() == b""
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert pool.connections(k) == []


async def test_rapid_reset_cut_off_while_good_client_unaffected(env: HboneEnv) -> None:
    upstream, port = await setup(env, settings=HboneSettings(reset_burst=50, reset_refill_per_second=5))
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    good = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")

    reader, writer = await raw_h2_client(env, port)
    abuser = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    abuser.initiate_connection()
    goaway: h2.events.ConnectionTerminated | None = None
    for _ in range(400):
        sid = abuser.get_next_available_stream_id()
        abuser.send_headers(sid, [(":method", "CONNECT"), (":authority", f"127.0.0.1:{upstream}")])
        abuser.reset_stream(sid, ErrorCodes.CANCEL)
        writer.write(abuser.data_to_send())
        await writer.drain()
        good.write(b"ok")
        assert await asyncio.wait_for(good.read_exactly(2), 5) == b"ok"
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.01)
        except TimeoutError:
            continue
        if not data:
            break
        try:
            events = abuser.receive_data(data)
        except h2.exceptions.ProtocolError:
            break
        goaway = next((e for e in events if isinstance(e, h2.events.ConnectionTerminated)), goaway)
        if goaway is not None:
            break
    assert goaway is not None and goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert await asyncio.wait_for(reader.read(), 5) == b"", "the abuser's connection is closed"
    good.write(b"still fine")
    assert await good.read_exactly(10) == b"still fine"
    writer.close()


async def test_server_drain_lets_inflight_finish_and_new_streams_use_new_connection(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    server, port = await env.hbone_server(SERVER)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    k = key(CLIENT, SERVER, port)
    inflight = await pool.open_stream(k, f"127.0.0.1:{upstream}")
    [first] = pool.connections(k)
    for conn in list(server.connections):
        conn.drain()  # GOAWAY, but keep the listener: a new connection must work
    await eventually(lambda: not first.is_usable)  # the client has the GOAWAY (not a fixed sleep)
    inflight.write(b"finishing")
    assert await inflight.read_exactly(9) == b"finishing"
    fresh = await pool.open_stream(k, f"127.0.0.1:{upstream}")
    assert [c for c in pool.connections(k) if c is not first], "a new connection was opened"
    fresh.write(b"new")
    assert await fresh.read_exactly(3) == b"new"
    inflight.write_eof()
    assert await inflight.read() == b""
    await asyncio.wait_for(first.wait_closed(), 5)


async def test_refused_stream_after_goaway_retried_on_new_connection(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    seen: list[int] = []

    async def refuse_first(t: InboundTunnel) -> None:
        seen.append(t.request.stream_id)
        if len(seen) == 1:
            # GOAWAY that does not cover this stream: the client must treat it as never processed.
            t.conn.core.goaway(last_stream_id=0)
            t.conn._flush()
            t.answered = True
            return
        await forwarding_handler()(t)

    _s, port = await env.hbone_server(SERVER, refuse_first)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    stream.write(b"retried")
    assert await stream.read_exactly(7) == b"retried"
    assert len(seen) == 2 and pool.connections_opened == 2


async def test_refused_stream_retry_dials_with_the_requests_dialer(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    seen: list[int] = []

    async def refuse_first(t: InboundTunnel) -> None:
        seen.append(t.request.stream_id)
        if len(seen) == 1:
            t.conn.core.goaway(last_stream_id=0)
            t.conn._flush()
            t.answered = True
            return
        await forwarding_handler()(t)

    _s, port = await env.hbone_server(SERVER, refuse_first)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    k = key(CLIENT, SERVER, port)
    dialled: list[PoolKey] = []
    stream = await pool.open_stream(k, f"127.0.0.1:{upstream}", dial=recording_dial(dialled))
    stream.write(b"retried")
    assert await stream.read_exactly(7) == b"retried"
    assert len(seen) == 2 and pool.connections_opened == 2
    assert dialled == [k, k], "the retry's new connection was dialled by the same request's dialer"


async def test_server_drain_deadline_aborts_stuck_streams(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    server, port = await env.hbone_server(SERVER)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}")
    started = asyncio.get_running_loop().time()
    await server.drain(deadline=0.3)
    assert asyncio.get_running_loop().time() - started < 2
    with pytest.raises(StreamAborted):
        await asyncio.wait_for(stream.read_all(), 5)


async def test_pool_drain_sends_goaway_and_lets_inflight_finish(env: HboneEnv) -> None:
    upstream, port = await setup(env)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    k = key(CLIENT, SERVER, port)
    stream = await pool.open_stream(k, f"127.0.0.1:{upstream}", request_headers("127.0.0.1"))
    [conn] = pool.connections(k)
    pool.drain()
    assert not conn.is_usable, "a draining connection takes no new streams"
    stream.write(b"in flight")
    assert await stream.read_exactly(9) == b"in flight"
    stream.write_eof()
    assert await stream.read() == b""
    await asyncio.wait_for(conn.wait_closed(), 5)
    assert pool.connections(k) == []


async def test_client_reset_reaches_upstream_as_tcp_reset(env: HboneEnv) -> None:
    """RST_STREAM from the HBONE client must reach the upstream as a TCP RST, not as an orderly FIN."""
    outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    class Watch(asyncio.Protocol):
        def eof_received(self) -> bool:
            if not outcome.done():
                outcome.set_result("fin")
            return False

        def connection_lost(self, exc: Exception | None) -> None:
            if not outcome.done():
                outcome.set_result(f"reset: {type(exc).__name__}" if exc else "closed")

    server = await asyncio.get_running_loop().create_server(Watch, "127.0.0.1", 0)
    try:
        up_port = server.sockets[0].getsockname()[1]
        _s, port = await env.hbone_server(SERVER)
        pool = env.pool({CLIENT: env.cert(CLIENT)})
        stream = await pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{up_port}")
        stream.write(b"partial request")
        await asyncio.sleep(0.1)
        stream.abort()
        assert (await asyncio.wait_for(outcome, 5)).startswith("reset"), "the upstream saw an orderly close"
    finally:
        server.close()


async def test_cancelled_open_resets_the_reserved_stream(env: HboneEnv) -> None:
    upstream = await env.echo_upstream()
    answered = asyncio.Event()
    resets: list[int] = []

    async def slow(t: InboundTunnel) -> None:
        await asyncio.sleep(0.3)
        answered.set()
        await forwarding_handler()(t)
        resets.append(1 if t.stream.error is not None else 0)

    _s, port = await env.hbone_server(SERVER, slow)
    pool = env.pool({CLIENT: env.cert(CLIENT)})
    task = asyncio.ensure_future(pool.open_stream(key(CLIENT, SERVER, port), f"127.0.0.1:{upstream}"))
    # the CONNECT is out (its stream reserved), not a fixed sleep
    await eventually(lambda: any(c.open_streams == 1 for c in pool.connections(key(CLIENT, SERVER, port))))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [conn] = pool.connections(key(CLIENT, SERVER, port))
    assert conn.open_streams == 0, "the cancelled CONNECT's stream was reset, not left open"
    await asyncio.wait_for(answered.wait(), 5)
