"""A stream opened on a pooled connection while both ends drain (GOAWAY both ways), at each moment.

The ztunnel drains its pool (the client side sends GOAWAY) and its HBONE servers (the server side sends
GOAWAY) at about the same time; a connection accepted on 15001 just before may have put a CONNECT on a
pooled connection whose server is the same ztunnel. Seen in `ambit chaos run ztunnel-restart`: the
server answered 200, the client never saw it, and both sides held the stream until the drain deadline.

Invariant, checked at each moment below and for each side that drains: **every stream completes its
exchange or fails promptly, never hangs**; a stream the server never processed is refused and retried
by the pool on a new connection; the drained connection then closes.

Each moment is hit exactly (no sleeps): a hook runs the drain between two steps of the connection —
after the client queued its CONNECT, before the server read it, after the server's handler got it, with
the 200 queued but not yet written when the client's GOAWAY is read, after the 200 was written but
before the client read it, and with the client's END_STREAM queued when the server's GOAWAY is read.
The server's listener stays open (the replacement ztunnel's, in production): a retry can succeed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ambit.net.duplex import relay
from ambit.net.hbone import (
    HboneClientConnection,
    HboneConnectionProtocol,
    HboneServer,
    HboneStream,
    InboundTunnel,
)
from ambit.net.pool import HbonePool
from ambit.testing.hbone_env import HboneEnv, forwarding_handler, key, tcp_connect, workload
from ambit.testing.ztunnel_mesh import eventually

CLIENT = workload("client")
SERVER = workload("server")

# Generous for loopback (an exchange takes milliseconds) and far below a drain deadline.
PROMPT = 3.0

MOMENTS = [
    "connect-queued",  # the client queued CONNECT HEADERS, not yet written
    "connect-sent",  # the CONNECT is written, the server has not read it
    "request-received",  # the server's handler has the CONNECT and has not answered
    "answer-queued",  # the server queued 200, not yet written, when a GOAWAY is read
    "answer-sent",  # the 200 is written, the client has not read it
    "eof-queued",  # the client queued END_STREAM after its request, not yet written, when a GOAWAY is read
]
SIDES = ["client", "server", "both"]


def hook_next_read(
    proto: HboneConnectionProtocol, before: Callable[[], None], goaway_read: list[bool] | None = None
) -> None:
    """Run `before` at the start of `proto`'s next `data_received`, then read as usual; with
    `goaway_read`, record whether that read brought the peer's GOAWAY (the moment was hit exactly)."""
    original = proto.data_received

    def data_received(data: bytes) -> None:
        proto.data_received = original  # type: ignore[method-assign]
        before()
        original(data)
        if goaway_read is not None:
            goaway_read.append(proto.core.goaway_received is not None)

    proto.data_received = data_received  # type: ignore[method-assign]


