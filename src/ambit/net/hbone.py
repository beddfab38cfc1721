"""HBONE over asyncio: mTLS connections driving `protocol.hbone`, streams as `Duplex`, server and client.

TLS is `ambit.net.tls` (OpenSSL on the socket), not the event loop's memory-BIO transport.

* `HboneConnectionProtocol` owns one TLS transport and one sans-IO `HboneConnection`; it checks
  the peer's SPIFFE identity as soon as the handshake is done (the client verifies the *exact*
  expected identity before sending a byte), runs PING keepalive, the first-request (header)
  timeout and the idle timer, and implements graceful drain (GOAWAY, let streams finish, close
  with TLS close_notify; abort at the deadline).
* `HboneStream` is one tunnel as a `Duplex`: reading withholds flow-control credit while paused.
* `HboneServer` accepts connections with a handshake timeout and hands each well-formed CONNECT to
  a handler coroutine that decides (`InboundTunnel.reject(status)` / `.accept()`) and relays.
* `connect_hbone` opens a client connection; `HboneClientConnection.open_stream` sends CONNECT
  and waits for the answer.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from h2.errors import ErrorCodes

from ambit.identity.tls import PeerIdentityError, peer_identity, verify_server_identity
from ambit.model.identity import Identity, NodeIdentity
from ambit.net.connect import connect_numeric
from ambit.net.duplex import Duplex, StreamAborted
from ambit.net.tasks import spawn
from ambit.net.tls import TlsServer, open_tls
from ambit.protocol import hbone as core

_log = logging.getLogger(__name__)

PeerId = Identity | NodeIdentity


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits of an HBONE connection (seconds)."""

    handshake: float = 10.0
    first_request: float = 10.0
    keepalive_interval: float = 10.0
    keepalive_timeout: float = 20.0
    idle: float | None = 300.0
    connect: float = 10.0


