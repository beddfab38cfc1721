"""The waypoint's HTTP/2 upstream client: a pool of HTTP/2 connections, one exchange per stream.

:meth:`H2Upstream.send` reuses an HTTP/2 connection per key while it is usable and the peer's
MAX_CONCURRENT_STREAMS leaves room, else opens another with the caller's ``connect()``. It sends the
request head, streams the request body (a task per stream, concurrent with the response: full
duplex), and returns the :class:`Response` as soon as the response head arrives, its body fed as
DATA comes and finished with the response trailers.

Failures carry Envoy's response flags (:class:`UpstreamError`): ``UF`` could not connect, ``UC`` the
connection ended, ``UR`` the upstream reset the stream (or refused it in a GOAWAY), ``UPE`` it broke
the protocol, ``DC`` the request body broke (its client went away). Once the head has arrived, a
failure reaches the reader of the response body as a :class:`BodyError` caused by that UpstreamError.

A GOAWAY from the upstream stops new streams on that connection while those in flight finish; a
connection idle for ``idle_timeout`` is closed. Abandoning a response body (its reader went away)
resets the upstream stream; a broken request body resets it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable

import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes

from ambit.net.duplex import Duplex, StreamAborted
from ambit.net.tasks import spawn
from ambit.waypoint.exchange import BodyError, Headers, Request, Response
from ambit.waypoint.h2_link import (
    CLOSE_GRACE,
    MAX_HEADER_LIST_SIZE,
    STREAM_WINDOW,
    H2Link,
    InboundBody,
    LinkStream,
    StreamGone,
    as_bytes_fields,
    request_fields,
    response_head,
    take_if_complete,
)
from ambit.waypoint.upstream_errors import (
    CONNECT_FAILURE,
    CONNECTION_TERMINATION,
    DOWNSTREAM_TERMINATION,
    PROTOCOL_ERROR,
    REMOTE_RESET,
    UpstreamError,
)

_log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 60.0
ASSUMED_PEER_STREAMS = 100  # streams we open before the peer's SETTINGS say how many it takes
_LAST_STREAM_ID = 2**31 - 1


class _ClientStream(LinkStream):
    __slots__ = ("body", "head", "pump", "trailers")

    def __init__(self, sid: int, body: InboundBody, head: asyncio.Future[tuple[int, Headers]]) -> None:
        super().__init__(sid)
        self.body = body  # the response body
        self.head = head
        self.trailers: Headers = []
        self.pump: asyncio.Task[None] | None = None  # sends the request body


class _Connection(H2Link):
    """One upstream HTTP/2 connection of the pool."""

    def __init__(self, pool: H2Upstream, key: Hashable, stream: Duplex) -> None:
        super().__init__(
            stream,
            client_side=True,
            settings={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST_SIZE,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            },
        )
        self.pool = pool
        self.key = key
        self.streams: dict[int, _ClientStream] = {}
        self.goaway = False  # the peer sent GOAWAY: no new streams here
        self.closing = False  # we are closing it: no new streams either
        self.settings_received = False
        self.opened = 0  # streams opened on it
        self.reader: asyncio.Task[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._abort_later: asyncio.TimerHandle | None = None

    def describe(self) -> str:
        return f"upstream {self.key!r}"

    def run(self) -> None:
        self.start()
        self.reader = spawn(self.read_loop(), name="h2-upstream-read")
        self.stream.add_close_callback(self._stream_closed)
        self._arm_idle()

    def _stream_closed(self) -> None:
        self._disarm_idle()
        if self._abort_later is not None:
            self._abort_later.cancel()
            self._abort_later = None

    # -- capacity ----------------------------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return (
            self.broken is None
            and not self.goaway
            and not self.closing
            and not self.stream.closed
            and self.h2.highest_outbound_stream_id < _LAST_STREAM_ID - 2
        )

    def has_capacity(self) -> bool:
        if not self.usable:
            return False
        limit = (
            self.h2.remote_settings.max_concurrent_streams if self.settings_received else ASSUMED_PEER_STREAMS
        )
        return len(self.streams) < limit

    # -- one exchange ------------------------------------------------------------------------------------

    def open(self, request: Request, fields: Headers, *, end: bool) -> _ClientStream:
        """Send the request head now (no await between the capacity check and this); start the body."""
        sid = self.h2.get_next_available_stream_id()
        head: asyncio.Future[tuple[int, Headers]] = asyncio.get_running_loop().create_future()
        st = _ClientStream(sid, InboundBody(self, sid), head)
        self.streams[sid] = st
        self._disarm_idle()
        try:
            self.h2.send_headers(sid, fields, end_stream=end)
        except h2.exceptions.ProtocolError as exc:
            self.streams.pop(sid, None)
            self.reset(st, ErrorCodes.INTERNAL_ERROR)
            self._stream_over()
            raise UpstreamError(PROTOCOL_ERROR, f"cannot send the request: {exc}") from exc
        self.flush()
        if end:
            st.local_done = True
        else:
            st.pump = spawn(self._pump(st, request), name=f"h2-upstream-body-{sid}")
        st.body.on_abandon(lambda: self.cancel(st))
        return st

    async def _pump(self, st: _ClientStream, request: Request) -> None:
        try:
            await self.send_body(st, request.body)
        except asyncio.CancelledError:
            request.body.abandon()
            raise
        except BodyError as exc:  # the request broke (its client went away): this stream is over
            request.body.abandon()
            self._fail(st, UpstreamError(DOWNSTREAM_TERMINATION, f"request body broke: {exc}"))
            self.cancel(st)
        except StreamGone:
            request.body.abandon()
        except Exception as exc:
            _log.info("request body to %s failed: %r", self.describe(), exc)
            request.body.abandon()
            self._fail(st, UpstreamError(PROTOCOL_ERROR, f"request body cannot be sent: {exc}"))
            self.cancel(st, ErrorCodes.INTERNAL_ERROR)
        else:
            self._maybe_over(st)

    def cancel(self, st: _ClientStream, code: ErrorCodes = ErrorCodes.CANCEL) -> None:
        """Reset ``st`` (its response is not wanted any more) and forget it."""
        if self.streams.get(st.sid) is not st:
            return
        self.reset(st, code)
        self._fail(st, UpstreamError(REMOTE_RESET, "stream cancelled"))
        self._forget(st)

    def _fail(self, st: _ClientStream, exc: UpstreamError) -> None:
        if not st.head.done():
            st.head.set_exception(exc)
            st.head.exception()  # retrieved: whoever waited may be gone
        st.body.fail(exc)

    def _forget(self, st: _ClientStream) -> None:
        if self.streams.pop(st.sid, None) is None:
            return
        if st.reset:  # nothing more comes on it: what its reader has not taken frees the connection window
            st.body.release()
        if st.pump is not None and not st.pump.done() and st.pump is not asyncio.current_task():
            st.pump.cancel()
        self._stream_over()

    def _maybe_over(self, st: _ClientStream) -> None:
        if st.finished:
            self._forget(st)

    def _stream_over(self) -> None:
        if self.streams:
            return
        if self.goaway or self.closing:
            self.close()
        else:
            self._arm_idle()

    # -- events ------------------------------------------------------------------------------------------

    def body_for(self, sid: int) -> InboundBody | None:
        st = self.streams.get(sid)
        return st.body if st is not None else None

    def settings_changed(self) -> None:
        self.settings_received = True

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            st = self.streams.get(event.stream_id)
            if st is None:
                return
            try:
                head = response_head(as_bytes_fields(event.headers))
            except ValueError as exc:
                self._fail(st, UpstreamError(PROTOCOL_ERROR, str(exc)))
                self.cancel(st, ErrorCodes.PROTOCOL_ERROR)
                return
            if not st.head.done():
                st.head.set_result(head)
        elif isinstance(event, h2.events.TrailersReceived):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.trailers = as_bytes_fields(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.remote_done = True
                st.body.finish(st.trailers)
                self._maybe_over(st)
        elif isinstance(event, h2.events.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None:
                st.reset = True
                refused = event.error_code == ErrorCodes.REFUSED_STREAM
                reason = f"upstream reset the stream ({_code(event.error_code)})"
                self._fail(st, UpstreamError(REMOTE_RESET, reason, refused=refused))
                self._forget(st)
                self.wake_senders()
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._goaway(event)

    def _goaway(self, event: h2.events.ConnectionTerminated) -> None:
        self.goaway = True
        self.pool._discard(self)
        last = event.last_stream_id if event.last_stream_id is not None else _LAST_STREAM_ID
        for st in [st for sid, st in self.streams.items() if sid > last]:
            st.reset = True  # never processed: the peer forgets it, so do we
            self._fail(st, UpstreamError(REMOTE_RESET, "refused by the upstream's GOAWAY", refused=True))
            self._forget(st)
        self.wake_senders()
        if not self.streams:
            self.close()

    def read_ended(self, error: BaseException | None) -> None:
        self.pool._discard(self)
        if isinstance(error, h2.exceptions.ProtocolError):
            exc = UpstreamError(PROTOCOL_ERROR, f"upstream HTTP/2 protocol error: {error}")
        elif error is not None:
            exc = UpstreamError(CONNECTION_TERMINATION, f"upstream connection lost: {error}")
        else:
            exc = UpstreamError(CONNECTION_TERMINATION, "upstream closed the connection")
        if self.broken is None:
            self.broken = exc
        for st in list(self.streams.values()):
            st.reset = True
            self._fail(st, exc)
            self._forget(st)
        self.wake_senders()
        self._disarm_idle()
        if not self.stream.closed:
            if error is None:  # the upstream closed its side: close ours
                with contextlib.suppress(Exception):
                    if not self.stream.eof_out:
                        self.stream.write_eof()
                self._abort_after_grace()
            else:
                self.stream.abort(StreamAborted("upstream HTTP/2 connection failed"))
        self.pool._gone(self)

    # -- closing -----------------------------------------------------------------------------------------

    def _arm_idle(self) -> None:
        self._disarm_idle()
        if not self.closing and self.broken is None:
            self._idle = asyncio.get_running_loop().call_later(self.pool.idle_timeout, self._idle_expired)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.streams:
            self.close()

    def close(self) -> None:
        """GOAWAY and FIN now (streams in flight are failed); the peer's close ends the reader."""
        if self.closing:
            return
        self.closing = True
        self.pool._discard(self)
        self._disarm_idle()
        exc = UpstreamError(CONNECTION_TERMINATION, "upstream connection closed")
        for st in list(self.streams.values()):
            self.reset(st)
            self._fail(st, exc)
            self._forget(st)
        if self.broken is None and not self.stream.closed:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.h2.close_connection(ErrorCodes.NO_ERROR)
            self.flush()
            with contextlib.suppress(Exception):
                if not self.stream.eof_out:
                    self.stream.write_eof()
        self._abort_after_grace()

    def _abort_after_grace(self) -> None:
        if self._abort_later is None and not self.stream.closed:
            self._abort_later = asyncio.get_running_loop().call_later(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        if not self.stream.closed:
            self.stream.abort(StreamAborted("upstream did not close"))

    async def wait_closed(self, grace: float) -> None:
        reader = self.reader
        if reader is None:
            return
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(reader)
        except TimeoutError:
            self._abort()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if self._abort_later is not None:
            self._abort_later.cancel()
        if not self.stream.closed:
            self._abort()


def _code(code: ErrorCodes | int) -> str:
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(int(code))


class H2Upstream:
    """HTTP/2 connections to upstreams, pooled by key; see the module docstring."""

    def __init__(self, *, idle_timeout: float = DEFAULT_IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self._pools: dict[Hashable, list[_Connection]] = {}
        self._connecting: dict[Hashable, asyncio.Future[None]] = {}
        self._all: set[_Connection] = set()
        self._closed = False

    def connections(self, key: Hashable) -> int:
        """How many usable connections ``key`` has (tests, metrics)."""
        return sum(1 for conn in self._pools.get(key, ()) if conn.usable)

    def streams(self, key: Hashable) -> int:
        """How many streams are open to ``key`` (tests, metrics)."""
        return sum(len(conn.streams) for conn in self._all if conn.key == key)

    async def send(
        self,
        key: Hashable,
        connect: Callable[[], Awaitable[Duplex]],
        request: Request,
        *,
        max_requests_per_connection: int | None = None,
    ) -> Response:
        """Send ``request`` on a connection for ``key``; the response once its head has arrived.

        UpstreamError if no connection could be opened (``UF``) or the exchange failed before the
        response head (``UC``, ``UR``, ``UPE``). Cancelling resets the stream.
        ``max_requests_per_connection`` (Envoy's ``max_requests_per_connection``): a connection that
        has opened that many streams takes no more; it closes once they end (None: no limit).
        """
        fields = request_fields(request)  # ValueError: nothing of this request can go upstream
        body = request.body
        bare = False  # no body at all: END_STREAM on the HEADERS
        if body.done and body.received == 0:
            await take_if_complete(body)  # consumes nothing; BodyError if the body broke already
            bare = not body.trailers
        conn = await self._acquire(key, connect)
        st = conn.open(request, fields, end=bare)
        conn.opened += 1
        if max_requests_per_connection is not None and conn.opened >= max_requests_per_connection:
            conn.closing = True  # no new streams; closed when the last one ends (_stream_over)
            self._discard(conn)
        try:
            status, headers = await st.head
        except asyncio.CancelledError:
            conn.cancel(st)
            raise
        return Response(status, headers, st.body)

    async def close(self) -> None:
        """Close every connection: streams in flight fail, each connection gets GOAWAY and a FIN."""
        self._closed = True
        conns = list(self._all)
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.wait_closed(CLOSE_GRACE) for conn in conns), return_exceptions=True)
        self._all.clear()
        self._pools.clear()

    # -- pool --------------------------------------------------------------------------------------------

    async def _acquire(self, key: Hashable, connect: Callable[[], Awaitable[Duplex]]) -> _Connection:
        while True:
            if self._closed:
                raise UpstreamError(CONNECTION_TERMINATION, "upstream pool closed")
            for conn in self._pools.get(key, ()):
                if conn.has_capacity():
                    return conn
            pending = self._connecting.get(key)
            if pending is None:
                return await self._open(key, connect)
            await asyncio.shield(pending)  # its UpstreamError is ours too; else look again

    async def _open(self, key: Hashable, connect: Callable[[], Awaitable[Duplex]]) -> _Connection:
        opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connecting[key] = opened
        try:
            try:
                duplex = await connect()
            except UpstreamError:
                raise
            except (OSError, ConnectionError, TimeoutError) as exc:
                raise UpstreamError(CONNECT_FAILURE, f"cannot connect: {exc or type(exc).__name__}") from exc
            if self._closed:
                duplex.abort(StreamAborted("upstream pool closed"))
                raise UpstreamError(CONNECTION_TERMINATION, "upstream pool closed")
            conn = _Connection(self, key, duplex)
            self._pools.setdefault(key, []).append(conn)
            self._all.add(conn)
            conn.run()
            return conn
        except UpstreamError as exc:
            if not opened.done():
                opened.set_exception(exc)
                opened.exception()
            raise
        finally:
            if self._connecting.get(key) is opened:
                del self._connecting[key]
            if not opened.done():
                opened.set_result(None)

    def _discard(self, conn: _Connection) -> None:
        """No new streams on ``conn``."""
        conns = self._pools.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._pools[conn.key]

    def _gone(self, conn: _Connection) -> None:
        self._discard(conn)
        self._all.discard(conn)
