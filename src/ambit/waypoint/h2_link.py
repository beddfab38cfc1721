"""What the waypoint's HTTP/2 frontend (``h2_server``) and upstream pool (``h2_client``) share.

* pure helpers: h2 header blocks to exchange headers and back, with their validation;
* :class:`H2Link`, one HTTP/2 connection over a :class:`Duplex` (either side), around h2's sans-IO
  ``H2Connection``: it feeds h2 from the stream, writes what h2 has to send, sends a
  :class:`BodyStream` as flow-controlled DATA (waiting for WINDOW_UPDATEs, never buffering more than
  the peer's window), and receives DATA into an :class:`InboundBody`.

**Backpressure.** A stream's receive window equals its :class:`InboundBody`'s buffer, and received
DATA is acknowledged (WINDOW_UPDATE) only as the body's reader takes it, so a peer can never send
more than the reader will hold, ``feed`` never has to wait, and a slow reader (a slow upstream)
slows the sender down. What a reader abandons or a closed stream leaves unread is acknowledged at
once so the connection window never leaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ambit.net.duplex import Duplex, StreamAborted
from ambit.protocol import h2tuning
from ambit.waypoint.exchange import (
    DEFAULT_BODY_BUFFER,
    BodyStream,
    Headers,
    Request,
    forwardable,
)

_log = logging.getLogger(__name__)

MAX_CONCURRENT_STREAMS = 100  # advertised by the server
MAX_HEADER_LIST_SIZE = 60 * 1024  # bigger header blocks are h2's connection error (ENHANCE_YOUR_CALM)
STREAM_WINDOW = DEFAULT_BODY_BUFFER  # a stream's receive window: what its InboundBody may hold
CONNECTION_WINDOW = 4 * 1024 * 1024  # receive window of a whole connection
READ_SIZE = 64 * 1024
CLOSE_GRACE = 2.0  # seconds the peer has to close after our last frame before we reset the connection
_H2_DEFAULT_WINDOW = 65_535

# ------------------------------------------------------------------------------------------ pure helpers


class MalformedRequest(ValueError):
    """A request header block we will not forward; ``status`` is what the client gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A request header block as the exchange model sees it."""

    method: bytes
    scheme: bytes
    authority: bytes
    path: bytes
    headers: Headers


def as_bytes_fields(fields: Iterable[tuple[bytes | str, bytes | str]]) -> Headers:
    """h2's header tuples (bytes with ``header_encoding=None``) as plain ``(bytes, bytes)`` pairs."""
    out: Headers = []
    for name, value in fields:
        out.append(
            (
                name if isinstance(name, bytes) else name.encode("latin-1"),
                value if isinstance(value, bytes) else value.encode("latin-1"),
            )
        )
    return out


def split_pseudo(fields: Sequence[tuple[bytes, bytes]]) -> tuple[dict[bytes, bytes], Headers]:
    """The pseudo-headers (first value of each) and the regular fields, in order."""
    pseudo: dict[bytes, bytes] = {}
    regular: Headers = []
    for name, value in fields:
        if name.startswith(b":"):
            pseudo.setdefault(name, value)
        else:
            regular.append((name, value))
    return pseudo, regular


def request_head(fields: Sequence[tuple[bytes, bytes]]) -> RequestHead:
    """A received request header block as a :class:`RequestHead`; :class:`MalformedRequest` if unusable.

    The authority is ``:authority``, else ``host``; ``host`` is not kept among the headers (the
    authority is a field of the request, and each upstream client writes its own).
    """
    pseudo, regular = split_pseudo(fields)
    method = pseudo.get(b":method", b"")
    if not method:
        raise MalformedRequest(400, "missing :method")
    if method == b"CONNECT" or b":protocol" in pseudo:
        raise MalformedRequest(405, "CONNECT is not proxied over HTTP/2")
    path = pseudo.get(b":path", b"")
    if not path:
        raise MalformedRequest(400, "missing :path")
    authority = pseudo.get(b":authority", b"")
    if not authority:
        authority = next((value for name, value in regular if name == b"host"), b"")
    if not authority:
        raise MalformedRequest(400, "missing :authority")
    headers = [(name, value) for name, value in regular if name != b"host"]
    return RequestHead(method, pseudo.get(b":scheme", b"http"), authority, path, headers)


