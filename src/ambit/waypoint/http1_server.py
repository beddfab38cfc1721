"""HTTP/1.1 toward a client: one connection's requests, in order, each handed to the waypoint's handler.

:func:`serve_http1` reads a request head, streams the request body into a :class:`BodyStream` while the
handler runs (it may forward the body as it arrives, or answer before reading it), writes the response
and, on a keep-alive connection, reads the next head. Pipelined requests are answered in order: the next
head is not read before the current response is written.

Framing is this hop's own: a response keeps its ``Content-Length`` when it has a consistent one;
otherwise it is chunked to an HTTP/1.1 client (trailers only to a client that sent ``TE: trailers``) and
ends with the connection to an HTTP/1.0 one. ``HEAD`` and 1xx/204/304 responses have no body. The
connection ends after a response when the client asked (``Connection: close``, HTTP/1.0 without
keep-alive), when the waypoint drains, when the request was not read to its end, or after a protocol
error (answered with its status: 400, 431, 505). An accepted Upgrade (101) joins the client's stream to
the upstream's byte for byte (WebSocket). An idle keep-alive connection ends after ``idle_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from ambit.net.drain import Drain
from ambit.net.duplex import Duplex, StreamAborted, relay
from ambit.net.tasks import spawn
from ambit.protocol.http1 import (
    Body,
    Event,
    Http1Error,
    MessageEnd,
    RequestHead,
    RequestParser,
    Upgraded,
    chunk,
    content_length,
    last_chunk,
    response_head,
)
from ambit.waypoint.exchange import (
    BodyError,
    BodyStream,
    Downstream,
    Headers,
    Request,
    RequestHandler,
    Response,
    forwardable,
)

_log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
# After the last response: how long the client has to close its side before the connection is reset.
# Reading (and dropping) what it still sends meanwhile keeps a reset from destroying the response.
LINGER_SECONDS = 2.0

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# RFC 3986 host (reg-name, IPv4, [IP-literal]) and an optional port: no userinfo, path or spaces.
_AUTHORITY = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")
# Fields this hop writes itself, or that must not come back in trailers.
_FRAMING = frozenset({b"content-length", b"host"})


# -- pure helpers: what a request head means, how a response is framed ----------------------------


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """What a request head says about the request, in the exchange model's terms."""

    scheme: bytes
    authority: bytes
    path: bytes
    headers: Headers  # lower-case, forwardable, without ``host`` and ``expect``
    upgrade: bytes | None  # the protocol of an Upgrade with ``Connection: upgrade`` (HTTP/1.1 only)
    has_body: bool  # Content-Length > 0 or Transfer-Encoding
    expect_continue: bool  # ``Expect: 100-continue`` from an HTTP/1.1 client
    te_trailers: bool  # the client accepts trailers in a chunked response


def lower_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return [(name.lower(), value) for name, value in headers]


def _tokens(headers: Headers, name: bytes) -> set[bytes]:
    out: set[bytes] = set()
    for key, value in headers:
        if key == name:
            out.update(token.strip().lower() for token in value.split(b","))
    out.discard(b"")
    return out