class TunnelRejected(ConnectionError):
    """The server answered the CONNECT with a non-200 status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HBONE CONNECT answered {status}")
        self.status = status


class StreamRefused(ConnectionError):
    """The stream was never processed (GOAWAY or REFUSED_STREAM): safe to retry elsewhere."""


class HboneStream(Duplex):
    """One CONNECT tunnel as a Duplex.

    ``response`` is the future of the server's answer on a stream this side opened, and None on a
    stream the peer opened (nobody answers those to us: no future is kept per inbound tunnel)."""

    __slots__ = ("_paused", "_withheld", "conn", "response", "stream_id")

    def __init__(self, conn: HboneConnectionProtocol, stream_id: int, *, opened_here: bool) -> None:
        super().__init__()
        self.conn = conn
        self.stream_id = stream_id
        self._paused = False
        self._withheld = 0
        self.response: asyncio.Future[core.TunnelResponse] | None = (
            asyncio.get_running_loop().create_future() if opened_here else None
        )

    def _answered(self) -> bool:
        return self.response is not None and self.response.done()

    def _fail_response(self, exc: BaseException) -> None:
        if self.response is not None and not self.response.done():
            self.response.set_exception(exc)
            self.response.exception()  # mark retrieved: nobody may be waiting

    # network events from the connection
    def _data(self, ev: core.DataReceived) -> None:
        self._on_network_data(ev.data)
        if self._paused:
            self._withheld += ev.flow_controlled_length
        else:
            self.conn.acknowledge(self.stream_id, ev.flow_controlled_length)

    # Duplex
    def deliver(self, data: bytes) -> None:
        if self.error is not None:
            return
        if not self.conn.send(self.stream_id, data):
            self._on_write_blocked()

    def deliver_eof(self) -> None:
        if self.error is None:
            self.conn.end(self.stream_id)
        self._check_done()

    def pause_source(self) -> None:
        self._paused = True

    def resume_source(self) -> None:
        self._paused = False
        if self._withheld:
            n, self._withheld = self._withheld, 0
            self.conn.acknowledge(self.stream_id, n)

    def abort(self, reason: BaseException | None = None) -> None:
        if self.error is None:
            self.error = reason or StreamAborted("aborted")
            self.conn.reset(self.stream_id)
        self._finish(self.error)

    def _check_done(self) -> None:
        if self.eof_in and self.eof_out:
            self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        if not self.closed:
            self.conn.forget(self.stream_id)
            self._on_network_lost(exc)
        self._fail_response(exc or StreamAborted("stream closed before a response"))


class HboneConnectionProtocol(asyncio.Protocol):
    """Drives one HBONE connection (either side) over a TLS transport."""

    def __init__(
        self,
        *,
        client_side: bool,
        settings: core.HboneSettings | None = None,
        timeouts: Timeouts | None = None,
        expected_peer: PeerId | None = None,
        trust_domain: str | None = None,
        on_request: Callable[[HboneConnectionProtocol, core.TunnelRequested], None] | None = None,
        on_closed: Callable[[HboneConnectionProtocol], None] | None = None,
    ) -> None:
        self.core = core.HboneConnection(client_side=client_side, settings=settings)
        self.timeouts = timeouts or Timeouts()
        self.expected_peer = expected_peer
        self.trust_domain = trust_domain
        self.peer_identity: PeerId | None = None
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, HboneStream] = {}
        self.closed_reason: str | None = None
        self._on_request = on_request
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self._loop.create_future()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._ping_outstanding: bytes | None = None
        self._draining = False
        self._flush_scheduled = False

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        sslobj = transport.get_extra_info("ssl_object")
        try:
            if sslobj is None:
                raise PeerIdentityError("HBONE needs TLS")
            if self.expected_peer is not None:
                self.peer_identity = verify_server_identity(sslobj, self.expected_peer)
            else:
                self.peer_identity = peer_identity(sslobj, trust_domain=self.trust_domain)
        except PeerIdentityError as exc:
            _log.warning("HBONE peer refused: %s", exc)
            self.closed_reason = f"peer identity: {exc}"
            if not self.ready.done():
                self.ready.set_exception(exc)
            self.transport.abort()
            return
        self.core.initiate()
        self._flush()
        if not self.core.client_side:
            self._arm("first_request", self.timeouts.first_request, self._first_request_timeout)
        self._arm("keepalive", self.timeouts.keepalive_interval, self._send_ping)
        self._arm_idle()
        if not self.ready.done():
            self.ready.set_result(None)
        if self._draining:  # the drain began while the handshake was under way
            self.drain()

    def data_received(self, data: bytes) -> None:
        events = self.core.receive(data)
        for ev in events:
            self._handle(ev)
        self._flush_now()
        # Any frame from the peer shows it is alive.
        if self._ping_outstanding is not None:
            self._ping_outstanding = None
            self._arm("keepalive", self.timeouts.keepalive_interval, self._send_ping)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        reason = self.closed_reason or (f"connection lost: {exc}" if exc else "connection closed")
        self.closed_reason = reason
        for stream in list(self.streams.values()):
            stream.error = stream.error or StreamAborted(reason)
            stream._finish(stream.error)
        self.streams.clear()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
            self.ready.exception()
        if not self.closed.done():
            self.closed.set_result(None)
        if self._on_closed is not None:
            self._on_closed(self)

    # ------------------------------------------------------------ events

    def _handle(self, ev: core.Event) -> None:
        if isinstance(ev, core.DataReceived):
            stream = self.streams.get(ev.stream_id)
            if stream is None:
                self.core.acknowledge(ev.stream_id, ev.flow_controlled_length)
            else:
                stream._data(ev)
        elif isinstance(ev, core.StreamEnded):
            if (stream := self.streams.get(ev.stream_id)) is not None:
                stream._on_network_eof()
        elif isinstance(ev, core.StreamWritable):
            if (stream := self.streams.get(ev.stream_id)) is not None:
                stream._on_writable()
        elif isinstance(ev, core.TunnelResponse):
            stream = self.streams.get(ev.stream_id)
            if stream is not None and stream.response is not None and not stream.response.done():
                stream.response.set_result(ev)
        elif isinstance(ev, core.StreamReset):
            self._stream_reset(ev)
        elif isinstance(ev, core.TunnelRequested):
            self._cancel("first_request")
            self._cancel("idle")
            if self._on_request is not None:
                self._on_request(self, ev)
            else:
                self.core.respond(ev.stream_id, 503)
        elif isinstance(ev, core.TunnelRefused):
            _log.info("HBONE request refused with %s: %s", ev.status, ev.reason)
            if self._draining and not self.streams:
                self.close()
        elif isinstance(ev, core.GoAwayReceived):
            self._draining = True
        elif isinstance(ev, core.ConnectionAborted):
            self.closed_reason = ev.reason
            _log.warning("HBONE connection aborted: %s", ev.reason)
            self._flush_now()
            if self.transport is not None:
                self.transport.close()

    def _stream_reset(self, ev: core.StreamReset) -> None:
        stream = self.streams.get(ev.stream_id)
        if stream is None:
            return
        refused = ev.error_code == ErrorCodes.REFUSED_STREAM and not stream._answered()
        exc: BaseException = (
            StreamRefused(f"stream {ev.stream_id} refused")
            if refused
            else StreamAborted(f"reset {ev.error_code}")
        )
        stream.error = stream.error or exc
        stream._fail_response(exc)
        stream._finish(exc)

    # ------------------------------------------------------------ commands used by streams

    def add_stream(self, stream_id: int, *, opened_here: bool) -> HboneStream:
        stream = HboneStream(self, stream_id, opened_here=opened_here)
        self.streams[stream_id] = stream
        self._cancel("idle")
        return stream

    def send(self, stream_id: int, data: bytes) -> bool:
        ok = self.core.send(stream_id, data)
        self._flush()
        return ok

    def end(self, stream_id: int) -> None:
        self.core.end(stream_id)
        self._flush()

    def reset(self, stream_id: int) -> None:
        self.core.reset(stream_id)
        self._flush()

    def acknowledge(self, stream_id: int, n: int) -> None:
        self.core.acknowledge(stream_id, n)
        self._flush()

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        if not self.streams:
            if self._draining or self.core.goaway_received is not None:
                self.close()
            else:
                self._arm_idle()

    def respond(self, stream_id: int, status: int) -> bool:
        answered = self.core.respond(stream_id, status)
        self._flush()
        return answered

    # ------------------------------------------------------------ connection-level

    @property
    def is_usable(self) -> bool:
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and not self._draining
            and self.core.stream_capacity() > 0
        )

    def drain(self) -> None:
        """GOAWAY now (or, mid-handshake, right after our preface); close once the last stream is done."""
        self._draining = True
        if self.transport is None or self.core.aborted is not None:
            return  # connection_made sends the GOAWAY: it may not precede the preface
        self.core.goaway()
        self._flush()
        if not self.streams:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self._flush_now()
            self.transport.close()  # TLS close_notify, then FIN

    def abort(self, reason: str) -> None:
        self.closed_reason = self.closed_reason or reason
        if self.transport is not None:
            self.transport.abort()

    def _flush(self) -> None:
        """Write what the core queued, once per loop iteration: frames that several streams produce in
        one iteration (16 client connections sharing a tunnel, say) leave in one TLS write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        data = self.core.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # ------------------------------------------------------------ timers

    def _arm(self, name: str, delay: float | None, cb: Callable[[], None]) -> None:
        self._cancel(name)
        if delay is not None and self.transport is not None and not self.transport.is_closing():
            self._timers[name] = self._loop.call_later(delay, cb)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _arm_idle(self) -> None:
        if not self.streams:
            self._arm("idle", self.timeouts.idle, self._idle_timeout)

    def _first_request_timeout(self) -> None:
        if self.core.streams_opened == 0:
            self.closed_reason = "no request within the first-request timeout"
            self.core.goaway(ErrorCodes.NO_ERROR, b"first request timeout")
            self._flush_now()
            self.abort(self.closed_reason)

    def _idle_timeout(self) -> None:
        if not self.streams:
            self.closed_reason = "idle"
            self.drain()

    def _send_ping(self) -> None:
        payload = os.urandom(8)
        self._ping_outstanding = payload
        self.core.ping(payload)
        self._flush()
        self._arm("keepalive", self.timeouts.keepalive_timeout, self._ping_timeout)

    def _ping_timeout(self) -> None:
        if self._ping_outstanding is not None:
            _log.warning("HBONE peer did not answer PING within %.1fs", self.timeouts.keepalive_timeout)
            self.abort("keepalive timeout")