def response_head(fields: Sequence[tuple[bytes, bytes]]) -> tuple[int, Headers]:
    """A received response header block as ``(status, headers)``; ValueError without a valid ``:status``."""
    pseudo, regular = split_pseudo(fields)
    status = pseudo.get(b":status", b"")
    if len(status) != 3 or not status.isdigit():
        raise ValueError(f"bad :status {status!r}")
    return int(status), regular


_BAD_NAME_BYTES = frozenset(b"\x00\r\n\t :")
_BAD_VALUE_BYTES = frozenset(b"\x00\r\n")


def check_field(name: bytes, value: bytes) -> None:
    """ValueError unless ``name: value`` may be sent in an HTTP/2 header block (RFC 9113 §8.2.1)."""
    if not name or name != name.lower() or not _BAD_NAME_BYTES.isdisjoint(name):
        raise ValueError(f"bad header name {name!r}")
    if not _BAD_VALUE_BYTES.isdisjoint(value):
        raise ValueError(f"bad value for header {name!r}")


def outbound_fields(
    headers: Sequence[tuple[bytes, bytes]], *, drop: frozenset[bytes] = frozenset()
) -> Headers:
    """``headers`` fit for an HTTP/2 block: lower-case names, no hop-by-hop, no pseudo-headers,
    none named in ``drop``, values stripped; ValueError on a field h2 may not carry."""
    out: Headers = []
    for name, value in forwardable([(name.lower(), value) for name, value in headers]):
        if name.startswith(b":") or name in drop:
            continue
        stripped = value.strip(b" \t")
        check_field(name, stripped)
        out.append((name, stripped))
    return out


def request_fields(request: Request) -> Headers:
    """The header block that sends ``request`` upstream (``te: trailers`` kept, ``host`` dropped)."""
    for field in (request.method, request.authority, request.path):
        if not field or not _BAD_VALUE_BYTES.isdisjoint(field) or b" " in field:
            raise ValueError(f"bad request line field {field!r}")
    return [
        (b":method", request.method),
        (b":scheme", request.scheme or b"http"),
        (b":authority", request.authority),
        (b":path", request.path),
        *outbound_fields(request.headers, drop=frozenset({b"host"})),
    ]


