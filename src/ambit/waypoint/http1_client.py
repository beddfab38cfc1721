"""HTTP/1.1 toward an upstream: send one :class:`Request`, get its :class:`Response` back, streaming.

:class:`Http1Upstream` keeps idle keep-alive connections per key (the endpoint and whatever else makes
two connections interchangeable), most recently used first. :meth:`Http1Upstream.send` writes the
request head, streams the request body while it reads the response (an early answer, such as a 413
before the body was sent, is returned like any other) and returns as soon as the response head is
parsed; the response body then streams into the response's :class:`BodyStream`. A connection goes back
to the pool when its response ended, keep-alive, with the request sent whole and nothing more on it.
A response that arrives whole with its head (a small answer to a request without a body, the common
case) is returned complete and its connection released at once, with no task to pump its body.

Framing is this hop's: ``content-length`` when the request has a consistent one, chunked when it has a
body of unknown length (an HTTP/2 request without ``content-length``; its trailers go in the last
chunk), nothing when it has no body. An Upgrade is sent with ``connection: upgrade``; its 101 hands
the connection itself to the caller (:attr:`Response.upgraded`), never to be reused.

Failures are :class:`UpstreamError` with Envoy's response flag: ``UF`` no connection, ``UC`` the
upstream closed it, ``UR`` it reset it, ``UPE`` it spoke something that is not HTTP/1.1. A request
whose own body broke (the client went away) raises that :class:`BodyError` instead. A reused
connection found closed before any byte of the response is retried once on a new connection, when the
request has no body to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from ambit.net.duplex import Duplex, StreamAborted
from ambit.net.tasks import spawn
from ambit.protocol.http1 import (
    Body,
    Event,
    Http1Error,
    MessageEnd,
    ResponseHead,
    ResponseParser,
    Upgraded,
    chunk,
    content_length,
    last_chunk,
    request_head,
)
from ambit.waypoint.exchange import (
    DEFAULT_BODY_BUFFER,
    BodyError,
    BodyStream,
    Headers,
    Request,
    Response,
    forwardable,
)
from ambit.waypoint.upstream_errors import (
    CONNECT_FAILURE,
    CONNECTION_TERMINATION,
    PROTOCOL_ERROR,
    REMOTE_RESET,
    UpstreamError,
)

_log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
MAX_IDLE_PER_KEY = 32
# A connection being closed gets this long to finish its close handshake before it is reset.
CLOSE_GRACE_SECONDS = 5.0

# Methods whose empty body is still announced (``content-length: 0``), as clients do.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_NOT_FORWARDED = frozenset({b"host", b"content-length", b"expect"})


# -- pure: the request head ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestFraming:
    """A request head as it goes upstream, and how its body follows it."""

    head: bytes
    body: bool  # any body bytes (or trailers) follow the head
    length: int | None  # the Content-Length the body is held to
    chunked: bool


def has_empty_body(body: BodyStream) -> bool:
    """The body is known to be empty: finished with no byte and no trailer."""
    return body.done and body.received == 0 and not body.trailers


def frame_request(request: Request) -> RequestFraming:
    """The HTTP/1.1 head for ``request``: origin-form target, ``host``, forwardable headers, framing.

    ``content-length`` when the request has a consistent one, else chunked when it has a body, else
    none (or ``content-length: 0`` for POST, PUT and PATCH). An HTTP/2 request's ``cookie`` fields are
    joined into one (RFC 9113 §8.2.3). :class:`Http1Error` if a field cannot be written.
    """
    fields: Headers = [(b"host", request.authority)]
    cookies: list[bytes] = []
    te = False
    for name, value in forwardable(request.headers):
        if name in _NOT_FORWARDED:
            continue
        if name == b"cookie":
            cookies.append(value)
        elif name == b"te":
            te = True
            fields.append((name, value))
        else:
            fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))

    length = content_length(request.headers)
    empty = has_empty_body(request.body)
    chunked = False
    if empty:
        if length is not None or request.method in _BODY_METHODS:
            fields.append((b"content-length", b"0"))
        length = 0
    elif length is not None:
        fields.append((b"content-length", str(length).encode()))
    else:
        chunked = True
        fields.append((b"transfer-encoding", b"chunked"))

    connection = []
    if request.upgrade is not None:
        connection.append(b"upgrade")
        fields.append((b"upgrade", request.upgrade))
    if te:
        connection.append(b"te")
    if connection:
        fields.append((b"connection", b", ".join(connection)))
    path = request.path or b"/"
    return RequestFraming(
        head=request_head(request.method, path, fields),
        body=not empty,
        length=length,
        chunked=chunked,
    )


def response_fields(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """A response's (or trailers') fields in the exchange model: lower-case, no hop-by-hop."""
    return forwardable([(name.lower(), value) for name, value in headers])


def _trailer_fields(trailers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return [(n, v) for n, v in forwardable(trailers) if n not in (b"content-length", b"host")]


def _close_delimited(head: ResponseHead, method: bytes) -> bool:
    """The response body runs to the end of the connection (no length, not chunked)."""
    if method == b"HEAD" or head.status < 200 or head.status in (204, 304):
        return False
    names = {name.lower() for name, _ in head.headers}
    return b"content-length" not in names and b"transfer-encoding" not in names


# -- the connections -------------------------------------------------------------------------------


class _Stale(Exception):
    """A reused connection was found closed before any byte of the response."""


class _Broken:
    """A parse error met after the response head, kept in order behind the events before it."""

    __slots__ = ("error",)

    def __init__(self, error: Http1Error) -> None:
        self.error = error


class _Conn:
    __slots__ = ("duplex", "events", "idle_timer", "key", "last", "parser", "pooled", "uses")

    def __init__(self, key: Hashable, duplex: Duplex) -> None:
        self.key = key
        self.duplex = duplex
        self.parser = ResponseParser()
        self.events: deque[Event | _Broken] = deque()
        self.idle_timer: asyncio.TimerHandle | None = None
        self.pooled = False
        self.uses = 0  # requests sent on it
        self.last = False  # its request limit is reached: closed after this exchange

    @property
    def usable(self) -> bool:
        d = self.duplex
        return not d.closed and d.error is None and not d.eof_in and not d.eof_out


def _close_conn(conn: _Conn) -> None:
    """Close gracefully (FIN), and reset it if the upstream has not closed its side in time."""
    duplex = conn.duplex
    if duplex.closed:
        return
    if duplex.error is not None:
        duplex.abort()
        return
    with contextlib.suppress(Exception):
        if not duplex.eof_out:
            duplex.write_eof()
    if not duplex.closed:
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, _reset_if_open, duplex)


def _reset_if_open(duplex: Duplex) -> None:
    if not duplex.closed:
        duplex.abort()


class Http1Upstream:
    """HTTP/1.1 exchanges with upstreams over pooled keep-alive connections (see the module doc)."""

    def __init__(
        self,
        *,
        idle_timeout: float = 60.0,
        max_idle_per_key: int = MAX_IDLE_PER_KEY,
        body_buffer: int = DEFAULT_BODY_BUFFER,
    ) -> None:
        self._idle_timeout = idle_timeout
        self._max_idle = max_idle_per_key
        self._body_buffer = body_buffer
        self._idle: dict[Hashable, list[_Conn]] = {}
        self._active: set[_Conn] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def idle_count(self, key: Hashable | None = None) -> int:
        """Idle pooled connections (for one key, or all)."""
        if key is not None:
            return len(self._idle.get(key, ()))
        return sum(len(stack) for stack in self._idle.values())

    async def send(
        self,
        key: Hashable,
        connect: Callable[[], Awaitable[Duplex]],
        request: Request,
        *,
        max_requests_per_connection: int | None = None,
    ) -> Response:
        """Send ``request`` over a pooled or new connection; the response once its head is in.

        ``max_requests_per_connection`` (a DestinationRule's ``http.maxRequestsPerConnection``, Envoy's
        ``max_requests_per_connection``): a connection that has carried that many requests is closed
        when its exchange ends instead of going back to the pool (None: no limit)."""
        if self._closed:
            raise UpstreamError(CONNECT_FAILURE, "the upstream client is closed")
        if has_empty_body(request.body):
            async for _ in request.body:  # finished and empty, or failed: a failure raises BodyError here
                pass
        framing = frame_request(request)  # before taking a connection: a bad field costs none
        retried = False
        while True:
            conn = None if retried else self._checkout(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key, connect)
            conn.uses += 1
            limit = max_requests_per_connection
            conn.last = limit is not None and conn.uses >= limit
            try:
                return await self._exchange(conn, request, framing, reused=reused)
            except _Stale as stale:
                if retried or framing.body:
                    raise UpstreamError(CONNECTION_TERMINATION, str(stale)) from None
                retried = True

    async def close(self) -> None:
        """Close every idle connection and reset those in use; the client takes no more requests."""
        self._closed = True
        idle = [conn for stack in self._idle.values() for conn in stack]
        self._idle.clear()
        for conn in idle:
            self._unpool(conn)
            _close_conn(conn)
        for conn in list(self._active):
            conn.duplex.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        waiting = [conn.duplex.wait_closed() for conn in idle if not conn.duplex.closed]
        if waiting:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await asyncio.gather(*waiting)
        for conn in idle:
            _reset_if_open(conn.duplex)

    # -- the pool --

    def _checkout(self, key: Hashable) -> _Conn | None:
        stack = self._idle.get(key)
        while stack:
            conn = stack.pop()
            self._unpool(conn)
            if conn.usable and not conn.events:
                self._active.add(conn)
                return conn
            _close_conn(conn)
        return None

    async def _connect(self, key: Hashable, connect: Callable[[], Awaitable[Duplex]]) -> _Conn:
        try:
            duplex = await connect()
        except UpstreamError:
            raise
        except Exception as exc:
            raise UpstreamError(
                CONNECT_FAILURE, f"upstream connect failed: {str(exc) or type(exc).__name__}"
            ) from exc
        conn = _Conn(key, duplex)
        duplex.add_close_callback(lambda: self._closed_while_idle(conn))
        self._active.add(conn)
        return conn

    def _release(self, conn: _Conn) -> None:
        """Back to the pool, if it can carry another request; else closed."""
        self._active.discard(conn)
        stack = self._idle.setdefault(conn.key, [])
        if self._closed or conn.last or not conn.usable or conn.events or len(stack) >= self._max_idle:
            if not stack:
                self._idle.pop(conn.key, None)
            _close_conn(conn)
            return
        conn.pooled = True
        conn.idle_timer = asyncio.get_running_loop().call_later(self._idle_timeout, self._expire, conn)
        stack.append(conn)

    def _discard(self, conn: _Conn, *, reset: bool) -> None:
        self._active.discard(conn)
        if reset:
            conn.duplex.abort()
        else:
            _close_conn(conn)

    def _unpool(self, conn: _Conn) -> None:
        conn.pooled = False
        if conn.idle_timer is not None:
            conn.idle_timer.cancel()
            conn.idle_timer = None

    def _remove_idle(self, conn: _Conn) -> None:
        stack = self._idle.get(conn.key)
        if stack is not None and conn in stack:
            stack.remove(conn)
            if not stack:
                del self._idle[conn.key]
        self._unpool(conn)

    def _expire(self, conn: _Conn) -> None:
        conn.idle_timer = None
        self._remove_idle(conn)
        _close_conn(conn)

    def _closed_while_idle(self, conn: _Conn) -> None:
        self._active.discard(conn)
        if conn.pooled:
            self._remove_idle(conn)

    # -- one exchange --

    async def _exchange(
        self, conn: _Conn, request: Request, framing: RequestFraming, *, reused: bool
    ) -> Response:
        duplex = conn.duplex
        conn.parser.expect(request.method)
        try:
            duplex.write(framing.head)
        except ConnectionError as exc:
            self._discard(conn, reset=True)
            if reused:
                raise _Stale(f"the idle connection had closed: {exc}") from None
            raise UpstreamError(REMOTE_RESET, f"upstream connection reset: {exc}") from None
        writer: asyncio.Task[BaseException | None] | None = None
        if framing.body:
            writer = spawn(self._send_body(duplex, request.body, framing), name="http1-upstream-body")
        try:
            head = await self._read_head(conn, request, writer, reused=reused)
        except BaseException:
            if writer is not None:
                writer.cancel()
            self._discard(conn, reset=True)
            raise

        if head.status == 101:
            upgraded = bytearray()
            while conn.events:
                event = conn.events.popleft()
                if isinstance(event, Upgraded):
                    upgraded += event.data
            if writer is not None:
                writer.cancel()
            self._active.discard(conn)  # the caller owns the stream now; never back to the pool
            return Response(
                status=101,
                headers=response_fields(head.headers),
                body=BodyStream.of(),
                upgraded=duplex,
                upgraded_head=bytes(upgraded),
            )

        close_delimited = _close_delimited(head, request.method)
        if writer is None and not close_delimited:
            complete = _complete_body(conn.events)
            if complete is not None:  # the whole response arrived with its head: no task to pump it
                data, trailers = complete
                if head.keep_alive:
                    self._release(conn)
                else:
                    self._discard(conn, reset=False)
                return Response(head.status, response_fields(head.headers), BodyStream.of(data, trailers))
        body = BodyStream(self._body_buffer)
        task = spawn(
            self._pump(conn, head, body, writer, close_delimited=close_delimited),
            name="http1-upstream-response",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Response(status=head.status, headers=response_fields(head.headers), body=body)

    async def _read_head(
        self,
        conn: _Conn,
        request: Request,
        writer: asyncio.Task[BaseException | None] | None,
        *,
        reused: bool,
    ) -> ResponseHead:
        """The final response head (1xx other than 101 skipped); what follows it stays in conn.events."""
        duplex = conn.duplex
        received = 0
        informational = False
        while True:
            while conn.events:
                event = conn.events.popleft()
                if isinstance(event, ResponseHead):
                    if 100 <= event.status < 200 and event.status != 101:
                        informational = True  # 100 Continue, 103 Early Hints: not forwarded
                        continue
                    if event.status == 101 and request.upgrade is None:
                        raise UpstreamError(PROTOCOL_ERROR, "the upstream switched protocols unasked")
                    return event
                if isinstance(event, MessageEnd) and informational:
                    informational = False
                    continue
                raise UpstreamError(PROTOCOL_ERROR, f"unexpected {type(event).__name__} before a response")
            try:
                data = await duplex.read(READ_SIZE)
            except StreamAborted as exc:
                _raise_body_failure(writer)
                if reused and received == 0:
                    raise _Stale(f"the idle connection was reset: {exc}") from None
                raise UpstreamError(
                    REMOTE_RESET, f"upstream connection reset before the response: {exc}"
                ) from None
            if not data:
                _raise_body_failure(writer)
                if reused and received == 0:
                    raise _Stale("the idle connection had been closed by the upstream")
                raise UpstreamError(
                    CONNECTION_TERMINATION, "the upstream closed the connection before the response"
                )
            received += len(data)
            try:
                conn.events.extend(conn.parser.feed(data))
            except Http1Error as error:
                conn.events.extend(error.events)
                if not any(isinstance(e, ResponseHead) and e.status >= 200 for e in conn.events):
                    raise UpstreamError(PROTOCOL_ERROR, f"invalid response: {error.reason}") from None
                conn.events.append(_Broken(error))

    async def _send_body(
        self, duplex: Duplex, body: BodyStream, framing: RequestFraming
    ) -> BaseException | None:
        """The request body upstream; None once sent whole, else why not."""
        sent = 0
        try:
            async for data in body:
                sent += len(data)
                if framing.length is not None and sent > framing.length:
                    raise BodyError(f"the request body is longer than its content-length {framing.length}")
                duplex.write(chunk(data) if framing.chunked else data)
                await duplex.drain()
            if framing.length is not None and sent != framing.length:
                raise BodyError(f"the request body ended short of its content-length {framing.length}")
            if framing.chunked:
                duplex.write(last_chunk(_trailer_fields(body.trailers)))
            await duplex.drain()
        except (BodyError, Http1Error) as exc:
            duplex.abort(exc)  # the upstream must not take a truncated body for a whole one
            return exc
        except ConnectionError as exc:
            return exc  # the upstream went away: what it answered, if anything, is read on the other side
        return None

    async def _pump(
        self,
        conn: _Conn,
        head: ResponseHead,
        body: BodyStream,
        writer: asyncio.Task[BaseException | None] | None,
        *,
        close_delimited: bool,
    ) -> None:
        """The response body into ``body``; then the connection back to the pool, or closed."""
        try:
            outcome = await self._read_body(conn, body, close_delimited=close_delimited)
        except asyncio.CancelledError:
            body.fail(UpstreamError(CONNECTION_TERMINATION, "the upstream client closed"))
            self._discard(conn, reset=True)
            raise
        if outcome is None or isinstance(outcome, UpstreamError):
            if outcome is not None:
                body.fail(outcome)
            self._discard(conn, reset=True)
            return
        body.finish(outcome)
        reusable = head.keep_alive and not close_delimited
        if writer is not None:
            if not writer.done():  # answered before the request was sent whole: cannot go on
                writer.cancel()
                reusable = False
            elif _task_failure(writer) is not None:
                reusable = False
        if reusable:
            self._release(conn)
        else:
            self._discard(conn, reset=False)

    async def _read_body(
        self, conn: _Conn, body: BodyStream, *, close_delimited: bool
    ) -> Headers | UpstreamError | None:
        """Feed the response body; its trailers, why it broke, or None if its consumer gave it up."""
        duplex = conn.duplex
        while True:
            event = conn.events.popleft() if conn.events else None
            if event is None:
                try:
                    data = await duplex.read(READ_SIZE)
                except StreamAborted as exc:
                    return UpstreamError(REMOTE_RESET, f"upstream connection reset mid-body: {exc}")
                if not data:
                    if close_delimited:
                        return []
                    return UpstreamError(
                        CONNECTION_TERMINATION, "the upstream closed the connection mid-body"
                    )
                try:
                    conn.events.extend(conn.parser.feed(data))
                except Http1Error as error:
                    conn.events.extend(error.events)
                    conn.events.append(_Broken(error))
            elif isinstance(event, Body):
                if body.done:  # the consumer gave the body up
                    return None
                await body.feed(event.data)
            elif isinstance(event, MessageEnd):
                return response_fields(event.trailers)
            else:
                reason = event.error.reason if isinstance(event, _Broken) else "unexpected data"
                return UpstreamError(PROTOCOL_ERROR, f"invalid response body: {reason}")


def _complete_body(events: deque[Event | _Broken]) -> tuple[bytes, Headers] | None:
    """The response body and trailers when ``events`` hold all of it (body chunks, then its end),
    taken from ``events``; None, leaving them untouched, when more is to come or something is wrong."""
    chunks: list[bytes] = []
    size = 0
    for event in events:
        if isinstance(event, MessageEnd):
            for _ in range(len(chunks) + 1):
                events.popleft()
            return b"".join(chunks), response_fields(event.trailers)
        if not isinstance(event, Body):
            return None
        chunks.append(event.data)
        size += len(event.data)
        if size > READ_SIZE:
            return None
    return None


def _task_failure(task: asyncio.Task[BaseException | None]) -> BaseException | None:
    """Why a finished body writer did not send the body whole (None if it did)."""
    if task.cancelled():
        return asyncio.CancelledError()
    return task.exception() or task.result()


def _raise_body_failure(writer: asyncio.Task[BaseException | None] | None) -> None:
    """If the request body broke (the client's side), that is the failure to report, not the upstream."""
    if writer is not None and writer.done():
        failure = _task_failure(writer)
        if isinstance(failure, BodyError):
            raise failure