def parse_request_head(head: RequestHead) -> RequestTarget:
    """The request a head describes; :class:`Http1Error` (400/405/417) for one the waypoint refuses."""
    headers = lower_headers(head.headers)
    if head.method == b"CONNECT":
        raise Http1Error(405, "CONNECT is not proxied by the waypoint")
    hosts = [value.strip() for name, value in headers if name == b"host"]
    if len(hosts) > 1:
        raise Http1Error(400, "more than one Host header")
    target = head.target
    if target.startswith(b"/"):
        path = target
        authority = hosts[0] if hosts else b""
    elif target == b"*":
        if head.method != b"OPTIONS":
            raise Http1Error(400, "the asterisk target is only for OPTIONS")
        path = target
        authority = hosts[0] if hosts else b""
    else:
        scheme_part, sep, rest = target.partition(b"://")
        if not sep or scheme_part.lower() not in (b"http", b"https"):
            raise Http1Error(400, "invalid request target")
        # the scheme stays http: this connection is plain text inside the mesh's own mTLS
        slash = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        authority, path = rest[:slash], rest[slash:]
        if not path.startswith(b"/"):
            path = b"/" + path
    if not hosts and head.version == "1.1" and target.startswith((b"/", b"*")):
        raise Http1Error(400, "an HTTP/1.1 request without Host")
    if authority and _AUTHORITY.fullmatch(authority) is None:
        raise Http1Error(400, "invalid Host")
    if not authority and target != b"*" and not target.startswith(b"/"):
        raise Http1Error(400, "a request target without a host")

    expect = [value.strip().lower() for name, value in headers if name == b"expect"]
    expect_continue = False
    if expect:
        if expect != [b"100-continue"]:
            raise Http1Error(417, "only Expect: 100-continue is understood")
        expect_continue = head.version == "1.1"

    connection = _tokens(headers, b"connection")
    upgrade: bytes | None = None
    if head.upgrade and head.version == "1.1" and b"upgrade" in connection:
        upgrade = next((value.strip() for name, value in headers if name == b"upgrade"), None) or None

    has_body = any(name == b"transfer-encoding" for name, _ in headers) or any(
        name == b"content-length" and value.strip() != b"0" for name, value in headers
    )
    if upgrade is not None and has_body:
        raise Http1Error(400, "an Upgrade request with a body is not supported")

    te_trailers = b"trailers" in _tokens(headers, b"te")
    kept = [(name, value) for name, value in forwardable(headers) if name not in (b"host", b"expect")]
    return RequestTarget(b"http", authority, path, kept, upgrade, has_body, expect_continue, te_trailers)


@dataclass(frozen=True, slots=True)
class ResponsePlan:
    """How one response goes out on this connection."""

    head: bytes
    body: bool  # whether any body bytes are written
    length: int | None  # the Content-Length to hold the body to; None for chunked or close-delimited
    chunked: bool
    trailers: bool  # trailers go into the last chunk
    close: bool  # the connection ends after this response


def plan_response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    head_request: bool,
    version: str,
    keep_alive: bool,
    te_trailers: bool = False,
) -> ResponsePlan:
    """Framing and connection headers of a response to a client speaking ``version``.

    ``keep_alive`` false asks for ``Connection: close`` (the client's wish, a drain, an unread request
    body); a body with no usable length makes an HTTP/1.0 response close-delimited too.
    """
    length = content_length(headers)
    fields = [(name, value) for name, value in forwardable(headers) if name != b"content-length"]
    bodyless = status < 200 or status in (204, 304)
    body = not bodyless and not head_request
    chunked = False
    close = not keep_alive
    if status >= 200 and status != 204 and length is not None:
        fields.append((b"content-length", str(length).encode()))
    if body and length is None:
        if version == "1.1":
            chunked = True
            fields.append((b"transfer-encoding", b"chunked"))
        else:
            close = True
    if close:
        fields.append((b"connection", b"close"))
    elif version == "1.0":
        fields.append((b"connection", b"keep-alive"))
    return ResponsePlan(
        head=response_head(status, fields),
        body=body,
        length=length if body else None,
        chunked=chunked,
        trailers=chunked and te_trailers,
        close=close,
    )