def response_fields(status: int, headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The header block of a final response; ValueError for a status HTTP/2 cannot send as final."""
    if not 200 <= status <= 999:
        raise ValueError(f"status {status} cannot be a final HTTP/2 response")
    return [(b":status", b"%d" % status), *outbound_fields(headers)]


def trailer_fields(trailers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """The trailer block for ``trailers`` (maybe empty: then the stream ends with DATA)."""
    return outbound_fields(trailers)


def has_goaway(frames: bytes) -> bool:
    """Whether a run of whole HTTP/2 frames (what h2 has to send) holds a GOAWAY."""
    offset = 0
    while offset + 9 <= len(frames):
        if frames[offset + 3] == 0x7:
            return True
        offset += 9 + int.from_bytes(frames[offset : offset + 3], "big")
    return False


# ------------------------------------------------------------------------------------- shared machinery


class StreamGone(Exception):
    """The stream can carry no more frames: it was reset (by either side) or its connection is gone."""


class LinkStream:
    """What :class:`H2Link` needs to know of one stream."""

    __slots__ = ("local_done", "remote_done", "reset", "sid")

    def __init__(self, sid: int) -> None:
        self.sid = sid
        self.reset = False  # a RST_STREAM went either way
        self.local_done = False  # we sent END_STREAM
        self.remote_done = False  # the peer sent END_STREAM

    @property
    def finished(self) -> bool:
        return self.reset or (self.local_done and self.remote_done)


class InboundBody(BodyStream):
    """A body fed from DATA frames: each chunk its reader takes is acknowledged (WINDOW_UPDATE)."""

    __slots__ = ("_link", "sid", "unacked")

    def __init__(self, link: H2Link, sid: int) -> None:
        super().__init__(STREAM_WINDOW)
        self._link = link
        self.sid = sid
        self.unacked = 0  # flow-controlled bytes received and not yet handed back to the peer
        self.on_abandon(self.release)

    async def __anext__(self) -> bytes:
        chunk = await super().__anext__()
        self._link.acknowledge(self, len(chunk))
        return chunk

    def release(self) -> None:
        """Hand back every unacknowledged byte (what is buffered will not count again)."""
        self._link.acknowledge(self, self.unacked)


async def take_if_complete(body: BodyStream) -> list[bytes] | None:
    """All of ``body``'s chunks if its producer has finished (they are buffered: no waiting), else None."""
    if not body.done:
        return None
    return [chunk async for chunk in body]


class H2Link:
    """One HTTP/2 connection over a :class:`Duplex`, either side; subclasses handle the events."""

    def __init__(
        self, stream: Duplex, *, client_side: bool, settings: dict[h2.settings.SettingCodes, int]
    ) -> None:
        self.stream = stream
        config = h2.config.H2Configuration(
            client_side=client_side,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=True,
            normalize_inbound_headers=True,  # joins split cookie fields
            normalize_outbound_headers=True,
        )
        self.h2 = h2.connection.H2Connection(config=config)
        h2tuning.keep_open_through_goaway(self.h2)  # streams a GOAWAY lets finish keep flowing
        self.h2.local_settings = h2.settings.Settings(client=client_side, initial_values=dict(settings))
        self.h2.decoder.max_header_list_size = settings.get(
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST_SIZE
        )
        self.broken: BaseException | None = None
        self._window_waiter: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Send our preface (SETTINGS) and open the connection's receive window."""
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - _H2_DEFAULT_WINDOW)
        self.flush()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if not data or self.broken is not None:
            return
        try:
            self.stream.write(data)
        except StreamAborted as exc:
            self.broken = exc
            self.wake_senders()

    # -- receiving ------------------------------------------------------------------------------------

    async def read_loop(self, initial: bytes = b"") -> None:
        """Feed h2 until EOF, a reset or a protocol error; then :meth:`read_ended`."""
        error: BaseException | None = None
        try:
            if initial:
                await self.receive(initial)
            while self.broken is None:
                data = await self.stream.read(READ_SIZE)
                if not data:
                    break
                await self.receive(data)
            error = self.broken
        except StreamAborted as exc:
            error = exc
        except h2.exceptions.ProtocolError as exc:
            _log.info("HTTP/2 protocol error from %s: %s", self.describe(), exc)
            self._goaway_for(exc)
            error = exc
        except Exception as exc:
            _log.exception("HTTP/2 connection %s failed", self.describe())
            with contextlib.suppress(Exception):
                self.h2.close_connection(ErrorCodes.INTERNAL_ERROR)
                self.flush()
            error = exc
        finally:
            if error is not None and self.broken is None:
                self.broken = error
            self.wake_senders()
        self.read_ended(error)

    def _goaway_for(self, exc: h2.exceptions.ProtocolError) -> None:
        """Send the GOAWAY h2 queued for ``exc``, or one of our own when it queued none (a bad preface)."""
        pending = self.h2.data_to_send()
        if not has_goaway(pending):
            with contextlib.suppress(Exception):
                self.h2.close_connection(getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR))
            pending += self.h2.data_to_send()
        if pending and self.broken is None:
            with contextlib.suppress(StreamAborted):
                self.stream.write(pending)

    async def receive(self, data: bytes) -> None:
        events = self.h2.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                await self.receive_data(event)
            elif isinstance(event, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
                self.wake_senders()
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    self.settings_changed()
            else:
                self.handle(event)
        self.flush()

    async def receive_data(self, event: h2.events.DataReceived) -> None:
        sid = event.stream_id
        data = event.data
        flow = event.flow_controlled_length
        body = self.body_for(sid)
        if body is None or body.done:
            if body is not None:
                body.unacked += flow
                self.acknowledge(body, body.unacked)
            elif flow:
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self.h2.acknowledge_received_data(flow, sid)
            return
        body.unacked += flow
        if flow > len(data):
            self.acknowledge(body, flow - len(data))  # padding
        # never waits: the stream window (what we let the peer send) is the body's buffer limit
        await body.feed(data)

    def acknowledge(self, body: InboundBody, n: int) -> None:
        n = min(n, body.unacked)
        if n <= 0:
            return
        body.unacked -= n
        if self.broken is not None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self.h2.acknowledge_received_data(n, body.sid)
        self.flush()

    # -- hooks ------------------------------------------------------------------------------------------

    def body_for(self, sid: int) -> InboundBody | None:
        raise NotImplementedError

    def handle(self, event: h2.events.Event) -> None:
        raise NotImplementedError

    def settings_changed(self) -> None:
        """The peer's SETTINGS arrived or changed."""

    def read_ended(self, error: BaseException | None) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    # -- sending -----------------------------------------------------------------------------------------

    def wake_senders(self) -> None:
        waiter, self._window_waiter = self._window_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_window(self) -> None:
        waiter = self._window_waiter
        if waiter is None or waiter.done():
            waiter = self._window_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(waiter)

    def check(self, st: LinkStream) -> None:
        if self.broken is not None:
            raise StreamGone(f"connection lost: {self.broken}")
        if st.reset:
            raise StreamGone("stream reset")
        if st.local_done:
            raise StreamGone("stream already ended")

    async def send_data(self, st: LinkStream, data: bytes, *, end: bool) -> None:
        """Send ``data`` as DATA frames as the flow-control windows allow; END_STREAM if ``end``."""
        view = memoryview(data)
        offset = 0
        total = len(data)
        while True:
            self.check(st)
            try:
                if offset == total:
                    if end:
                        self.h2.end_stream(st.sid)
                        st.local_done = True
                        self.flush()
                    return
                window = self.h2.local_flow_control_window(st.sid)
                n = min(total - offset, window, self.h2.max_outbound_frame_size)
                if n <= 0:
                    await self._wait_window()
                    continue
                last = offset + n == total
                self.h2.send_data(st.sid, view[offset : offset + n], end_stream=end and last)
            except h2.exceptions.ProtocolError as exc:
                raise StreamGone(str(exc) or type(exc).__name__) from exc
            offset += n
            if end and last:
                st.local_done = True
            self.flush()
            try:
                await self.stream.drain()
            except StreamAborted as exc:
                raise StreamGone(f"connection lost: {exc}") from exc
            if last:
                return

    async def send_body(self, st: LinkStream, body: BodyStream, chunks: list[bytes] | None = None) -> None:
        """Send ``body`` (or ``chunks``, all of it taken already) as DATA, then its trailers or END_STREAM.

        Chunks go out as they come; once the producer has finished, what is buffered goes out with
        the end of the stream. BodyError if the body breaks; StreamGone if the stream does.
        """
        while chunks is None:
            try:
                chunk = await anext(body)
            except StopAsyncIteration:
                chunks = []
                break
            if body.done:  # the rest is buffered already
                chunks = [chunk, *[rest async for rest in body]]
                break
            await self.send_data(st, chunk, end=False)
        trailers = trailer_fields(body.trailers)
        data = b"".join(chunks)
        if not trailers:
            await self.send_data(st, data, end=True)
            return
        if data:
            await self.send_data(st, data, end=False)
        self.check(st)
        try:
            self.h2.send_headers(st.sid, trailers, end_stream=True)
        except h2.exceptions.ProtocolError as exc:
            raise StreamGone(str(exc) or type(exc).__name__) from exc
        st.local_done = True
        self.flush()

    def reset(self, st: LinkStream, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        """RST_STREAM ``st`` unless it is over already."""
        if st.finished:
            return
        st.reset = True
        if self.broken is None:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.reset_stream(st.sid, code)
            self.flush()
        self.wake_senders()


# ------------------------------------------------------------------------------------------------ server
