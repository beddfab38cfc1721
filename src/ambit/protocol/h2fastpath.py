"""The HBONE DATA fast path: a framer over received bytes, and both flow-control ledgers.

`H2FastPath` sits beside one h2 connection and owns what is per-byte on an HBONE tunnel:

* the **receive framer**: it cuts received bytes into frames itself (9-byte headers, `h2frames`),
  across any read boundaries, with no copy of a DATA payload that arrived whole; a DATA payload that
  arrives over several reads is delivered as it arrives. DATA and 4-byte WINDOW_UPDATE frames are
  handled here; every other frame goes to h2 (`feed`) unchanged and in order;
* the **receive ledger**: per stream and for the connection, what the peer may still send, and the
  consumed bytes not yet credited back. Credit goes out in one WINDOW_UPDATE once half a window has
  been consumed (as h2 and nghttp2 do);
* the **send ledger**: per stream and for the connection, what the peer lets us send (raised by
  WINDOW_UPDATE, moved by a SETTINGS initial-window change), and the DATA framer (`push`).

Invariants (tested on their own in `tests/unit/protocol/test_h2fastpath.py`):

1. The same bytes chopped at any read boundaries give the same frames: the same payload bytes per
   stream, in the same order relative to the frames given to h2, and the same bytes given to h2.
2. Bytes credited never exceed bytes received: for the connection and every stream,
   ``window + unacked + consumed-but-not-acknowledged == the window we announced``; a WINDOW_UPDATE
   never returns more than was acknowledged, and DATA beyond a window is a FLOW_CONTROL_ERROR, never
   delivered.
3. Sent DATA never exceeds the peer's windows: on each stream, the initial window plus its
   increments plus SETTINGS deltas; on the connection, 65,535 plus its increments.
4. h2's own windows never move: h2 sees DATA only as an empty copy (to judge a stream's state, or
   an END_STREAM), and never a WINDOW_UPDATE that the fast path applied.

What it does not judge it hands back to its owner (`protocol.hbone.HboneConnection`) through four
callables: `feed` (bytes for h2), `fail` (a connection error), `reset` (a stream error) and
`window_opened` (send windows grew: flush what is buffered). It knows nothing of CONNECT, send
buffers or GOAWAY. Methods keep attribute lookups local and add no call layer per frame: this is
the hot path of every tunnel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from h2.errors import ErrorCodes

from ambit.protocol import h2frames
from ambit.protocol.h2frames import END_STREAM, FRAME_HEADER_SIZE, PADDED
from ambit.protocol.hbone_events import DataReceived, Event, StreamReset

H2_DEFAULT_WINDOW = 65_535


class H2Side(Protocol):
    """What the fast path reads from the h2 connection beside it."""

    @property
    def max_outbound_frame_size(self) -> int: ...

    def data_to_send(self, amount: int | None = None) -> bytes: ...


@dataclass(slots=True)
class SendStream:
    """What we still have to send on one stream, and how much the peer lets us send.

    `window` is the send ledger's; the buffer and its flags are the owner's (one record, one lookup)."""

    window: int
    buffer: bytearray = field(default_factory=bytearray)
    end_pending: bool = False
    ended: bool = False
    blocked: bool = False


@dataclass(slots=True)
class ReceiveStream:
    """A tunnel the peer may still send DATA on: its window as the peer sees it, and unreturned credit."""

    window: int
    unacked: int = 0


class H2FastPath:
    """Receive framer, receive and send ledgers, and DATA framer of one HTTP/2 connection."""

    __slots__ = (
        "_conn_credit_threshold",
        "_data_delivered",
        "_data_flags",
        "_data_left",
        "_data_stream",
        "_fail",
        "_feed",
        "_h2",
        "_partial",
        "_preface_left",
        "_reset",
        "_stream_credit_threshold",
        "_window_opened",
        "aborted",
        "inbound",
        "max_inbound_frame_size",
        "out",
        "outbound",
        "rx_conn_unacked",
        "rx_conn_window",
        "send_frame_size",
        "stream_window",
        "tx_conn_window",
    )

    def __init__(
        self,
        h2_side: H2Side,
        *,
        client_side: bool,
        stream_window: int,
        connection_window: int,
        max_inbound_frame_size: int,
        send_frame_size: int,
        feed: Callable[[bytes, list[Event]], None],
        fail: Callable[[ErrorCodes, str, list[Event]], None],
        reset: Callable[[int, int], None],
        window_opened: Callable[[int, list[Event]], None],
    ) -> None:
        self._h2 = h2_side
        self._feed = feed
        self._fail = fail
        self._reset = reset
        self._window_opened = window_opened
        self.stream_window = stream_window
        self.max_inbound_frame_size = max_inbound_frame_size
        self.send_frame_size = send_frame_size
        self.aborted: str | None = None  # set by the owner (`stop`): nothing more is framed
        self.outbound: dict[int, SendStream] = {}
        self.inbound: dict[int, ReceiveStream] = {}
        self.out = bytearray()  # frames built here, after whatever h2 queued before them
        self._partial = bytearray()  # the start of a frame that has not fully arrived
        self._data_left = 0  # payload bytes still to come of the DATA frame being streamed
        self._data_stream = 0
        self._data_flags = 0
        self._data_delivered = False
        self._preface_left = 0 if client_side else h2frames.PREFACE_SIZE
        self.rx_conn_window = connection_window  # what the peer may still send on the connection
        self.rx_conn_unacked = 0
        self.tx_conn_window = H2_DEFAULT_WINDOW  # what we may still send; WINDOW_UPDATE(0) raises it
        self._stream_credit_threshold = max(1, stream_window // 2)
        self._conn_credit_threshold = max(1, connection_window // 2)

    # ------------------------------------------------------------ streams

    def open_send(self, stream_id: int, window: int) -> SendStream:
        """Start the send ledger of a stream at the peer's initial window."""
        ob = self.outbound[stream_id] = SendStream(window)
        return ob

    def open_receive(self, stream_id: int) -> None:
        """Accept DATA on a stream, up to our stream window."""
        self.inbound[stream_id] = ReceiveStream(self.stream_window)

    def forget(self, stream_id: int) -> None:
        self.outbound.pop(stream_id, None)
        self.inbound.pop(stream_id, None)

    def is_aborted(self) -> bool:
        return self.aborted is not None

    def stop(self, reason: str) -> None:
        """The connection is dead: forget every stream and frame nothing more."""
        self.aborted = reason
        self.outbound.clear()
        self.inbound.clear()

    def send_window(self, stream_id: int = 0) -> int:
        """How many bytes we may send now: on the connection (0), or on one stream (both windows)."""
        if not stream_id:
            return self.tx_conn_window
        ob = self.outbound.get(stream_id)
        return min(ob.window, self.tx_conn_window) if ob is not None else 0

    def shift_send_windows(self, delta: int) -> None:
        """The peer changed SETTINGS_INITIAL_WINDOW_SIZE: every open stream's window moves by the delta."""
        for ob in self.outbound.values():
            ob.window += delta

    # ------------------------------------------------------------ send

    def data_to_send(self) -> bytes | bytearray:
        """Everything queued since the last call, h2's and ours, in order."""
        pending = self._h2.data_to_send()
        if not self.out:
            return pending
        if pending:
            self.out += pending
        out, self.out = self.out, bytearray()
        return out

    def push(self, stream_id: int, data: memoryview, ob: SendStream) -> int:
        """Frame as much of `data` as the windows allow; returns the byte count sent."""
        sent = 0
        total = len(data)
        frame = min(self.send_frame_size, self._h2.max_outbound_frame_size)
        while sent < total:
            n = min(ob.window, self.tx_conn_window, frame, total - sent)
            if n <= 0:
                break
            self._emit(data[sent : sent + n], h2frames.data_header(stream_id, n))
            ob.window -= n
            self.tx_conn_window -= n
            sent += n
        return sent

    def acknowledge(self, stream_id: int, length: int) -> None:
        """Return flow-control credit for `length` consumed bytes.

        WINDOW_UPDATEs are batched: one goes out once half a window has been consumed (as h2 and
        nghttp2 do), so small request/response traffic never sends any."""
        if length <= 0 or self.aborted is not None:
            return
        self._return_connection_credit(length)
        rx = self.inbound.get(stream_id)
        if rx is not None:
            rx.unacked += length
            if rx.unacked >= self._stream_credit_threshold:
                self._emit(h2frames.window_update(stream_id, rx.unacked))
                rx.window += rx.unacked
                rx.unacked = 0

    def _return_connection_credit(self, length: int) -> None:
        self.rx_conn_unacked += length
        if self.rx_conn_unacked >= self._conn_credit_threshold:
            self._emit(h2frames.window_update(0, self.rx_conn_unacked))
            self.rx_conn_window += self.rx_conn_unacked
            self.rx_conn_unacked = 0

    def _emit(self, frame: bytes | memoryview, header: bytes | None = None) -> None:
        """Queue a frame we built, after everything h2 queued before it."""
        pending = self._h2.data_to_send()
        out = self.out
        if pending:
            out += pending
        if header is not None:
            out += header
        out += frame

    # ------------------------------------------------------------ receive

    def receive(self, data: bytes | bytearray) -> list[Event]:
        """Feed received bytes; returns what happened (h2's events come through `feed`'s list)."""
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
        max_frame = self.max_inbound_frame_size
        while end - pos >= FRAME_HEADER_SIZE:
            length, ftype, flags, sid = h2frames.parse_header(view, pos)
            if length > max_frame:
                self._feed(bytes(view[slow_start:pos]), out)
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
                self._feed(bytes(view[slow_start:pos]), out)
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
            self._feed(bytes(view[slow_start:pos]), out)
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
        if length > self.max_inbound_frame_size:
            self._partial = bytearray()
            self._oversized(length, out)
            return -1
        if ftype == h2frames.DATA and not flags & PADDED and len(partial) == FRAME_HEADER_SIZE:
            self._partial = bytearray()
            self._start_data(sid, flags, length, out)
            # Even an empty payload: its END_STREAM is finished there.
            return self._continue_data(view, take, out)
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
            self._feed(frame.tobytes(), out)
        return take

    def _oversized(self, length: int, out: list[Event]) -> None:
        if not self.is_aborted():
            limit = self.max_inbound_frame_size
            self._fail(ErrorCodes.FRAME_SIZE_ERROR, f"frame of {length} bytes above the {limit} limit", out)

    def _admit_data(self, stream_id: int, flags: int, length: int, out: list[Event]) -> bool:
        """Flow control for a DATA frame of `length` bytes; False: its payload is not delivered."""
        rx = self.inbound.get(stream_id)
        if rx is None:
            # Not a tunnel we receive on: h2 judges the stream state (closed → RST_STREAM, idle or
            # stream 0 → GOAWAY) from an empty copy; the bytes are dropped, their credit returned.
            self._feed(h2frames.data_header(stream_id, 0, flags & END_STREAM), out)
            if length and self.aborted is None:
                self._return_connection_credit(length)
            return False
        if length > self.rx_conn_window or length > rx.window:
            reason = f"DATA beyond the flow-control window on {stream_id}"
            self._fail(ErrorCodes.FLOW_CONTROL_ERROR, reason, out)
            return False
        self.rx_conn_window -= length
        rx.window -= length
        return True

    def _finish_data(self, stream_id: int, flags: int, out: list[Event]) -> None:
        """The admitted DATA frame is complete: an END_STREAM on it closes our receiving side."""
        if flags & END_STREAM:
            self.inbound.pop(stream_id, None)
            self._feed(h2frames.data_header(stream_id, 0, END_STREAM), out)

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
                self._fail(ErrorCodes.PROTOCOL_ERROR, f"bad DATA padding on stream {stream_id}", out)
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
            if sid in self.inbound:
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
        ob = self.outbound.get(stream_id) if stream_id else None
        if increment == 0 or (stream_id and ob is None):
            # Zero increments are errors, and streams we no longer send on are h2's to judge.
            self._feed(frame[offset : offset + FRAME_HEADER_SIZE + 4].tobytes(), out)
            return
        if ob is None:
            self.tx_conn_window += increment
            if self.tx_conn_window > h2frames.MAX_WINDOW:
                self._fail(ErrorCodes.FLOW_CONTROL_ERROR, "connection window above 2^31-1", out)
                return
        else:
            ob.window += increment
            if ob.window > h2frames.MAX_WINDOW:
                self._reset(stream_id, ErrorCodes.FLOW_CONTROL_ERROR)
                out.append(StreamReset(stream_id, int(ErrorCodes.FLOW_CONTROL_ERROR), remote=False))
                return
        self._window_opened(stream_id, out)