def trailer_fields(trailers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """Trailers safe to send in a last chunk (no framing, routing or hop-by-hop fields)."""
    return [(name, value) for name, value in forwardable(trailers) if name not in _FRAMING]


def error_response(status: int, text: str) -> bytes:
    data = text.encode("utf-8", "replace") + b"\n"
    head = response_head(
        status,
        [
            (b"content-type", b"text/plain"),
            (b"content-length", str(len(data)).encode()),
            (b"connection", b"close"),
        ],
    )
    return head + data


# -- the connection --------------------------------------------------------------------------------


# What happens to the connection after an exchange: go on, close gracefully, reset, nothing more (it
# was relayed to its end), or answer a protocol error and close.
_KEEP = "keep"
_CLOSE = "close"
_ABORT = "abort"
_DONE = "done"
_Outcome = str | Http1Error


class _Reader:
    """The request parser over the client's stream: events one at a time, read as needed.

    A protocol error is held back until the events parsed before it are taken, so a good request
    pipelined ahead of a bad one is answered first.
    """

    __slots__ = ("_error", "_events", "_parser", "_stream", "eof")

    def __init__(self, stream: Duplex, initial: bytes) -> None:
        self._stream = stream
        self._parser = RequestParser()
        self._events: deque[Event] = deque()
        self._error: Http1Error | None = None
        self.eof = False
        if initial:
            self._feed(initial)

    def _feed(self, data: bytes) -> None:
        try:
            self._events.extend(self._parser.feed(data))
        except Http1Error as error:
            self._events.extend(error.events)
            self._error = error

    @property
    def pending(self) -> bool:
        return bool(self._events) or self._error is not None

    def peek(self) -> Event | None:
        return self._events[0] if self._events else None

    async def next(self) -> Event | None:
        """The next event; None at the client's EOF. Raises Http1Error, StreamAborted."""
        while not self._events:
            if self._error is not None:
                raise self._error
            if self.eof:
                return None
            data = await self._stream.read(READ_SIZE)
            if not data:
                self.eof = True
                continue
            if self._error is None:
                self._feed(data)
        return self._events.popleft()

    def take_upgraded(self) -> bytes:
        """Bytes parsed past an Upgrade request's head (the start of the new protocol)."""
        out = bytearray()
        while self._events:
            event = self._events.popleft()
            if isinstance(event, Upgraded):
                out += event.data
        return bytes(out)


class _Connection:
    __slots__ = (
        "_downstream",
        "_drain",
        "_handler",
        "_idle_bytes",
        "_idle_timeout",
        "_idle_timer",
        "_reader",
        "_stream",
    )

    def __init__(
        self,
        stream: Duplex,
        downstream: Downstream,
        handler: RequestHandler,
        *,
        initial: bytes,
        drain: Drain | None,
        idle_timeout: float,
    ) -> None:
        self._stream = stream
        self._downstream = downstream
        self._handler = handler
        self._reader = _Reader(stream, initial)
        self._drain = drain
        self._idle_timeout = idle_timeout
        self._idle_timer: asyncio.Timeout | None = None
        self._idle_bytes = 0

    @property
    def _draining(self) -> bool:
        return self._drain is not None and self._drain.draining

    async def run(self) -> None:
        watcher = spawn(self._watch_drain(), name="http1-drain-watch") if self._drain is not None else None
        try:
            while True:
                head = await self._next_head()
                if head is None:
                    return
                if not await self._exchange(head):
                    return
        finally:
            if watcher is not None:
                watcher.cancel()

    async def _watch_drain(self) -> None:
        assert self._drain is not None
        await self._drain.wait()
        self._end_idle_wait()

    def _end_idle_wait(self) -> None:
        """Drain began: a connection waiting for a head with no byte of it yet ends now."""
        timer = self._idle_timer
        if timer is not None and self._stream.bytes_in == self._idle_bytes:
            timer.reschedule(asyncio.get_running_loop().time())

    async def _next_head(self) -> RequestHead | None:
        """The next request's head; None when the connection is done (and closed)."""
        reader = self._reader
        try:
            if not reader.pending and self._draining:
                await self._close()
                return None
            self._idle_bytes = self._stream.bytes_in
            async with asyncio.timeout(self._idle_timeout) as timer:
                self._idle_timer = timer
                try:
                    event = await reader.next()
                finally:
                    self._idle_timer = None
        except TimeoutError:
            if self._stream.bytes_in != self._idle_bytes:
                await self._refuse(Http1Error(408, "the request head did not arrive in time"))
            else:
                await self._close()
            return None
        except Http1Error as error:
            await self._refuse(error)
            return None
        except StreamAborted:
            self._stream.abort()
            return None
        if event is None:  # the client closed between requests
            await self._close()
            return None
        if not isinstance(event, RequestHead):  # the parser emits a head before anything else
            await self._refuse(Http1Error(400, "malformed message"))
            return None
        return event

    async def _exchange(self, head: RequestHead) -> bool:
        """One request and its response; whether the connection goes on."""
        stream = self._stream
        try:
            target = parse_request_head(head)
        except Http1Error as error:
            await self._refuse(error)
            return False

        body_task: asyncio.Task[BaseException | None] | None = None
        if target.has_body or not isinstance(self._reader.peek(), MessageEnd):
            body = BodyStream()
            if target.expect_continue:
                try:
                    stream.write(_CONTINUE)
                except ConnectionError:
                    stream.abort()
                    return False
            body_task = spawn(self._read_body(body), name="http1-request-body")
        else:
            body = BodyStream.of()
            await self._reader.next()  # the MessageEnd already parsed with the head
        request = Request(
            method=head.method,
            scheme=target.scheme,
            authority=target.authority,
            path=target.path,
            headers=target.headers,
            body=body,
            version=head.version,
            upgrade=target.upgrade,
        )
        try:
            outcome = await self._respond(head, target, request, body_task)
        except BaseException:
            if body_task is not None:
                body_task.cancel()
            raise
        if body_task is not None:
            if not body_task.done():  # the request was not read to its end: the connection cannot go on
                body_task.cancel()  # and the stream has one reader: stop this one before closing
                await asyncio.wait([body_task])
                if outcome == _KEEP:
                    outcome = _CLOSE
            elif outcome == _KEEP and _body_failure(body_task) is not None:
                outcome = _CLOSE
        if isinstance(outcome, Http1Error):
            await self._refuse(outcome)
        elif outcome == _CLOSE:
            await self._close()
        elif outcome == _ABORT:
            stream.abort()
        return outcome == _KEEP

    async def _read_body(self, body: BodyStream) -> BaseException | None:
        """The request body from the stream into ``body``, as it arrives; why it failed, if it did."""
        failure: BaseException
        try:
            while True:
                event = await self._reader.next()
                if isinstance(event, Body):
                    if body.done:  # the consumer gave up on it
                        return BodyError("the request body was not read to its end")
                    await body.feed(event.data)
                elif isinstance(event, MessageEnd):
                    body.finish(lower_headers(event.trailers))
                    return None
                elif event is None:
                    failure = BodyError("the client closed the connection before the request body ended")
                    break
                else:
                    failure = Http1Error(400, "malformed message")
                    break
        except (Http1Error, StreamAborted) as error:
            failure = error
        body.fail(failure)
        return failure

    async def _respond(
        self,
        head: RequestHead,
        target: RequestTarget,
        request: Request,
        body_task: asyncio.Task[BaseException | None] | None,
    ) -> _Outcome:
        stream = self._stream
        try:
            response = await self._handler(request, self._downstream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure = _body_failure(body_task)
            if isinstance(failure, Http1Error):
                return failure
            if failure is not None or isinstance(exc, BodyError):
                return _ABORT  # the client broke its own request: nobody to answer
            _log.exception("the request handler failed")
            return Http1Error(500, "internal error")

        if response.upgraded is not None:
            return await self._switch(request, response)
        if not 200 <= response.status <= 999:  # a 1xx is no final answer; a 101 comes with a stream
            await _discard(response.body)
            return Http1Error(502, f"the upstream answered {response.status}")

        keep_alive = (
            head.keep_alive
            and not head.upgrade  # the parser has left HTTP behind: only a 101 could go on
            and not self._draining
            and request.body.done
        )
        try:
            plan = plan_response(
                response.status,
                response.headers,
                head_request=head.method == b"HEAD",
                version=head.version,
                keep_alive=keep_alive,
                te_trailers=target.te_trailers,
            )
        except Http1Error as error:
            await _discard(response.body)
            return Http1Error(502, f"an unsendable response: {error.reason}")
        try:
            stream.write(plan.head)
            complete = await self._write_body(plan, response.body) if plan.body else True
        except ConnectionError:
            await _discard(response.body)
            return _ABORT
        if not plan.body:
            await _discard(response.body)
        if not complete:
            return _ABORT  # a truncated body must not look complete: reset, never hang
        return _CLOSE if plan.close else _KEEP

    async def _write_body(self, plan: ResponsePlan, body: BodyStream) -> bool:
        """Whether the body went out whole; False if it broke or did not match its Content-Length."""
        stream = self._stream
        sent = 0
        try:
            async for data in body:
                sent += len(data)
                if plan.length is not None and sent > plan.length:
                    _abandon(body)
                    return False
                stream.write(chunk(data) if plan.chunked else data)
                await stream.drain()
        except BodyError:
            return False
        if plan.length is not None and sent != plan.length:
            return False
        if plan.chunked:
            stream.write(last_chunk(trailer_fields(body.trailers) if plan.trailers else ()))
        await stream.drain()
        return True

    async def _switch(self, request: Request, response: Response) -> _Outcome:
        """Write the 101 and relay both streams until both ends close."""
        upstream = response.upgraded
        assert upstream is not None
        stream = self._stream
        if response.status != 101 or request.upgrade is None:
            await _discard(response.body)
            upstream.abort()
            return Http1Error(502, "the upstream switched protocols unasked")
        fields = [(name, value) for name, value in forwardable(response.headers) if name != b"content-length"]
        fields += [(b"connection", b"upgrade"), (b"upgrade", request.upgrade)]
        try:
            stream.write(response_head(101, fields) + response.upgraded_head)
            early = self._reader.take_upgraded()
            if early:
                upstream.write(early)
        except (ConnectionError, Http1Error):
            upstream.abort()
            return _ABORT
        await relay(stream, upstream)
        return _DONE

    async def _refuse(self, error: Http1Error) -> None:
        """Answer a request the connection cannot go on from, then close."""
        if error.status >= 500:
            _log.debug("answering %d: %s", error.status, error.reason)
        try:
            self._stream.write(error_response(error.status, error.reason))
        except StreamAborted:
            self._stream.abort()
            return
        await self._close()

    async def _close(self) -> None:
        """Half-close, then let the client close its side (reading what it still sends), else reset."""
        stream = self._stream
        if stream.closed:
            return
        try:
            await stream.drain()
            if not stream.eof_out:
                stream.write_eof()
            async with asyncio.timeout(LINGER_SECONDS):
                while await stream.read(READ_SIZE):
                    pass
                if not stream.closed:
                    await stream.wait_closed()
        except (TimeoutError, StreamAborted, ConnectionError):
            pass
        if not stream.closed:
            stream.abort()


def _body_failure(task: asyncio.Task[BaseException | None] | None) -> BaseException | None:
    """Why the request body could not be read (None if it was, or still is being read)."""
    if task is None or not task.done() or task.cancelled():
        return None
    return task.result()


def _abandon(body: BodyStream) -> None:
    """Stop consuming a body: its producer wakes, sees ``body.done`` and stops (the HTTP/2 upstream
    resets its stream through ``on_abandon``)."""
    if not body.done:
        body.abandon()


async def _discard(body: BodyStream) -> None:
    """Done with a response body without sending it (HEAD, 204, 304, an error in its place): read it
    out when it is complete already, so whoever watches its end sees it (the router's telemetry and
    connection-pool slots), else abandon it."""
    if not body.done:
        body.abandon()
        return
    with contextlib.suppress(BodyError):
        async for _chunk in body:
            pass


async def serve_http1(
    stream: Duplex,
    downstream: Downstream,
    handler: RequestHandler,
    *,
    initial: bytes = b"",
    drain: Drain | None = None,
    idle_timeout: float = 300.0,
) -> None:
    """Serve one client connection until it ends (never raises but on cancellation, which resets it).

    ``initial``: bytes of the stream already read (e.g. while sniffing the protocol).
    """
    connection = _Connection(
        stream, downstream, handler, initial=initial, drain=drain, idle_timeout=idle_timeout
    )
    try:
        await connection.run()
    except asyncio.CancelledError:
        stream.abort()
        raise
    except Exception:
        _log.exception("HTTP/1.1 connection from %s failed", downstream.peer_ip)
        with contextlib.suppress(Exception):
            stream.abort()