class Scenario:
    def __init__(self, env: HboneEnv, moment: str, side: str) -> None:
        self.env = env
        self.moment = moment
        self.side = side
        self.server: HboneServer | None = None
        self.pool: HbonePool | None = None
        self.armed = False
        self.drained = False
        self.upstream = 0
        self.goaway_read: list[bool] = []  # hooks meant to run just before the peer's GOAWAY is read

    def drain_client(self) -> None:
        assert self.pool is not None
        if self.side in ("client", "both"):
            self.pool.drain()

    def drain_server(self) -> None:
        assert self.server is not None
        if self.side in ("server", "both"):
            for conn in list(self.server.connections):
                conn.drain()  # GOAWAY; the listener stays open (a retry may connect)

    def drain(self) -> None:
        """Both drains in the ztunnel's order (the pool first), on the sides this scenario drains."""
        self.drained = True
        self.drain_client()
        self.drain_server()

    @property
    def server_conn(self) -> HboneConnectionProtocol:
        assert self.server is not None
        [conn] = self.server.connections
        return conn

    async def handler(self, tunnel: InboundTunnel) -> None:
        if not self.armed:
            await forwarding_handler()(tunnel)
            return
        upstream = await tcp_connect(tunnel.request.host, tunnel.request.port)
        if self.moment == "request-received":
            self.drain()
            # Answer only once each GOAWAY has been read by the other side.
            if self.side in ("client", "both"):
                await eventually(lambda: tunnel.conn.core.goaway_received is not None, within=PROMPT)
            if self.side in ("server", "both"):
                client = self.client_conn.proto
                await eventually(lambda: client.core.goaway_received is not None, within=PROMPT)
        elif self.moment == "answer-queued" and self.side != "server":
            # The client's GOAWAY is read in the same loop iteration as the handler answers, after it:
            # the 200 is queued (frames are written once per iteration), not yet sent.
            answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def answer_then_read() -> None:
                tunnel.accept()
                self.drain_server()
                answered.set_result(None)

            hook_next_read(tunnel.conn, answer_then_read, self.goaway_read)
            self.drained = True
            self.drain_client()
            await asyncio.wait_for(answered, PROMPT)
            await relay(tunnel.stream, upstream)
            return
        elif self.moment == "answer-sent":
            hook_next_read(self.client_conn.proto, self.drain)
        stream = tunnel.accept()
        if self.moment == "answer-queued":  # the server alone: its GOAWAY right after the queued 200
            self.drain()
        await relay(stream, upstream)

    client_conn: HboneClientConnection

    async def run(self) -> None:
        self.upstream = await self.env.echo_upstream()
        self.server, port = await self.env.hbone_server(SERVER, self.handler)
        pool = self.pool = self.env.pool({CLIENT: self.env.cert(CLIENT)})
        k = key(CLIENT, SERVER, port)
        authority = f"127.0.0.1:{self.upstream}"

        # A pooled connection that has carried a request fine.
        warm = await pool.open_stream(k, authority)
        await self.exchange(warm)
        [conn] = pool.connections(k)
        self.client_conn = conn
        await eventually(lambda: conn.open_streams == 0 and len(self.server_conn.streams) == 0)
        self.armed = True

        if self.moment == "connect-queued":
            original = conn.reserve

            def reserve_then_drain(authority: str, headers: tuple[tuple[str, str], ...] = ()) -> object:
                stream = original(authority, headers)
                conn.reserve = original  # type: ignore[method-assign]
                self.drain()
                return stream

            conn.reserve = reserve_then_drain  # type: ignore[assignment,method-assign]
        elif self.moment == "connect-sent":
            hook_next_read(self.server_conn, self.drain)

        loop = asyncio.get_running_loop()
        started = loop.time()
        phase = "awaiting the CONNECT's answer"
        try:
            async with asyncio.timeout(PROMPT):
                stream = await pool.open_stream(k, authority)
                phase = "exchanging bytes after the 200"
                if self.moment == "eof-queued":
                    stream.write(b"request")
                    assert await stream.read_exactly(7) == b"request"
                    if self.side == "client":  # our own GOAWAY: nothing is read in between
                        self.drain()
                        stream.write_eof()
                    else:  # END_STREAM queued, then the server's GOAWAY is read before it is written
                        hook_next_read(
                            conn.proto, lambda: (stream.write_eof(), self.drain_client()), self.goaway_read
                        )
                        self.drained = True
                        self.drain_server()
                    assert await stream.read() == b""
                else:
                    await self.exchange(stream)
        except TimeoutError:
            pytest.fail(
                f"the stream hung ({self.moment}, {self.side} drained), {phase}, for {PROMPT:g} s "
                "(in production: until the drain deadline)"
            )
        assert self.drained, "the drain hook never ran"
        assert all(self.goaway_read), "a hook ran on a read that did not bring the GOAWAY"
        assert loop.time() - started < PROMPT
        # Refused streams (the server's GOAWAY came before it read the CONNECT) were retried on a new
        # connection; any other stream finished on the draining one.
        refused_here = self.moment in ("connect-queued", "connect-sent") and self.side in ("server", "both")
        assert pool.connections_opened == (2 if refused_here else 1)
        # And the drained connection closes (both ends): nothing waits for a deadline.
        await asyncio.wait_for(conn.wait_closed(), PROMPT)

    async def exchange(self, stream: HboneStream) -> None:
        stream.write(b"request")
        assert await stream.read_exactly(7) == b"request"
        stream.write_eof()
        assert await stream.read() == b""


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("moment", MOMENTS)
async def test_a_stream_opened_while_both_ends_drain_completes_or_is_retried(
    env: HboneEnv, moment: str, side: str
) -> None:
    await Scenario(env, moment, side).run()
