"""HBONE sans-IO core: HTTP/2 CONNECT tunnels over one connection, on top of h2.

One `HboneConnection` per mTLS connection, either side. It takes received bytes and returns
events; commands (open, respond, send, end, reset, ping, goaway) queue bytes that the I/O edge
collects with `data_to_send()`. It owns everything that is protocol and policy-free:

* settings and windows sized for throughput (`HboneSettings`), the connection window opened
  explicitly (h2 only sets the stream window from SETTINGS);
* the DATA fast path: the core frames the received bytes itself, handles DATA and WINDOW_UPDATE
  frames directly (9-byte headers, see `h2frames`) with its own flow-control accounting in both
  directions, builds outgoing DATA frames itself, and gives every other frame to h2 (HEADERS,
  SETTINGS, PING, RST_STREAM, GOAWAY, ...). h2 still judges stream states: a DATA frame for a stream
  that is not an open tunnel reaches h2 as an empty copy, and END_STREAM as an empty DATA frame, so
  h2's own windows never move and its state machine still sees every transition;
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
import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ambit.protocol import h2frames, h2tuning
from ambit.protocol.forwarded import format_forwarded
from ambit.protocol.h2frames import END_STREAM, FRAME_HEADER_SIZE, PADDED

KiB = 1024
MiB = 1024 * KiB
_H2_DEFAULT_WINDOW = 65_535

Headers = tuple[tuple[str, str], ...]

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


# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class TunnelRequested:
    """Server: a well-formed CONNECT arrived; answer with `respond`."""

    stream_id: int
    authority: str
    host: str
    port: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class TunnelRefused:
    """Server: a malformed request was answered here (status already queued)."""

    stream_id: int
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class TunnelResponse:
    """Client: the server's answer to our CONNECT."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Tunnel bytes. Call `acknowledge(stream_id, flow_controlled_length)` once they are consumed."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed its direction of the tunnel (END_STREAM ↔ FIN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    error_code: int
    remote: bool


@dataclass(frozen=True, slots=True)
class StreamWritable:
    """A stream's send buffer fell below the low watermark after `send` had returned False."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no stream above `last_stream_id`; streams at or below it may finish."""

    error_code: int
    last_stream_id: int
    debug: bytes


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConnectionAborted:
    """The connection is unusable (protocol error or abuse); queued bytes should still be flushed."""

    reason: str


Event = (
    TunnelRequested
    | TunnelRefused
    | TunnelResponse
    | DataReceived
    | StreamEnded
    | StreamReset
    | StreamWritable
    | GoAwayReceived
    | PingAcknowledged
    | ConnectionAborted
)


class HboneProtocolError(Exception):
    """A command that the connection's state does not allow (a programming error at the edge)."""


# ---------------------------------------------------------------- authority


def parse_authority(authority: str) -> tuple[str, int]:
    """`ip:port` or `[v6]:port` → (ip, port); ValueError with a reason otherwise."""
    if authority.startswith("["):
        host, sep, rest = authority[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"bad IPv6 authority {authority!r}")
        port_text = rest[1:]
        addr: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv6Address(host)
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            raise ValueError(f"authority {authority!r} has no port")
        addr = ipaddress.IPv4Address(host)
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port in authority {authority!r}")
    return str(addr), int(port_text)


def format_authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


# ---------------------------------------------------------------- reset budget


@dataclass(slots=True)
class ResetBudget:
    """Token bucket over remote stream resets (nghttp2's rapid-reset defence, same defaults)."""

    burst: int
    refill_per_second: float
    clock: Callable[[], float]
    tokens: float = field(init=False)
    stamp: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = float(self.burst)
        self.stamp = self.clock()

    def spend(self) -> bool:
        """Take one token; False when the peer has exhausted its allowance."""
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.refill_per_second)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


# ---------------------------------------------------------------- the connection


@dataclass(slots=True)
class _Outbound:
    """What we still have to send on one stream, and how much the peer lets us send."""

    window: int
    buffer: bytearray = field(default_factory=bytearray)
    end_pending: bool = False
    ended: bool = False
    blocked: bool = False


@dataclass(slots=True)
class _Inbound:
    """A tunnel the peer may still send DATA on: its window as the peer sees it, and unreturned credit."""

    window: int
    unacked: int = 0


