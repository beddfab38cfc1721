"""HTTP/1.1 for the waypoint, sans-IO: bytes in, events out; heads and chunks out as bytes.

Parsing is llhttp (Node's parser) through httptools, strict (no lenient flags: a request smuggled
with a bad ``Transfer-Encoding``, a bare LF or a duplicate ``Content-Length`` is an error, not a
guess). Around it this module adds what llhttp leaves to its user:

* limits, with the status the peer gets: the head (request line or status line plus headers) at
  most :data:`MAX_HEAD_BYTES` (Envoy's default ``max_request_headers_kb``: 60 KiB) and
  :data:`MAX_HEADERS` fields (Envoy's ``max_headers_count``: 100) — else 431; a malformed message —
  400; an HTTP version other than 1.0/1.1 — 505;
* events in order — :class:`RequestHead` / :class:`ResponseHead`, :class:`Body` (streamed as it
  arrives, never buffered whole), :class:`MessageEnd` (with chunked trailers), :class:`Upgraded` (the
  bytes after the head of an accepted Upgrade/CONNECT: from here on not HTTP, the caller relays them);
* pipelined messages in one feed come out one after the other;
* a response to HEAD has no body whatever its ``Content-Length`` says (the parser is told the
  request method, :meth:`ResponseParser.expect`).

Serialisation (:func:`request_head`, :func:`response_head`, :func:`chunk`, :func:`last_chunk`) writes
what the waypoint forwards: header names and values are checked for CR, LF and NUL so a value taken
from one side can never split a message on the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import httptools

MAX_HEAD_BYTES = 60 * 1024
MAX_HEADERS = 100
SUPPORTED_VERSIONS = frozenset({"1.0", "1.1"})

Headers = tuple[tuple[bytes, bytes], ...]

REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    417: "Expectation Failed",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


class Http1Error(Exception):
    """A message that cannot be accepted: ``status`` is what to answer (or why to close), ``reason`` why.

    Raised by a parser's ``feed``, ``events`` holds what that same ``feed`` completed before the error
    (a good request pipelined ahead of a bad one is still served, then the error answered).
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason
        self.events: list[Event] = []


@dataclass(frozen=True, slots=True)
class RequestHead:
    method: bytes
    target: bytes
    version: str
    headers: Headers
    keep_alive: bool
    upgrade: bool  # an Upgrade (e.g. websocket) or CONNECT request llhttp accepted as such


@dataclass(frozen=True, slots=True)
class ResponseHead:
    status: int
    reason: bytes
    version: str
    headers: Headers
    keep_alive: bool
    upgrade: bool


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class MessageEnd:
    trailers: Headers = ()


@dataclass(frozen=True, slots=True)
class Upgraded:
    """Bytes that followed the head of an upgraded message: the start of the new protocol's stream."""

    data: bytes


Event = RequestHead | ResponseHead | Body | MessageEnd | Upgraded


class _HeadResponseDone(Exception):
    """Raised from the callback that ends the head of a response to HEAD (it has no body)."""


class _Limit(Exception):
    def __init__(self, error: Http1Error) -> None:
        self.error = error


