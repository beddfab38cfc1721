"""One HBONE connection over asyncio: `HboneConnectionProtocol` drives a sans-IO core on a TLS transport.

* `HboneConnectionProtocol` owns one TLS transport and one `protocol.hbone.HboneConnection`; it checks
  the peer's SPIFFE identity as soon as the handshake is done (the client verifies the *exact*
  expected identity before sending a byte), runs PING keepalive, the first-request (header)
  timeout and the idle timer, and implements graceful drain (GOAWAY, let streams finish, close
  with TLS close_notify; abort at the deadline). Frames the core queued are written once per loop
  iteration.
* `HboneStream` is one tunnel as a `Duplex`: reading withholds flow-control credit while paused.

Either side uses it: `hbone_client` dials and opens streams, `hbone_server` accepts and answers.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from h2.errors import ErrorCodes

from ambit.identity.tls import PeerIdentityError, peer_identity, verify_server_identity
from ambit.model.identity import Identity, NodeIdentity
from ambit.net.duplex import Duplex, StreamAborted
from ambit.protocol import hbone as core

_log = logging.getLogger("ambit.net.hbone")

PeerId = Identity | NodeIdentity
PING_CONFIRM = 0.05  # after the PING timeout, one more turn of the loop to read an answer already there


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits of an HBONE connection (seconds)."""

    handshake: float = 10.0
    first_request: float = 10.0
    # A silent peer (partitioned, its host gone) is found dead within interval + timeout = 5 s, and the
    # connection dropped from the pool (Istio's ztunnel: 20 s). A PING costs 17 bytes each way.
    keepalive_interval: float = 2.0
    keepalive_timeout: float = 2.9  # + PING_CONFIRM: dead within 5 s
    idle: float | None = 300.0
    connect: float = 10.0


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
        # The loop runs due timers before it reads sockets: after a stall of our own as long as the
        # timeout, the answer may be waiting unread. Judge once the next read has had its turn.
        if self._ping_outstanding is not None:
            self._arm("keepalive", PING_CONFIRM, self._ping_timeout_confirmed)

    def _ping_timeout_confirmed(self) -> None:
        if self._ping_outstanding is not None:
            _log.warning("HBONE peer did not answer PING within %.1fs", self.timeouts.keepalive_timeout)
            self.abort("keepalive timeout")