class HboneConnection:
    """One side of an HBONE connection (sans-IO)."""

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
        self._outbound: dict[int, _Outbound] = {}
        self._inbound: dict[int, _Inbound] = {}
        self._out = bytearray()  # frames built here, after whatever h2 queued before them
        self._partial = bytearray()  # the start of a frame that has not fully arrived
        self._data_left = 0  # payload bytes still to come of the DATA frame being streamed
        self._data_stream = 0
        self._data_flags = 0
        self._data_delivered = False
        self._preface_left = 0 if client_side else h2frames.PREFACE_SIZE
        self._rx_conn_window = s.connection_window  # what the peer may still send on the connection
        self._rx_conn_unacked = 0
        self._tx_conn_window = _H2_DEFAULT_WINDOW  # what we may still send; WINDOW_UPDATE(0) raises it
        self._stream_credit_threshold = max(1, s.stream_window // 2)
        self._conn_credit_threshold = max(1, s.connection_window // 2)
        self._resets = ResetBudget(s.reset_burst, s.reset_refill_per_second, clock)
        self.goaway_sent = False
        self.goaway_received: GoAwayReceived | None = None
        self.aborted: str | None = None
        self.streams_opened = 0

    # ------------------------------------------------------------ lifecycle

    def initiate(self) -> None:
        """Queue the preface/SETTINGS and open the connection window."""
        self._h2.initiate_connection()
        extra = self.settings.connection_window - _H2_DEFAULT_WINDOW
        if extra > 0:
            self._h2.increment_flow_control_window(extra)

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call, in order (hand it to the transport unchanged)."""
        pending = self._h2.data_to_send()
        if not self._out:
            return pending
        if pending:
            self._out += pending
        out, self._out = self._out, bytearray()
        return out

    @property
    def open_streams(self) -> int:
        return len(self._outbound)

    def send_window(self, stream_id: int = 0) -> int:
        """How many bytes we may send now: on the connection (0), or on one stream (both windows)."""
        if not stream_id:
            return self._tx_conn_window
        ob = self._outbound.get(stream_id)
        return min(ob.window, self._tx_conn_window) if ob is not None else 0

    def stream_capacity(self) -> int:
        """How many more streams we may open now (client side)."""
        if self.goaway_sent or self.goaway_received is not None or self.aborted is not None:
            return 0
        limit = min(self.settings.max_concurrent_streams, self._h2.remote_settings.max_concurrent_streams)
        return max(0, limit - self._h2.open_outbound_streams)

    # ------------------------------------------------------------ receive

    def receive(self, data: bytes | bytearray) -> list[Event]:
        """Feed received bytes; returns what happened."""
        out: list[Event] = []
        if self.aborted is not None or not data:
            return out
        view = memoryview(data)
        end = len(view)
        pos = 0
        if self._data_left:
            pos = self._continue_data(view, 0, out)
        elif self._partial:
            pos = self._complete_partial(view, out)
        if pos < 0 or self.is_aborted():
            return out
        slow_start = pos
        if self._preface_left:
            take = min(self._preface_left, end - pos)
            self._preface_left -= take
            pos += take
        max_frame = self.settings.max_inbound_frame_size
        while end - pos >= FRAME_HEADER_SIZE:
            length, ftype, flags, sid = h2frames.parse_header(view, pos)
            if length > max_frame:
                self._feed_h2(bytes(view[slow_start:pos]), out)
                self._oversized(length, out)
                return out
            stop = pos + FRAME_HEADER_SIZE + length
            is_data = ftype == h2frames.DATA
            fast = is_data or (ftype == h2frames.WINDOW_UPDATE and length == 4)
            if not fast or (stop > end and (not is_data or flags & PADDED)):
                if stop > end:
                    break  # h2's frame (or a padded DATA frame) not complete yet: kept in `_partial`
                pos = stop
                continue
            if slow_start < pos:
                self._feed_h2(bytes(view[slow_start:pos]), out)
                if self.is_aborted():
                    return out
            if not is_data:
                self._on_window_update(sid, view, pos, out)
            elif stop <= end:
                self._on_data(sid, flags, view, pos + FRAME_HEADER_SIZE, length, out=out)
            else:
                # The payload is still arriving: deliver what is here now, the rest as it comes.
                self._start_data(sid, flags, length, out)
                stop = self._continue_data(view, pos + FRAME_HEADER_SIZE, out)
            if self.is_aborted():
                return out
            slow_start = pos = stop
        if slow_start < pos:
            self._feed_h2(bytes(view[slow_start:pos]), out)
        if pos < end and not self.is_aborted():
            self._partial = bytearray(view[pos:])
        return out

    def _complete_partial(self, view: memoryview, out: list[Event]) -> int:
        """Continue the frame begun in an earlier read; returns where the rest of `view` starts (-1: all
        of it was used)."""
        partial = self._partial
        take = 0
        if len(partial) < FRAME_HEADER_SIZE:
            take = min(FRAME_HEADER_SIZE - len(partial), len(view))
            partial += view[:take]
            if len(partial) < FRAME_HEADER_SIZE:
                return -1
        length, ftype, flags, sid = h2frames.parse_header(partial)
        if length > self.settings.max_inbound_frame_size:
            self._partial = bytearray()
            self._oversized(length, out)
            return -1
        if ftype == h2frames.DATA and not flags & PADDED and len(partial) == FRAME_HEADER_SIZE:
            self._partial = bytearray()
            self._start_data(sid, flags, length, out)
            return self._continue_data(view, take, out) if self._data_left else take
        need = FRAME_HEADER_SIZE + length - len(partial)
        more = min(need, len(view) - take)
        partial += view[take : take + more]
        take += more
        if more < need:
            return -1
        self._partial = bytearray()
        frame = memoryview(partial)
        if ftype == h2frames.DATA:
            self._on_data(sid, flags, frame, FRAME_HEADER_SIZE, length, out=out)
        elif ftype == h2frames.WINDOW_UPDATE and length == 4:
            self._on_window_update(sid, frame, 0, out)
        else:
            self._feed_h2(frame.tobytes(), out)
        return take

    def _oversized(self, length: int, out: list[Event]) -> None:
        if not self.is_aborted():
            limit = self.settings.max_inbound_frame_size
            self._abort(ErrorCodes.FRAME_SIZE_ERROR, f"frame of {length} bytes above the {limit} limit", out)

    def _feed_h2(self, data: bytes, out: list[Event]) -> None:
        try:
            h2_events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the right code already.
            self.aborted = f"protocol error: {exc}"
            self._outbound.clear()
            self._inbound.clear()
            out.append(ConnectionAborted(self.aborted))
            return
        for ev in h2_events:
            self._dispatch(ev, out)
            if self.aborted is not None:
                break

    def _admit_data(self, stream_id: int, flags: int, length: int, out: list[Event]) -> bool:
        """Flow control for a DATA frame of `length` bytes; False: its payload is not delivered."""
        rx = self._inbound.get(stream_id)
        if rx is None:
            # Not a tunnel we receive on: h2 judges the stream state (closed → RST_STREAM, idle or
            # stream 0 → GOAWAY) from an empty copy; the bytes are dropped, their credit returned.
            self._feed_h2(h2frames.data_header(stream_id, 0, flags & END_STREAM), out)
            if length and self.aborted is None:
                self._return_connection_credit(length)
            return False
        if length > self._rx_conn_window or length > rx.window:
            self._abort(
                ErrorCodes.FLOW_CONTROL_ERROR, f"DATA beyond the flow-control window on {stream_id}", out
            )
            return False
        self._rx_conn_window -= length
        rx.window -= length
        return True

    def _finish_data(self, stream_id: int, flags: int, out: list[Event]) -> None:
        """The admitted DATA frame is complete: an END_STREAM on it closes our receiving side."""
        if flags & END_STREAM:
            self._inbound.pop(stream_id, None)
            self._feed_h2(h2frames.data_header(stream_id, 0, END_STREAM), out)

    def _on_data(
        self, stream_id: int, flags: int, frame: memoryview, offset: int, length: int, *, out: list[Event]
    ) -> None:
        """A complete DATA frame (payload at `frame[offset:offset+length]`), handled without h2."""
        if not self._admit_data(stream_id, flags, length, out):
            return
        body_start, body_end = offset, offset + length
        if flags & PADDED:
            pad = frame[offset] if length else 0
            if not length or pad >= length:
                self._abort(ErrorCodes.PROTOCOL_ERROR, f"bad DATA padding on stream {stream_id}", out)
                return
            body_start, body_end = offset + 1, offset + length - pad
        if body_end > body_start:
            out.append(DataReceived(stream_id, frame[body_start:body_end].tobytes(), length))
        elif length:
            self.acknowledge(stream_id, length)  # padding only: nothing for the edge to consume
        self._finish_data(stream_id, flags, out)

    def _start_data(self, stream_id: int, flags: int, length: int, out: list[Event]) -> None:
        """An unpadded DATA frame whose payload arrives over several reads (`_continue_data`)."""
        self._data_stream, self._data_flags, self._data_left = stream_id, flags, length
        self._data_delivered = self._admit_data(stream_id, flags, length, out)

    def _continue_data(self, view: memoryview, pos: int, out: list[Event]) -> int:
        """Deliver the part of the current DATA frame's payload that starts at `view[pos]`; returns the
        position after it."""
        take = min(self._data_left, len(view) - pos)
        sid = self._data_stream
        if take and self._data_delivered:
            if sid in self._inbound:
                out.append(DataReceived(sid, view[pos : pos + take].tobytes(), take))
            else:  # reset while its payload was arriving: drop the rest, return the credit
                self._return_connection_credit(take)
        self._data_left -= take
        if not self._data_left and self._data_delivered:
            self._data_delivered = False
            self._finish_data(sid, self._data_flags, out)
        return pos + take

    def _on_window_update(self, stream_id: int, frame: memoryview, offset: int, out: list[Event]) -> None:
        increment = h2frames.window_increment(frame, offset + FRAME_HEADER_SIZE)
        ob = self._outbound.get(stream_id) if stream_id else None
        if increment == 0 or (stream_id and ob is None):
            # Zero increments are errors, and streams we no longer send on are h2's to judge.
            self._feed_h2(frame[offset : offset + FRAME_HEADER_SIZE + 4].tobytes(), out)
            return
        if ob is None:
            self._tx_conn_window += increment
            if self._tx_conn_window > h2frames.MAX_WINDOW:
                self._abort(ErrorCodes.FLOW_CONTROL_ERROR, "connection window above 2^31-1", out)
                return
        else:
            ob.window += increment
            if ob.window > h2frames.MAX_WINDOW:
                self.reset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR)
                out.append(StreamReset(stream_id, int(ErrorCodes.FLOW_CONTROL_ERROR), remote=False))
                return
        self._flush_after_window(stream_id, out)

    def is_aborted(self) -> bool:
        return self.aborted is not None

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
                delta = changed.new_value - changed.original_value
                for ob in self._outbound.values():
                    ob.window += delta
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
        self._outbound[sid] = _Outbound(self._h2.remote_settings.initial_window_size)
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
            self._inbound[sid] = _Inbound(self.settings.stream_window)
        out.append(TunnelRequested(sid, authority, host, port, passed))

    def _on_response(self, ev: h2.events.ResponseReceived, out: list[Event]) -> None:
        headers = _decode(ev.headers or [])
        status_text = _first(headers, ":status") or "0"
        status = int(status_text) if status_text.isdigit() else 0
        if status == 200 and ev.stream_ended is None and ev.stream_id in self._outbound:
            self._inbound[ev.stream_id] = _Inbound(self.settings.stream_window)
        out.append(TunnelResponse(ev.stream_id, status, tuple(h for h in headers if h[0] != ":status")))

    def _on_reset(self, ev: h2.events.StreamReset, out: list[Event]) -> None:
        self._outbound.pop(ev.stream_id, None)
        self._inbound.pop(ev.stream_id, None)
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
            self._outbound.pop(sid, None)
            self._inbound.pop(sid, None)
            out.append(StreamReset(sid, int(ErrorCodes.REFUSED_STREAM), remote=True))

    def _remote_ended(self, stream_id: int, out: list[Event]) -> None:
        self._inbound.pop(stream_id, None)
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
        self._outbound[sid] = _Outbound(self._h2.remote_settings.initial_window_size)
        self.streams_opened += 1
        return sid

    def respond(self, stream_id: int, status: int, headers: Iterable[tuple[str, str]] = ()) -> bool:
        """Server: answer a CONNECT. Anything but 200 also ends and forgets the stream.

        Returns False when the peer already reset the stream (nothing is sent)."""
        if self.aborted is not None:
            return False
        response = [(":status", str(status)), *headers]
        done = status != 200
        try:
            self._h2.send_headers(stream_id, response, end_stream=done)
        except h2.exceptions.StreamClosedError:
            self._outbound.pop(stream_id, None)
            self._inbound.pop(stream_id, None)
            return False
        if done:
            self._outbound.pop(stream_id, None)
            self._inbound.pop(stream_id, None)
        return True

    def send(self, stream_id: int, data: bytes) -> bool:
        """Queue tunnel bytes; False means the stream is above its high watermark: pause the source."""
        if self.aborted is not None:
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
        if self.aborted is not None:
            return
        ob = self._outbound.get(stream_id)
        if ob is None or ob.ended:
            return
        ob.end_pending = True
        self._flush_stream(stream_id, ob, [])

    def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        if self.aborted is not None:
            return
        self._inbound.pop(stream_id, None)
        if self._outbound.pop(stream_id, None) is None and not self._stream_known(stream_id):
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, error_code)

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Return flow-control credit for `length` consumed bytes.

        WINDOW_UPDATEs are batched: one goes out once half a window has been consumed (as h2 and
        nghttp2 do), so small request/response traffic never sends any."""
        if length <= 0 or self.aborted is not None:
            return
        self._return_connection_credit(length)
        rx = self._inbound.get(stream_id)
        if rx is not None:
            rx.unacked += length
            if rx.unacked >= self._stream_credit_threshold:
                self._emit(h2frames.window_update(stream_id, rx.unacked))
                rx.window += rx.unacked
                rx.unacked = 0

    def _return_connection_credit(self, length: int) -> None:
        self._rx_conn_unacked += length
        if self._rx_conn_unacked >= self._conn_credit_threshold:
            self._emit(h2frames.window_update(0, self._rx_conn_unacked))
            self._rx_conn_window += self._rx_conn_unacked
            self._rx_conn_unacked = 0

    def _emit(self, frame: bytes | memoryview, header: bytes | None = None) -> None:
        """Queue a frame we built, after everything h2 queued before it."""
        pending = self._h2.data_to_send()
        out = self._out
        if pending:
            out += pending
        if header is not None:
            out += header
        out += frame

    def ping(self, payload: bytes) -> None:
        if self.aborted is not None:
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

    def _push(self, stream_id: int, data: memoryview, ob: _Outbound) -> int:
        """Frame as much of `data` as the windows allow; returns the byte count sent."""
        sent = 0
        total = len(data)
        frame = min(self.settings.send_frame_size, self._h2.max_outbound_frame_size)
        while sent < total:
            n = min(ob.window, self._tx_conn_window, frame, total - sent)
            if n <= 0:
                break
            self._emit(data[sent : sent + n], h2frames.data_header(stream_id, n))
            ob.window -= n
            self._tx_conn_window -= n
            sent += n
        return sent

    def _flush_stream(self, stream_id: int, ob: _Outbound, out: list[Event]) -> None:
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
            self._outbound.pop(stream_id, None)
            self._inbound.pop(stream_id, None)

    def _stream_known(self, stream_id: int) -> bool:
        return stream_id in self._h2.streams

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id % 2 == 1) == self.client_side

    def _reject(self, stream_id: int, status: int, reason: str, out: list[Event]) -> None:
        self.respond(stream_id, status)
        out.append(TunnelRefused(stream_id, status, reason))

    def _refuse(self, stream_id: int, out: list[Event]) -> None:
        self._outbound.pop(stream_id, None)
        self._inbound.pop(stream_id, None)
        self._h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
        out.append(TunnelRefused(stream_id, 0, "connection is draining"))

    def _abort(self, code: ErrorCodes, reason: str, out: list[Event]) -> None:
        if not self.goaway_sent:
            self._h2.close_connection(error_code=code, additional_data=reason.encode())
            self.goaway_sent = True
        self.aborted = reason
        self._outbound.clear()
        self._inbound.clear()
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
