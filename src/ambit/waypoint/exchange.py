"""One HTTP exchange as the waypoint sees it, whatever HTTP version either side speaks.

The frontends (``http1_server``, ``h2_server``) turn what a client sent into a :class:`Request` and
hand it to a :data:`RequestHandler` (the waypoint's router and policy); the upstream clients
(``http1_client``, ``h2_client``) send a :class:`Request` to an endpoint and return a
:class:`Response`. Because both sides meet here, HTTP/1.1 and HTTP/2 convert either way.

Headers are ``(name, value)`` bytes pairs, names lower-case, with no pseudo-headers (``:method`` and
friends are fields of :class:`Request`) and no connection-specific headers (``connection``,
``keep-alive``, ``proxy-connection``, ``transfer-encoding``, ``upgrade``, ``te`` other than
``trailers``): each side writes its own. Bodies are streamed, never buffered whole: a
:class:`BodyStream` holds at most ``limit`` bytes before its producer waits.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ambit.net.duplex import Duplex

Headers = list[tuple[bytes, bytes]]

# Headers that belong to one hop (RFC 9110 §7.6.1 and RFC 9113 §8.2.2); never forwarded as they are.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"transfer-encoding",
        b"upgrade",
        b"te",
        b"trailer",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)

DEFAULT_BODY_BUFFER = 256 * 1024


class BodyError(ConnectionError):
    """The body could not be read to its end (the peer reset or broke the stream)."""


class BodyStream:
    """A message body in flight: chunks, then trailers (possibly none), or an error.

    The producer calls :meth:`feed` (waits while more than ``limit`` bytes are unread), then
    :meth:`finish` or :meth:`fail`; the consumer iterates (``async for chunk in body``) and reads
    :attr:`trailers` after the end. One producer, one consumer.

    A consumer that will read no more (its client reset or went away) calls :meth:`abandon`; the
    producer learns it through :meth:`on_abandon` (and :attr:`abandoned`) and stops its source.
    """

    __slots__ = (
        "_abandoned",
        "_buffered",
        "_chunks",
        "_done",
        "_error",
        "_limit",
        "_on_abandon",
        "_readable",
        "_writable",
        "received",
        "trailers",
    )

    def __init__(self, limit: int = DEFAULT_BODY_BUFFER) -> None:
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._limit = limit
        self._done = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.trailers: Headers = []
        self.received = 0  # bytes fed so far (request/response size metrics)
        self._abandoned = False
        self._on_abandon: list[Callable[[], None]] | None = None

    @classmethod
    def of(cls, data: bytes = b"", trailers: Sequence[tuple[bytes, bytes]] = ()) -> BodyStream:
        """A body that is complete already (an error page, an empty body)."""
        body = cls()
        if data:
            body._chunks.append(data)
            body._buffered = len(data)
            body.received = len(data)
        body.finish(trailers)
        return body

    @property
    def done(self) -> bool:
        """The producer has finished or failed."""
        return self._done

    @property
    def abandoned(self) -> bool:
        """The consumer called :meth:`abandon`: nothing fed from now on will be read."""
        return self._abandoned

    def abandon(self) -> None:
        """The consumer will read no more: drop what is buffered, wake a producer waiting in
        :meth:`feed` (later ``feed``/``finish``/``fail`` calls do nothing), and run the
        :meth:`on_abandon` callbacks so the producer can stop (reset its stream, close its connection).
        """
        if self._abandoned:
            return
        self._abandoned = True
        self._chunks.clear()
        self._buffered = 0
        if not self._done:
            self._done = True
            self._error = BodyError("body abandoned by its reader")
        self._readable.set()
        self._writable.set()
        callbacks, self._on_abandon = self._on_abandon, None
        for callback in callbacks or ():
            callback()

    def on_abandon(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once if the consumer abandons this body (now, if it has already)."""
        if self._abandoned:
            callback()
        elif self._on_abandon is None:
            self._on_abandon = [callback]
        else:
            self._on_abandon.append(callback)

    async def feed(self, data: bytes) -> None:
        if self._abandoned:
            return
        if self._done:
            raise RuntimeError("body already finished")
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        self.received += len(data)
        self._readable.set()
        if self._buffered > self._limit:
            self._writable.clear()
            await self._writable.wait()

    def finish(self, trailers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        if self._done:
            return
        self.trailers = list(trailers)
        self._done = True
        self._readable.set()

    def fail(self, exc: BaseException) -> None:
        if self._done:
            return
        self._error = exc
        self._done = True
        self._readable.set()
        self._writable.set()

    def __aiter__(self) -> BodyStream:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                self._buffered -= len(data)
                if self._buffered <= self._limit:
                    self._writable.set()
                return data
            if self._done:
                if self._error is not None:
                    raise BodyError(str(self._error) or type(self._error).__name__) from self._error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()

    async def read_all(self, max_bytes: int) -> bytes:
        """The whole body (tests and small control messages); BodyError past ``max_bytes``."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > max_bytes:
                raise BodyError(f"body larger than {max_bytes} bytes")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(slots=True)
class Request:
    """A request as received, or as it will be sent upstream."""

    method: bytes
    scheme: bytes  # b"http" (the mesh carries TLS itself; an app's own TLS is opaque TCP)
    authority: bytes  # ``Host`` / ``:authority``
    path: bytes  # origin-form (``/p?q``); ``*`` for OPTIONS *
    headers: Headers
    body: BodyStream
    version: str = "1.1"  # what the client spoke: "1.0", "1.1" or "2"
    # an HTTP/1.1 Upgrade (e.g. websocket): the protocol asked for; only HTTP/1.1 upstreams carry it
    upgrade: bytes | None = None

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Response:
    status: int
    headers: Headers
    body: BodyStream
    # after a 101 to an Upgrade: the upstream byte stream, to be joined with the client's
    upgraded: Duplex | None = None
    # bytes the upstream sent after its 101 head (the start of the upgraded protocol)
    upgraded_head: bytes = b""
    # what went wrong when the waypoint answered itself (e.g. "UF", "NR", "RBAC"); "-" otherwise
    flags: str = "-"
    details: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Downstream:
    """Who sent the request over which tunnel: what the waypoint's policy and telemetry need."""

    peer_identity: str  # the client's SPIFFE id (``spiffe://td/ns/N/sa/S``), from the HBONE mTLS
    peer_ip: str  # the client's IP (the HBONE peer: the client pod, whose ztunnel used its IP)
    target: str  # the CONNECT authority: the original ``VIP:port`` or ``podIP:port``


RequestHandler = Callable[[Request, Downstream], Awaitable[Response]]


def local_response(status: int, text: str, *, flags: str = "-", details: str = "") -> Response:
    """A response the waypoint makes itself (403 from policy, 503 with no healthy upstream, ...)."""
    data = text.encode() if text else b""
    headers: Headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(data)).encode())]
    return Response(status, headers, BodyStream.of(data), flags=flags, details=details)


def forwardable(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    """``headers`` without the hop-by-hop ones, and without any named in ``Connection``.

    ``te: trailers`` survives (gRPC needs it end to end over HTTP/2).
    """
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(token.strip().lower() for token in value.split(b","))
    out: Headers = []
    for name, value in headers:
        if name == b"te" and value.strip().lower() == b"trailers":
            out.append((name, b"trailers"))
        elif name not in HOP_BY_HOP and name not in named:
            out.append((name, value))
    return out
