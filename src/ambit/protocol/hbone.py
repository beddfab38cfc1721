"""HBONE sans-IO core: HTTP/2 CONNECT tunnels over one connection, on top of h2.

One `HboneConnection` per mTLS connection, either side. It takes received bytes and returns
events; commands (open, respond, send, end, reset, ping, goaway) queue bytes that the I/O edge
collects with `data_to_send()`. It owns everything that is protocol and policy-free:

* settings and windows sized for throughput (`HboneSettings`), the connection window opened
  explicitly (h2 only sets the stream window from SETTINGS);
* the DATA fast path (`h2fastpath.H2FastPath`): the received bytes are framed there, DATA and
  WINDOW_UPDATE frames handled there with flow-control accounting in both directions, outgoing DATA
  frames built there; every other frame goes to h2 (HEADERS, SETTINGS, PING, RST_STREAM, GOAWAY,
  ...), whose events this coordinator turns into ours (`hbone_events`). h2 still judges stream
  states and its own windows never move (the invariants are stated in `h2fastpath`);
* CONNECT validation on the server: non-CONNECT or a bad `:authority` is answered `400` here,
  and only well-formed requests surface as `TunnelRequested`;
* per-stream send buffers that respect flow control, with high/low watermarks so the edge can
  pause and resume the byte source (`send` returns False above the high mark, `StreamWritable`
  fires below the low mark);
* the stream-reset budget (HTTP/2 rapid reset): a token bucket of remote resets; an abusive peer
  gets GOAWAY(ENHANCE_YOUR_CALM) and `ConnectionAborted`;
* graceful GOAWAY both ways, with streams at or below the last stream id allowed to finish
  (see `h2tuning.keep_open_through_goaway`).

Time is injected (`clock`) so tests drive the reset budget deterministically.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ambit.protocol import h2tuning
from ambit.protocol.authority import format_authority, parse_authority
from ambit.protocol.forwarded import format_forwarded
from ambit.protocol.h2fastpath import H2_DEFAULT_WINDOW, H2FastPath, SendStream
from ambit.protocol.hbone_events import (
    ConnectionAborted,
    DataReceived,
    Event,
    GoAwayReceived,
    HboneProtocolError,
    PingAcknowledged,
    StreamEnded,
    StreamReset,
    StreamWritable,
    TunnelRefused,
    TunnelRequested,
    TunnelResponse,
)
from ambit.protocol.reset_budget import ResetBudget

__all__ = [
    "ConnectionAborted",
    "DataReceived",
    "Event",
    "GoAwayReceived",
    "HboneConnection",
    "HboneProtocolError",
    "HboneSettings",
    "PingAcknowledged",
    "StreamEnded",
    "StreamReset",
    "StreamWritable",
    "TunnelRefused",
    "TunnelRequested",
    "TunnelResponse",
    "format_authority",
    "parse_authority",
    "request_headers",
]

KiB = 1024
MiB = 1024 * KiB

# Request headers an HBONE client may carry through (Istio's): everything else is dropped.
PASSED_THROUGH_HEADERS = frozenset({"forwarded", "baggage", "traceparent", "tracestate"})


@dataclass(frozen=True, slots=True)
class HboneSettings:
    """Sizes and limits of one HBONE connection. Defaults follow ztunnel where it publishes them."""

    stream_window: int = 4 * MiB
    connection_window: int = 16 * MiB
    max_inbound_frame_size: int = 256 * KiB
    send_frame_size: int = 64 * KiB
    max_concurrent_streams: int = 100
    max_header_list_size: int = 64 * KiB
    send_high_watermark: int = 1 * MiB
    send_low_watermark: int = 256 * KiB
    reset_burst: int = 1000
    reset_refill_per_second: float = 33.0

    @classmethod
    def client(cls) -> HboneSettings:
        return cls(max_header_list_size=16 * KiB)

    @classmethod
    def server(cls) -> HboneSettings:
        return cls(max_concurrent_streams=200)


# ---------------------------------------------------------------- CONNECT request headers


def request_headers(
    source_ip: str | None,
    *,
    source_port: int | None = None,
    host: str | None = None,
    baggage: str | None = None,
    traceparent: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """The headers an HBONE client sends with CONNECT, as ztunnel does.

    `forwarded: for="<ip[:port]>"[;host=<service FQDN>]` names the original client (RFC 7239 quotes
    IPv6 and ports); `baggage` and `traceparent` are carried through unchanged when present.
    """
    headers: list[tuple[str, str]] = []
    if source_ip is not None:
        headers.append(("forwarded", format_forwarded(source_ip, source_port=source_port, host=host)))
    if baggage:
        headers.append(("baggage", baggage))
    if traceparent:
        headers.append(("traceparent", traceparent))
    return tuple(headers)


# ---------------------------------------------------------------- the connection


class HboneConnection:
    """One side of an HBONE connection (sans-IO).

    `receive`, `acknowledge` and `data_to_send` are the fast path's own methods, bound here so that
    the per-frame path has no extra call layer."""

    receive: Callable[[bytes | bytearray], list[Event]]
    acknowledge: Callable[[int, int], None]
    data_to_send: Callable[[], bytes | bytearray]

    def __init__(
        self,
        *,
        client_side: bool,
        settings: HboneSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_side = client_side
        self.settings = settings or (HboneSettings.client() if client_side else HboneSettings.server())
        # Inbound headers are validated (a peer's are untrusted); ours are built here from validated
        # parts, so h2's outbound validation and normalisation would only cost time per stream.
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        h2tuning.keep_open_through_goaway(self._h2)
        s = self.settings
        self._h2.local_settings = h2.settings.Settings(
            client=client_side,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: s.stream_window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: s.max_inbound_frame_size,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: s.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: s.max_header_list_size,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        # h2 applies these only when a *changed* setting is acknowledged, never for initial values.
        self._h2.max_inbound_frame_size = s.max_inbound_frame_size
        self._h2.decoder.max_header_list_size = s.max_header_list_size
        fast = self._fast = H2FastPath(
            self._h2,
            client_side=client_side,
            stream_window=s.stream_window,
            connection_window=s.connection_window,
            max_inbound_frame_size=s.max_inbound_frame_size,
            send_frame_size=s.send_frame_size,
            feed=self._feed_h2,
            fail=self._abort,
            reset=self.reset,
            window_opened=self._flush_after_window,
        )
        self._outbound = fast.outbound  # the fast path's records, shared: send buffers live in them
        self._push = fast.push
        self.receive = fast.receive
        self.acknowledge = fast.acknowledge
        self.data_to_send = fast.data_to_send
        self._resets = ResetBudget(s.reset_burst, s.reset_refill_per_second, clock)
        self.goaway_sent = False
        self.goaway_received: GoAwayReceived | None = None
        self.streams_opened = 0

    @property
    def aborted(self) -> str | None:
        """Why the connection is unusable (protocol error or abuse), or None while it is usable."""
        return self._fast.aborted

    def is_aborted(self) -> bool:
        return self._fast.aborted is not None

    # ------------------------------------------------------------ lifecycle

    def initiate(self) -> None:
        """Queue the preface/SETTINGS and open the connection window."""
        self._h2.initiate_connection()
        extra = self.settings.connection_window - H2_DEFAULT_WINDOW
        if extra > 0:
            self._h2.increment_flow_control_window(extra)

    @property
    def open_streams(self) -> int:
        return len(self._outbound)

    def send_window(self, stream_id: int = 0) -> int:
        """How many bytes we may send now: on the connection (0), or on one stream (both windows)."""
        return self._fast.send_window(stream_id)

    def stream_capacity(self) -> int:
        """How many more streams we may open now (client side)."""
        if self.goaway_sent or self.goaway_received is not None or self._fast.aborted is not None:
            return 0
        limit = min(self.settings.max_concurrent_streams, self._h2.remote_settings.max_concurrent_streams)
        return max(0, limit - self._h2.open_outbound_streams)

    # ------------------------------------------------------------ frames h2 handles

    def _feed_h2(self, data: bytes, out: list[Event]) -> None:
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the right code already.
            self._fast.stop(f"protocol error: {exc}")
            out.append(ConnectionAborted(f"protocol error: {exc}"))
            return
        fast = self._fast
        for ev in h2_events:
            self._dispatch(ev, out)
            if fast.aborted is not None:
                break

    def _dispatch(self, ev: h2.events.Event, out: list[Event]) -> None:
        if isinstance(ev, h2.events.DataReceived):
            # h2 reports END_STREAM as its own StreamEnded event as well; handle it there only.
            if ev.flow_controlled_length:
                out.append(DataReceived(ev.stream_id, ev.data or b"", ev.flow_controlled_length))
        elif isinstance(ev, h2.events.RequestReceived):
            self._on_request(ev, out)
        elif isinstance(ev, h2.events.ResponseReceived):
            self._on_response(ev, out)
        elif isinstance(ev, h2.events.StreamEnded):
            self._remote_ended(ev.stream_id, out)
        elif isinstance(ev, h2.events.StreamReset):
            self._on_reset(ev, out)
        elif isinstance(ev, h2.events.WindowUpdated):
            self._flush_after_window(ev.stream_id, out)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            changed = ev.changed_settings.get(h2.settings.SettingCodes.INITIAL_WINDOW_SIZE)
            if changed is not None and changed.original_value is not None:
                self._fast.shift_send_windows(changed.new_value - changed.original_value)
            self._flush_after_window(0, out)
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self._on_goaway(ev, out)
        elif isinstance(ev, h2.events.PingAckReceived):
            out.append(PingAcknowledged(bytes(ev.ping_data or b"")))
        # Trailers, informational responses, priority and unknown frames mean nothing to a tunnel;
        # an END_STREAM they carry arrives as its own StreamEnded event.

    def _on_request(self, ev: h2.events.RequestReceived, out: list[Event]) -> None:
        sid = ev.stream_id
        headers = _decode(ev.headers or [])
        self._fast.open_send(sid, self._h2.remote_settings.initial_window_size)
        self.streams_opened += 1
        if self.goaway_sent:
            self._refuse(sid, out)
            return
        method = _first(headers, ":method")
        if method != "CONNECT":
            self._reject(sid, 400, f"method {method!r} is not CONNECT", out)
            return
        authority = _first(headers, ":authority") or ""
        try:
            host, port = parse_authority(authority)
        except ValueError as exc:
            self._reject(sid, 400, str(exc), out)
            return
        passed = tuple((k, v) for k, v in headers if k in PASSED_THROUGH_HEADERS)
        if ev.stream_ended is None:
            self._fast.open_receive(sid)
        out.append(TunnelRequested(sid, authority, host, port, passed))

    def _on_response(self, ev: h2.events.ResponseReceived, out: list[Event]) -> None:
        headers = _decode(ev.headers or [])
        status_text = _first(headers, ":status") or "0"
        status = int(status_text) if status_text.isdigit() else 0
        if status == 200 and ev.stream_ended is None and ev.stream_id in self._outbound:
            self._fast.open_receive(ev.stream_id)
        out.append(TunnelResponse(ev.stream_id, status, tuple(h for h in headers if h[0] != ":status")))

    def _on_reset(self, ev: h2.events.StreamReset, out: list[Event]) -> None:
        self._fast.forget(ev.stream_id)
        out.append(StreamReset(ev.stream_id, int(ev.error_code or 0), bool(ev.remote_reset)))
        if ev.remote_reset and not self._resets.spend():
            self._abort(ErrorCodes.ENHANCE_YOUR_CALM, "stream reset budget exhausted (rapid reset)", out)

    def _on_goaway(self, ev: h2.events.ConnectionTerminated, out: list[Event]) -> None:
        last = int(ev.last_stream_id or 0)
        info = GoAwayReceived(int(ev.error_code or 0), last, bytes(ev.additional_data or b""))
        self.goaway_received = info
        out.append(info)
        # Streams we opened above `last` were never processed by the peer.
        for sid in [s for s in self._outbound if s > last and self._is_local(s)]:
            self._fast.forget(sid)
            out.append(StreamReset(sid, int(ErrorCodes.REFUSED_STREAM), remote=True))

    def _remote_ended(self, stream_id: int, out: list[Event]) -> None:
        self._fast.inbound.pop(stream_id, None)
        out.append(StreamEnded(stream_id))
        self._maybe_forget(stream_id)

    # ------------------------------------------------------------ commands

    def open_tunnel(self, authority: str, headers: Iterable[tuple[str, str]] = ()) -> int:
        """Client: send CONNECT for `authority`; returns the stream id."""
        if not self.client_side:
            raise HboneProtocolError("only a client opens tunnels")
        if self.stream_capacity() <= 0:
            raise HboneProtocolError("no stream capacity on this connection")
        parse_authority(authority)
        sid = self._h2.get_next_available_stream_id()
        request = [(":method", "CONNECT"), (":authority", authority)]
        request += [(k, v) for k, v in headers if k in PASSED_THROUGH_HEADERS]
        self._h2.send_headers(sid, request, end_stream=False)
        self._fast.open_send(sid, self._h2.remote_settings.initial_window_size)
        self.streams_opened += 1
        return sid

    def respond(self, stream_id: int, status: int, headers: Iterable[tuple[str, str]] = ()) -> bool:
        """Server: answer a CONNECT. Anything but 200 also ends and forgets the stream.

        Returns False when the peer already reset the stream (nothing is sent)."""
        if self._fast.aborted is not None:
            return False
        response = [(":status", str(status)), *headers]
        done = status != 200
        try:
            self._h2.send_headers(stream_id, response, end_stream=done)
        except h2.exceptions.StreamClosedError:
            self._fast.forget(stream_id)
            return False
        if done:
            self._fast.forget(stream_id)
        return True

    def send(self, stream_id: int, data: bytes) -> bool:
        """Queue tunnel bytes; False means the stream is above its high watermark: pause the source."""
        if self._fast.aborted is not None:
            return True  # the connection is dead; the edge learns it from the transport
        ob = self._outbound.get(stream_id)
        if ob is None or ob.end_pending or ob.ended:
            raise HboneProtocolError(f"stream {stream_id} is not writable")
        if ob.buffer:
            ob.buffer += data
        else:
            sent = self._push(stream_id, memoryview(data), ob)
            if sent < len(data):
                ob.buffer += memoryview(data)[sent:]
        if len(ob.buffer) > self.settings.send_high_watermark:
            ob.blocked = True
            return False
        return True

    def pending(self, stream_id: int) -> int:
        ob = self._outbound.get(stream_id)
        return len(ob.buffer) if ob else 0

    def end(self, stream_id: int) -> None:
        """Half-close our direction once the buffered bytes are out."""
        if self._fast.aborted is not None:
            return
        ob = self._outbound.get(stream_id)
        if ob is None or ob.ended:
            return
        ob.end_pending = True
        self._flush_stream(stream_id, ob, [])

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        if self._fast.aborted is not None:
            return
        self._fast.inbound.pop(stream_id, None)
        if self._outbound.pop(stream_id, None) is None and not self._stream_known(stream_id):
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, error_code)

    def ping(self, payload: bytes) -> None:
        if self._fast.aborted is not None:
            return
        self._h2.ping(payload)

    def goaway(
        self, error_code: int = ErrorCodes.NO_ERROR, debug: bytes = b"", *, last_stream_id: int | None = None
    ) -> None:
        """Graceful GOAWAY: no new streams; those up to `last_stream_id` (default: all) may finish."""
        if self.goaway_sent:
            return
        self._h2.close_connection(
            error_code=error_code, additional_data=debug or None, last_stream_id=last_stream_id
        )
        self.goaway_sent = True

    # ------------------------------------------------------------ internals

    def _flush_stream(self, stream_id: int, ob: SendStream, out: list[Event]) -> None:
        if ob.buffer:
            sent = self._push(stream_id, memoryview(ob.buffer), ob)
            del ob.buffer[:sent]
        if ob.end_pending and not ob.buffer and not ob.ended:
            self._h2.end_stream(stream_id)
            ob.ended = True
            self._maybe_forget(stream_id)
        if ob.blocked and len(ob.buffer) <= self.settings.send_low_watermark:
            ob.blocked = False
            out.append(StreamWritable(stream_id))

    def _flush_after_window(self, stream_id: int, out: list[Event]) -> None:
        targets = list(self._outbound.items()) if stream_id == 0 else []
        if stream_id and stream_id in self._outbound:
            targets = [(stream_id, self._outbound[stream_id])]
        for sid, ob in targets:
            if ob.buffer or ob.end_pending:
                try:
                    self._flush_stream(sid, ob, out)
                except h2.exceptions.StreamClosedError:
                    self._outbound.pop(sid, None)

    def _maybe_forget(self, stream_id: int) -> None:
        stream = self._h2.streams.get(stream_id)
        if stream is None or stream.closed:
            self._fast.forget(stream_id)

    def _stream_known(self, stream_id: int) -> bool:
        return stream_id in self._h2.streams

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self.client_side

    def _reject(self, stream_id: int, status: int, reason: str, out: list[Event]) -> None:
        self.respond(stream_id, status)
        out.append(TunnelRefused(stream_id, status, reason))

    def _refuse(self, stream_id: int, out: list[Event]) -> None:
        self._fast.forget(stream_id)
        self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        out.append(TunnelRefused(stream_id, 0, "connection is draining"))

    def _abort(self, code: ErrorCodes, reason: str, out: list[Event]) -> None:
        if not self.goaway_sent:
            self._h2.close_connection(error_code=code, additional_data=reason.encode())
            self.goaway_sent = True
        self._fast.stop(reason)
        out.append(ConnectionAborted(reason))


def _decode(headers: Iterable[tuple[bytes | str, bytes | str]]) -> list[tuple[str, str]]:
    decoded = []
    for k, v in headers:
        key = k.decode("latin-1") if isinstance(k, bytes) else k
        value = v.decode("latin-1") if isinstance(v, bytes) else v
        decoded.append((key, value))
    return decoded


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None