class _Parser:
    """The callback side shared by the request and response parsers."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._start: bytearray = bytearray()  # URL or status reason, which llhttp may deliver in pieces
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._in_head = True
        self._upgraded = False

    # -- httptools callbacks --

    def on_message_begin(self) -> None:
        self._start = bytearray()
        self._headers = []
        self._head_bytes = 0
        self._in_head = True

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            raise _Limit(Http1Error(431, f"message head is over {MAX_HEAD_BYTES} bytes"))

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        self._start += url

    def on_status(self, status: bytes) -> None:
        self._count(len(status))
        self._start += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        self._headers.append((name, value))
        if self._in_head and len(self._headers) > MAX_HEADERS:
            raise _Limit(Http1Error(431, f"more than {MAX_HEADERS} header fields"))

    def on_headers_complete(self) -> None:
        raise NotImplementedError

    def on_body(self, body: bytes) -> None:
        self._events.append(Body(bytes(body)))

    def on_message_complete(self) -> None:
        self._events.append(MessageEnd(tuple(self._headers) if not self._in_head else ()))

    def _version(self, version: str) -> str:
        if version not in SUPPORTED_VERSIONS:
            raise _Limit(Http1Error(505, f"HTTP/{version} is not supported"))
        return version

    def _head_done(self) -> Headers:
        headers = tuple(self._headers)
        self._headers = []  # what arrives after the body are trailers
        self._in_head = False
        return headers

    # -- feeding --

    def _feed(
        self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes
    ) -> list[Event]:
        try:
            return self._feed_parser(parser, data)
        except Http1Error as error:
            error.events, self._events = self._events, []
            raise

    def _feed_parser(
        self, parser: httptools.HttpRequestParser | httptools.HttpResponseParser, data: bytes
    ) -> list[Event]:
        if self._upgraded:
            return [Upgraded(bytes(data))] if data else []
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._upgraded = True
            offset = int(upgrade.args[0]) if upgrade.args else len(data)
            if offset < len(data):
                self._events.append(Upgraded(bytes(data[offset:])))
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, _Limit):
                raise cause.error from None
            if isinstance(cause, _HeadResponseDone):
                raise cause from None
            raise Http1Error(400, f"malformed message: {exc}") from None
        except httptools.HttpParserError as exc:
            raise Http1Error(400, f"malformed message: {exc}") from None
        except _Limit as limit:
            raise limit.error from None
        events, self._events = self._events, []
        return events


class RequestParser(_Parser):
    """The server side of a downstream connection: requests in."""

    def __init__(self) -> None:
        super().__init__()
        self._parser = httptools.HttpRequestParser(self)

    def on_headers_complete(self) -> None:
        p = self._parser
        self._events.append(
            RequestHead(
                method=p.get_method(),
                target=bytes(self._start),
                version=self._version(p.get_http_version()),
                headers=self._head_done(),
                keep_alive=p.should_keep_alive(),
                upgrade=p.should_upgrade(),
            )
        )

    def feed(self, data: bytes) -> list[Event]:
        """Parse ``data``; the events it completes. :class:`Http1Error`: answer its status, then close."""
        return self._feed(self._parser, data)


class ResponseParser(_Parser):
    """The client side of an upstream connection: responses in, one per request sent (no pipelining)."""

    def __init__(self) -> None:
        super().__init__()
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = False

    def expect(self, method: bytes) -> None:
        """Say which request the next response answers (a response to HEAD has no body)."""
        self._head_request = method.upper() == b"HEAD"

    def on_headers_complete(self) -> None:
        p = self._parser
        status = p.get_status_code()
        self._events.append(
            ResponseHead(
                status=status,
                reason=bytes(self._start),
                version=self._version(p.get_http_version()),
                headers=self._head_done(),
                keep_alive=p.should_keep_alive(),
                upgrade=p.should_upgrade(),
            )
        )
        if self._head_request and status >= 200:
            # llhttp cannot be told "no body": stop here and start a fresh parser for what follows.
            raise _HeadResponseDone

    def feed(self, data: bytes) -> list[Event]:
        try:
            return self._feed(self._parser, data)
        except _HeadResponseDone:
            pass
        # The head of a HEAD response ended inside ``data``; anything after it would be a response to
        # nothing (responses come one per request), so only an empty remainder is acceptable.
        self._head_request = False
        events, self._events = self._events, []
        self._parser = httptools.HttpResponseParser(self)
        end = _head_end(data)
        if end is not None and end < len(data):
            error = Http1Error(502, "the upstream sent bytes after the head of a response to HEAD")
            error.events = events
            raise error
        return [*events, MessageEnd()]


def _head_end(data: bytes) -> int | None:
    index = data.find(b"\r\n\r\n")
    return None if index < 0 else index + 4


def content_length(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The one length every ``content-length`` field (lower-case name) agrees on; None if absent or not.

    ``5, 5`` is 5 (RFC 9110 §8.6 lets a recipient take a repeated identical value); anything not all
    digits, or values that differ, give None: the caller frames the body another way, or refuses it.
    """
    length: int | None = None
    for name, value in headers:
        if name != b"content-length":
            continue
        for item in value.split(b","):
            text = item.strip()
            if not text.isdigit() or len(text) > 18:
                return None
            if length is not None and int(text) != length:
                return None
            length = int(text)
    return length


# -- serialisation ---------------------------------------------------------------------------------


def _check(value: bytes, what: str) -> bytes:
    if b"\r" in value or b"\n" in value or b"\0" in value:
        raise Http1Error(400, f"{what} contains CR, LF or NUL")
    return value


def _fields(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        if not name or b":" in name or b" " in name:
            raise Http1Error(400, f"invalid header name {name!r}")
        out += (
            _check(name, "a header name")
            + b": "
            + _check(value, f"header {name.decode('latin-1')}")
            + b"\r\n"
        )
    return bytes(out)


def request_head(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    """``METHOD target HTTP/1.1`` and the header fields; the caller sets framing headers."""
    if not method.isalpha() or not target or b" " in target:
        raise Http1Error(400, f"invalid request line {method!r} {target!r}")
    return (
        method + b" " + _check(target, "the request target") + b" HTTP/1.1\r\n" + _fields(headers) + b"\r\n"
    )


def response_head(status: int, headers: Sequence[tuple[bytes, bytes]], reason: bytes | None = None) -> bytes:
    """``HTTP/1.1 status reason`` and the header fields; the caller sets framing headers."""
    if not 100 <= status <= 999:
        raise Http1Error(502, f"invalid status {status}")
    phrase = reason if reason is not None else REASONS.get(status, "").encode("ascii")
    return b"HTTP/1.1 %d %s\r\n" % (status, _check(phrase, "the reason phrase")) + _fields(headers) + b"\r\n"


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data gives nothing: an empty chunk would end the body)."""
    return b"%x\r\n%s\r\n" % (len(data), data) if data else b""


def last_chunk(trailers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The end of a chunked body, with trailers (gRPC-Web and HTTP/1.1 trailers)."""
    return b"0\r\n" + _fields(trailers) + b"\r\n"