# ------------------------------------------------------------------ client


class HboneClientConnection:
    """A client-side HBONE connection: open streams on it."""

    def __init__(self, proto: HboneConnectionProtocol) -> None:
        self.proto = proto

    @property
    def peer_identity(self) -> PeerId | None:
        return self.proto.peer_identity

    @property
    def is_usable(self) -> bool:
        return self.proto.is_usable

    @property
    def open_streams(self) -> int:
        return len(self.proto.streams)

    def capacity(self) -> int:
        return self.proto.core.stream_capacity()

    def reserve(self, authority: str, headers: tuple[tuple[str, str], ...] = ()) -> HboneStream:
        """Send CONNECT now (synchronously claims a stream slot)."""
        sid = self.proto.core.open_tunnel(authority, headers)
        stream = self.proto.add_stream(sid, opened_here=True)
        self.proto._flush()
        return stream

    async def open_stream(self, authority: str, headers: tuple[tuple[str, str], ...] = ()) -> HboneStream:
        """CONNECT and wait for 200; raises TunnelRejected, StreamRefused or StreamAborted."""
        stream = self.reserve(authority, headers)
        return await finish_open(stream)

    def drain(self) -> None:
        self.proto.drain()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.proto.closed)

    def abort(self, reason: str = "aborted") -> None:
        self.proto.abort(reason)


async def finish_open(stream: HboneStream) -> HboneStream:
    """Wait for the answer to a reserved stream's CONNECT; cancelling resets the stream."""
    if stream.response is None:
        raise core.HboneProtocolError(f"stream {stream.stream_id} was opened by the peer: no response comes")
    try:
        response = await stream.response
    except asyncio.CancelledError:
        stream.abort()  # never leave a reserved stream open behind a cancelled caller
        raise
    if response.status != 200:
        stream._finish(None) if stream.eof_in else stream.abort(TunnelRejected(response.status))
        raise TunnelRejected(response.status)
    return stream


async def connect_hbone(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    expected_peer: PeerId,
    *,
    settings: core.HboneSettings | None = None,
    timeouts: Timeouts | None = None,
    local_addr: tuple[str, int] | None = None,
    on_closed: Callable[[HboneConnectionProtocol], None] | None = None,
) -> HboneClientConnection:
    """TCP + TLS + identity check + HTTP/2 preface; the server must present exactly `expected_peer`."""
    t = timeouts or Timeouts()
    loop = asyncio.get_running_loop()

    def factory() -> HboneConnectionProtocol:
        return HboneConnectionProtocol(
            client_side=True, settings=settings, timeouts=t, expected_peer=expected_peer, on_closed=on_closed
        )

    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _type, ip_proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, ip_proto)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        async with asyncio.timeout(t.connect):
            await connect_numeric(sock, (str(address[0]), int(address[1])))
    except BaseException:
        sock.close()
        raise
    _transport, protocol = await open_tls(sock, ssl_context, factory, handshake_timeout=t.handshake)
    proto = cast(HboneConnectionProtocol, protocol)
    await proto.ready
    return HboneClientConnection(proto)


# ------------------------------------------------------------------ server


@dataclass(slots=True)
class InboundTunnel:
    """A well-formed CONNECT waiting for a decision."""

    conn: HboneConnectionProtocol
    request: core.TunnelRequested
    stream: HboneStream
    answered: bool = field(default=False)

    @property
    def peer_identity(self) -> PeerId | None:
        return self.conn.peer_identity

    @property
    def peer_address(self) -> tuple[str, int] | None:
        if self.conn.transport is None:
            return None
        addr = self.conn.transport.get_extra_info("peername")
        return (addr[0], addr[1]) if addr else None

    def reject(self, status: int) -> None:
        if not self.answered:
            self.answered = True
            self.conn.respond(self.request.stream_id, status)
            self.stream._finish(None)

    def accept(self) -> HboneStream:
        """Answer 200 (only once the upstream is connected) and return the stream to relay."""
        if self.answered:
            raise core.HboneProtocolError("tunnel already answered")
        self.answered = True
        self.conn.respond(self.request.stream_id, 200)
        return self.stream


TunnelHandler = Callable[[InboundTunnel], Awaitable[None]]


class HboneServer:
    """Accepts HBONE connections and runs `handler` for each CONNECT; drains gracefully."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        handler: TunnelHandler,
        *,
        trust_domain: str | None = None,
        settings: core.HboneSettings | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.handler = handler
        self.trust_domain = trust_domain
        self.settings = settings
        self.timeouts = timeouts or Timeouts(idle=None)
        self.connections: set[HboneConnectionProtocol] = set()
        self._server: TlsServer | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
    ) -> tuple[str, int]:
        if sock is None:
            sock = socket.create_server(
                (host or "", port),
                family=socket.AF_INET6 if host and ":" in host else socket.AF_INET,
                backlog=4096,
                reuse_port=reuse_port,
            )
        self._server = TlsServer(
            sock, self.ssl_context, self._make_protocol, handshake_timeout=self.timeouts.handshake
        )
        addr = sock.getsockname()
        return addr[0], addr[1]

    def _make_protocol(self) -> HboneConnectionProtocol:
        proto = HboneConnectionProtocol(
            client_side=False,
            settings=self.settings,
            timeouts=self.timeouts,
            trust_domain=self.trust_domain,
            on_request=self._on_request,
            on_closed=self.connections.discard,
        )
        self.connections.add(proto)
        return proto

    def _on_request(self, conn: HboneConnectionProtocol, req: core.TunnelRequested) -> None:
        tunnel = InboundTunnel(conn, req, conn.add_stream(req.stream_id, opened_here=False))
        task = spawn(self._run_handler(tunnel), name=f"hbone-inbound-{req.authority}")
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _run_handler(self, tunnel: InboundTunnel) -> None:
        try:
            await self.handler(tunnel)
        except Exception:
            _log.exception("HBONE handler failed for %s", tunnel.request.authority)
            tunnel.reject(503)
            tunnel.stream.abort()
        else:
            if not tunnel.answered:
                tunnel.reject(503)

    async def drain(self, deadline: float) -> None:
        """Stop accepting, GOAWAY every connection, wait for streams up to `deadline` s, then abort."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.drain()
        waiters = [conn.closed for conn in list(self.connections)]
        if waiters:
            _done, pending = await asyncio.wait(waiters, timeout=deadline)
            if pending:
                for conn in list(self.connections):
                    conn.abort("drain deadline")
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server.abort_handshakes()
            for conn in list(self.connections):
                conn.abort("server closed")
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._handler_tasks)
        for task in tasks:
            task.cancel()
        # Let each handler's cleanup (aborting its upstream) finish before close() returns.
        await asyncio.gather(*tasks, return_exceptions=True)
