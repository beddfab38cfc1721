"""The waypoint's HTTP/1.1 side end to end on loopback: curl → serve_http1 → Http1Upstream → an upstream.

The client is real ``curl`` (or a raw socket where curl cannot say it: request trailers, pipelining, a
malformed request, an Upgrade); the waypoint is ``serve_http1`` on accepted TCP connections with a
handler that forwards every request through ``Http1Upstream``; the upstream is a small asyncio server
below (on ``ambit.protocol.http1``) that counts its connections and reports what it received.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import time
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ambit.net.drain import Drain
from ambit.net.duplex import Duplex, TcpDuplex
from ambit.protocol.http1 import (
    Body,
    Event,
    Http1Error,
    MessageEnd,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Upgraded,
    chunk,
    last_chunk,
    response_head,
)
from ambit.waypoint.exchange import (
    BodyError,
    BodyStream,
    Downstream,
    Request,
    RequestHandler,
    Response,
    local_response,
)
from ambit.waypoint.http1_client import Http1Upstream
from ambit.waypoint.http1_server import serve_http1
from ambit.waypoint.upstream_errors import UpstreamError

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")

CLIENT = Downstream("spiffe://cluster.local/ns/default/sa/sleep", "127.0.0.1", "10.0.0.1:80")
MB = 1024 * 1024
SOCKET_BUFFER = 64 * 1024

# -- the upstream ----------------------------------------------------------------------------------


class _Events:
    """A request parser over an asyncio stream, one event at a time."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.parser = RequestParser()
        self.events: list[Event] = []

    async def next(self, size: int = 64 * 1024) -> Event | None:
        while not self.events:
            data = await self.reader.read(size)
            if not data:
                return None
            self.events += self.parser.feed(data)
        return self.events.pop(0)


@dataclass
class Upstream:
    """An HTTP/1.1 server with a few behaviours, chosen by path; it reports what it was sent."""

    accepts: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)
    answer_once: bool = False  # answer one request per connection, then drop the next unanswered
    server: asyncio.Server | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # small kernel buffers, so that an upstream holding back is felt by the waypoint at once (a
        # loopback socket could otherwise absorb megabytes, and no bound inside the process be tested)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        listener.bind(("127.0.0.1", 0))
        self.server = await asyncio.start_server(self._accept, sock=listener)

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.add(writer)
        self.accepts += 1
        try:
            await self._serve(_Events(reader), writer)
        except (ConnectionError, Http1Error):
            pass
        finally:
            self.writers.discard(writer)
            writer.transport.abort()
            self.tasks.discard(task)

    async def _serve(self, events: _Events, writer: asyncio.StreamWriter) -> None:
        answered = 0
        while True:
            head = await events.next()
            if head is None:
                return
            assert isinstance(head, RequestHead)
            if self.answer_once and answered:
                return  # drop the connection as an upstream closing an idle one would, racing a request
            answered += 1
            headers = [(n.decode().lower(), v.decode()) for n, v in head.headers]
            record: dict[str, object] = {"method": head.method.decode(), "path": head.target.decode()}
            record["headers"] = headers
            self.requests.append(record)
            path = head.target.split(b"?")[0]
            if path == b"/ws":
                await self._websocket(events, writer)
                return
            if path == b"/reject":
                writer.write(response_head(413, [(b"content-length", b"0"), (b"connection", b"close")]))
                await writer.drain()
                writer.write_eof()  # a lingering close: read (and drop) the rest until the peer closes
                while await events.reader.read(64 * 1024):
                    pass
                return
            digest, size, trailers = await self._body(events, slow=path == b"/slow-upload")
            record.update(sha256=digest, size=size, trailers=trailers)
            if path == b"/broken":
                writer.write(response_head(200, [(b"content-length", b"1000000")]) + b"x" * 1000)
                await writer.drain()
                writer.transport.close()  # mid-body
                return
            if path == b"/garbage":
                writer.write(b"HTTP/1.1 2OO OK\r\n\r\n")
                await writer.drain()
                return
            if path == b"/continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n")
            if path == b"/chunked":
                writer.write(response_head(200, [(b"transfer-encoding", b"chunked")]))
                for part in (b"alpha-", b"beta-", b"gamma"):
                    writer.write(chunk(part))
                    await writer.drain()
                writer.write(last_chunk([(b"x-checksum", b"abc")]))
                await writer.drain()
                continue
            data = json.dumps(record).encode()
            fields = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
            writer.write(response_head(200, fields) + (b"" if head.method == b"HEAD" else data))
            await writer.drain()

    @staticmethod
    async def _body(events: _Events, *, slow: bool) -> tuple[str, int, list[list[str]]]:
        digest = hashlib.sha256()
        size = 0
        while True:
            event = await events.next(16 * 1024 if slow else 64 * 1024)
            if isinstance(event, Body):
                if slow and size == 0:
                    await asyncio.sleep(0.3)  # let everything in between fill up to its limits
                digest.update(event.data)
                size += len(event.data)
            elif isinstance(event, MessageEnd):
                return digest.hexdigest(), size, [[n.decode().lower(), v.decode()] for n, v in event.trailers]
            else:
                raise ConnectionError(f"request ended early: {event!r}")

    @staticmethod
    async def _websocket(events: _Events, writer: asyncio.StreamWriter) -> None:
        end = await events.next()
        assert isinstance(end, MessageEnd)
        writer.write(
            response_head(101, [(b"connection", b"Upgrade"), (b"upgrade", b"websocket")])
            + b"hello-from-upstream;"
        )
        while True:  # echo: first what the parser already holds, then the stream
            if events.events:
                event = events.events.pop(0)
                assert isinstance(event, Upgraded)
                data = event.data
            else:
                data = await events.reader.read(64 * 1024)
            if not data:
                writer.write_eof()
                await writer.drain()
                return
            writer.write(data)
            await writer.drain()


# -- the waypoint ----------------------------------------------------------------------------------


class Waypoint:
    """``serve_http1`` on a loopback listener, forwarding through one ``Http1Upstream``."""

    def __init__(
        self,
        upstream_port: int,
        *,
        handler: RequestHandler | None = None,
        idle_timeout: float = 30.0,
        initial: bytes = b"",
        client: Http1Upstream | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.client = client or Http1Upstream()
        self.initial = initial
        self.drain = Drain()
        self.idle_timeout = idle_timeout
        self.handler = handler or self.forward
        self.accepts = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def connect(self) -> Duplex:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", self.upstream_port))
        except OSError:
            sock.close()
            raise
        _, duplex = await loop.create_connection(TcpDuplex, sock=sock)
        return duplex

    async def forward(self, request: Request, downstream: Downstream) -> Response:
        try:
            return await self.client.send(("upstream", self.upstream_port), self.connect, request)
        except UpstreamError as error:
            return local_response(503, f"upstream failed: {error}", flags=error.flags)

    async def start(self) -> None:
        waypoint = self

        class Accepted(TcpDuplex):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                waypoint.accepts += 1
                task = asyncio.ensure_future(
                    serve_http1(
                        self,
                        CLIENT,
                        waypoint.handler,
                        initial=waypoint.initial,
                        drain=waypoint.drain,
                        idle_timeout=waypoint.idle_timeout,
                    )
                )
                waypoint.tasks.add(task)
                task.add_done_callback(waypoint.tasks.discard)

        self.server = await asyncio.get_running_loop().create_server(Accepted, "127.0.0.1", 0)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def wait_served(self) -> None:
        """Every client connection has been served to its end."""
        async with asyncio.timeout(5):
            while self.tasks:
                await asyncio.wait(list(self.tasks))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()
        await self.server.wait_closed()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def waypoint(upstream: Upstream) -> AsyncIterator[Waypoint]:
    proxy = Waypoint(upstream.port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


# -- clients ---------------------------------------------------------------------------------------


@dataclass
class Curl:
    rc: int
    out: bytes
    err: str


async def curl(*args: str, max_time: float = 10.0) -> Curl:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "-sS",
        "--max-time",
        str(max_time),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return Curl(proc.returncode, out, err.decode())


@dataclass
class Reply:
    head: ResponseHead
    body: bytes
    trailers: tuple[tuple[bytes, bytes], ...]

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.head.headers if n.lower() == name), None)


class Raw:
    """A raw TCP client that speaks exactly the bytes it is given."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = ResponseParser()
        self.events: list[Event] = []

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, method: bytes = b"GET") -> Reply:
        self.parser.expect(method)
        head: ResponseHead | None = None
        body = bytearray()
        async with asyncio.timeout(5):
            while True:
                while self.events:
                    event = self.events.pop(0)
                    if isinstance(event, ResponseHead):
                        head = event
                    elif isinstance(event, Body):
                        body += event.data
                    elif isinstance(event, MessageEnd):
                        assert head is not None
                        return Reply(head, bytes(body), event.trailers)
                data = await self.reader.read(64 * 1024)
                if not data:
                    assert head is not None, "the connection ended before a response"
                    return Reply(head, bytes(body), ())  # close-delimited
                self.events += self.parser.feed(data)

    async def read_to_eof(self) -> bytes:
        async with asyncio.timeout(5):
            return await self.reader.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


@contextlib.asynccontextmanager
async def raw(port: int) -> AsyncIterator[Raw]:
    client = await Raw.open(port)
    try:
        yield client
    finally:
        await client.close()


# -- tests -----------------------------------------------------------------------------------------


async def test_keep_alive_reuses_one_connection_each_side(
    waypoint: Waypoint, upstream: Upstream, tmp_path: Path
) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    result = await curl(
        "--http1.1",
        "-w",
        "%{http_code} %{num_connects}\n",
        "-o",
        str(first),
        f"{waypoint.url}/echo/one?x=1",
        "-o",
        str(second),
        f"{waypoint.url}/echo/two",
    )
    assert result.rc == 0, result.err
    assert result.out.decode().split("\n")[:2] == ["200 1", "200 0"]  # curl reused its connection
    one, two = json.loads(first.read_bytes()), json.loads(second.read_bytes())
    assert (one["path"], two["path"]) == ("/echo/one?x=1", "/echo/two")
    assert ["host", f"127.0.0.1:{waypoint.port}"] in one["headers"]
    assert (waypoint.accepts, upstream.accepts) == (1, 1), "one connection on each side for both requests"


async def test_connection_close_from_the_client_is_honoured(waypoint: Waypoint) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"GET /echo HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n")
        reply = await client.response()
        assert reply.head.status == 200 and reply.header(b"connection") == b"close"
        assert await client.read_to_eof() == b""
    await waypoint.wait_served()


async def test_a_5mb_post_streams_through_with_bounded_memory(
    waypoint: Waypoint, upstream: Upstream, tmp_path: Path
) -> None:
    peak, result, payload = await _upload(waypoint, tmp_path)
    assert result.rc == 0, result.err
    received = json.loads(result.out)
    assert (received["size"], received["sha256"]) == (len(payload), hashlib.sha256(payload).hexdigest())
    names = [name for name, _ in received["headers"]]
    assert "expect" not in names and ["content-length", str(5 * MB)] in received["headers"]
    # 5 MB went through while the upstream held back; what the process buffered stayed far below it
    # (the client stream's read buffer ≤ 1 MiB, the BodyStream ≤ 256 KiB, a few chunks in flight)
    assert peak < 4 * MB, f"peak traced memory {peak / MB:.1f} MiB"


async def test_control_a_handler_that_buffers_the_body_breaks_the_memory_bound(
    upstream: Upstream, tmp_path: Path
) -> None:
    """The bound above is a real measurement: a handler that reads the whole body first exceeds it."""

    async def buffering(request: Request, downstream: Downstream) -> Response:
        data = await request.body.read_all(16 * MB)
        request.body = BodyStream.of(data)
        return await proxy.forward(request, downstream)

    proxy = Waypoint(upstream.port, handler=buffering)
    await proxy.start()
    try:
        peak, result, payload = await _upload(proxy, tmp_path)
    finally:
        await proxy.close()
    assert result.rc == 0, result.err
    assert json.loads(result.out)["size"] == len(payload)
    assert peak >= 5 * MB, "buffering the body must show in the measurement the bound relies on"


async def _upload(waypoint: Waypoint, tmp_path: Path) -> tuple[int, Curl, bytes]:
    payload = os.urandom(5 * MB)
    source = tmp_path / "payload"
    source.write_bytes(payload)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = await curl("--http1.1", "--data-binary", f"@{source}", f"{waypoint.url}/slow-upload")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, result, payload


async def test_chunked_request_with_trailers_reaches_the_upstream(
    waypoint: Waypoint, upstream: Upstream
) -> None:
    async with raw(waypoint.port) as client:
        client.send(
            b"POST /echo HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk(b"hello ")
            + chunk(b"world")
            + last_chunk([(b"X-Req-Sum", b"42")])
        )
        reply = await client.response()
    assert reply.head.status == 200
    received = json.loads(reply.body)
    assert received["size"] == 11 and received["sha256"] == hashlib.sha256(b"hello world").hexdigest()
    assert received["trailers"] == [["x-req-sum", "42"]]
    assert ["transfer-encoding", "chunked"] in received["headers"]


async def test_chunked_response_trailers_only_to_a_client_that_accepts_them(
    waypoint: Waypoint, tmp_path: Path
) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"GET /chunked HTTP/1.1\r\nHost: svc\r\nTE: trailers\r\n\r\n")
        with_te = await client.response()
        client.send(b"GET /chunked HTTP/1.1\r\nHost: svc\r\n\r\n")
        without_te = await client.response()
    assert with_te.body == without_te.body == b"alpha-beta-gamma"
    assert with_te.header(b"transfer-encoding") == b"chunked"
    assert with_te.trailers == ((b"x-checksum", b"abc"),)
    assert without_te.trailers == ()
    # and curl reads the chunked body and its trailer
    headers = tmp_path / "headers"
    result = await curl("--http1.1", "-H", "TE: trailers", "-D", str(headers), f"{waypoint.url}/chunked")
    assert result.rc == 0, result.err
    assert result.out == b"alpha-beta-gamma"
    assert b"x-checksum: abc" in headers.read_bytes()


async def test_head_has_no_body_and_the_connection_goes_on(waypoint: Waypoint) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"HEAD /echo HTTP/1.1\r\nHost: svc\r\n\r\nGET /echo/after HTTP/1.1\r\nHost: svc\r\n\r\n")
        head = await client.response(b"HEAD")
        after = await client.response()
    assert head.head.status == 200 and head.body == b""
    assert head.header(b"content-length") is not None  # the length a GET would have
    assert json.loads(after.body)["path"] == "/echo/after", "no stray body bytes between the two"
    result = await curl("--http1.1", "-I", f"{waypoint.url}/echo")
    assert result.rc == 0, result.err
    assert result.out.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length:" in result.out


async def test_an_http10_client(waypoint: Waypoint, upstream: Upstream, tmp_path: Path) -> None:
    headers = tmp_path / "headers"
    result = await curl("--http1.0", "-D", str(headers), f"{waypoint.url}/chunked")
    assert result.rc == 0, result.err
    assert result.out == b"alpha-beta-gamma", "a chunked upstream body ends with the connection for 1.0"
    seen = headers.read_bytes().lower()
    assert b"connection: close" in seen and b"transfer-encoding" not in seen
    # HTTP/1.0 with keep-alive and a length keeps the connection
    keep = await curl(
        "--http1.0",
        "-H",
        "Connection: keep-alive",
        "-w",
        "%{num_connects}\n",
        "-o",
        "/dev/null",
        f"{waypoint.url}/echo/a",
        "-o",
        "/dev/null",
        f"{waypoint.url}/echo/b",
    )
    assert keep.rc == 0, keep.err
    assert keep.out.decode().split() == ["1", "0"]


async def test_a_head_over_60k_is_431(waypoint: Waypoint, upstream: Upstream) -> None:
    result = await curl(
        "--http1.1", "-H", "X-Big: " + "a" * 70 * 1024, "-w", "%{http_code}", "-o", "/dev/null", waypoint.url
    )
    assert result.rc == 0, result.err
    assert result.out == b"431"
    assert upstream.accepts == 0


async def test_a_malformed_request_is_400_and_closed(waypoint: Waypoint, upstream: Upstream) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"GET / HTTP/1.1\r\nHost : svc\r\n\r\n")
        reply = await client.read_to_eof()
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"connection: close\r\n" in reply
    assert upstream.accepts == 0
    await waypoint.wait_served()


async def test_a_good_request_pipelined_before_a_bad_one_is_answered_first(waypoint: Waypoint) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"GET /echo/a HTTP/1.1\r\nHost: svc\r\n\r\nGET /b HTTP/1.1\r\nHost : svc\r\n\r\n")
        first = await client.response()
        second = await client.response()
        assert await client.read_to_eof() == b""
    assert json.loads(first.body)["path"] == "/echo/a"
    assert second.head.status == 400 and second.header(b"connection") == b"close"


async def test_websocket_upgrade_relays_both_ways(waypoint: Waypoint, upstream: Upstream) -> None:
    async with raw(waypoint.port) as client:
        client.send(
            b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\nearly;"
        )
        async with asyncio.timeout(5):
            head = await client.reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
            assert b"connection: upgrade\r\n" in head and b"upgrade: websocket\r\n" in head
            assert await client.reader.readexactly(len(b"hello-from-upstream;early;")) == (
                b"hello-from-upstream;early;"
            )
            for message in (b"ping", b"\x81\x05hello", bytes(range(256)) * 64):
                client.send(message)
                assert await client.reader.readexactly(len(message)) == message
            client.writer.write_eof()
            assert await client.reader.read() == b"", "the upstream's close reaches the client"
    sent = upstream.requests[0]["headers"]
    assert isinstance(sent, list)
    assert ("upgrade", "websocket") in sent and ("connection", "upgrade") in sent
    assert ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==") in sent
    await waypoint.wait_served()


async def test_an_upstream_that_closes_mid_body_closes_the_client(waypoint: Waypoint) -> None:
    started = time.monotonic()
    result = await curl("--http1.1", "-o", "/dev/null", f"{waypoint.url}/broken", max_time=8)
    assert result.rc in (18, 56), f"curl must see a partial or reset transfer, not success: {result}"
    assert time.monotonic() - started < 5, "the client was not left hanging"
    await waypoint.wait_served()


async def test_an_early_answer_before_the_body_is_sent(waypoint: Waypoint, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(b"z" * (2 * MB))
    result = await curl(
        "--http1.1", "--data-binary", f"@{source}", "-w", "%{http_code}", f"{waypoint.url}/reject"
    )
    assert result.out.endswith(b"413"), result


async def test_drain_asks_for_close_and_ends_idle_connections(waypoint: Waypoint) -> None:
    async with raw(waypoint.port) as busy, raw(waypoint.port) as idle:
        for client in (busy, idle):
            client.send(b"GET /echo HTTP/1.1\r\nHost: svc\r\n\r\n")
            assert (await client.response()).header(b"connection") is None
        busy.send(b"GET /echo HTTP/1.1\r\nHost: svc\r\n")  # a head on its way when the drain begins
        await asyncio.sleep(0.05)
        waypoint.drain.start(30)
        assert await idle.read_to_eof() == b"", "the idle connection ends without a response"
        busy.send(b"\r\n")
        last = await busy.response()
        assert last.head.status == 200 and last.header(b"connection") == b"close"
        assert await busy.read_to_eof() == b""
    await waypoint.wait_served()


async def test_an_idle_connection_ends_after_the_idle_timeout(upstream: Upstream) -> None:
    proxy = Waypoint(upstream.port, idle_timeout=0.2)
    await proxy.start()
    try:
        async with raw(proxy.port) as client:
            client.send(b"GET /echo HTTP/1.1\r\nHost: svc\r\n\r\n")
            assert (await client.response()).head.status == 200
            assert await client.read_to_eof() == b""
        await proxy.wait_served()
    finally:
        await proxy.close()


async def test_a_reused_connection_closed_by_the_upstream_is_retried_once_without_a_body(
    waypoint: Waypoint, upstream: Upstream
) -> None:
    upstream.answer_once = True
    async with raw(waypoint.port) as client:
        for path in (b"/echo/1", b"/echo/2"):
            client.send(b"GET " + path + b" HTTP/1.1\r\nHost: svc\r\n\r\n")
            reply = await client.response()
            assert reply.head.status == 200 and json.loads(reply.body)["path"] == path.decode()
        assert upstream.accepts == 2, "the second GET went out again on a new connection"
        # with a body it cannot be replayed: the failure is the answer
        client.send(b"POST /echo HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc")
        failed = await client.response()
    assert failed.head.status == 503 and b"idle connection" in failed.body


async def test_an_unreachable_upstream_is_503_uf() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    proxy = Waypoint(port)
    await proxy.start()
    try:
        result = await curl("--http1.1", "-w", "\n%{http_code}", f"{proxy.url}/echo")
    finally:
        await proxy.close()
    assert result.rc == 0 and result.out.endswith(b"\n503"), result
    assert b"upstream connect failed" in result.out


async def test_initial_bytes_are_the_start_of_the_first_request(upstream: Upstream) -> None:
    proxy = Waypoint(upstream.port, initial=b"GET /echo/sniffed HTTP/1.1\r\nHo")
    await proxy.start()
    try:
        async with raw(proxy.port) as client:
            client.send(b"st: svc\r\n\r\n")
            reply = await client.response()
    finally:
        await proxy.close()
    assert json.loads(reply.body)["path"] == "/echo/sniffed"


# -- the upstream client on its own ----------------------------------------------------------------


def h2_style(method: bytes, path: bytes, body: BodyStream, headers: list[tuple[bytes, bytes]]) -> Request:
    return Request(method, b"http", b"svc.ns:80", path, headers, body, version="2")


async def test_a_body_of_unknown_length_goes_chunked_with_its_trailers(upstream: Upstream) -> None:
    proxy = Waypoint(upstream.port)
    body = BodyStream()
    try:
        sending = asyncio.ensure_future(
            proxy.client.send(
                "k",
                proxy.connect,
                h2_style(
                    b"POST", b"/echo", body, [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"te", b"trailers")]
                ),
            )
        )
        for part in (b"one ", b"two ", b"three"):
            await body.feed(part)
            await asyncio.sleep(0.01)  # the body arrives over time, as HTTP/2 DATA frames do
        body.finish([(b"grpc-status", b"0")])
        response = await sending
        received = json.loads(await response.body.read_all(MB))
    finally:
        await proxy.client.close()
    assert received["size"] == 13 and received["trailers"] == [["grpc-status", "0"]]
    headers = received["headers"]
    assert ["transfer-encoding", "chunked"] in headers and ["host", "svc.ns:80"] in headers
    assert ["cookie", "a=1; b=2"] in headers and ["connection", "te"] in headers


async def test_the_pool_keeps_at_most_its_limit_and_expires_idle_connections(upstream: Upstream) -> None:
    client = Http1Upstream(max_idle_per_key=1, idle_timeout=0.2)
    proxy = Waypoint(upstream.port, client=client)
    try:
        responses = await asyncio.gather(
            *(
                client.send("k", proxy.connect, h2_style(b"GET", b"/echo", BodyStream.of(), []))
                for _ in range(2)
            )
        )
        for response in responses:
            assert json.loads(await response.body.read_all(MB))["path"] == "/echo"
        await asyncio.sleep(0)  # the response tasks hand their connections back
        assert upstream.accepts == 2 and client.idle_count("k") == 1
        reply = await client.send("k", proxy.connect, h2_style(b"GET", b"/echo/again", BodyStream.of(), []))
        await reply.body.read_all(MB)
        await asyncio.sleep(0)
        assert upstream.accepts == 2, "the idle connection was reused"
        for _ in range(100):  # idle_timeout closes it, and the upstream sees it go
            if not client.idle_count() and not upstream.tasks:
                break
            await asyncio.sleep(0.05)
        assert client.idle_count() == 0 and not upstream.tasks
    finally:
        await client.close()


async def test_a_request_whose_body_already_failed_is_not_sent_as_an_empty_one(upstream: Upstream) -> None:
    client = Http1Upstream()
    body = BodyStream()
    body.fail(ConnectionResetError("the client went away"))
    proxy = Waypoint(upstream.port, client=client)
    try:
        with pytest.raises(BodyError):
            await client.send("k", proxy.connect, h2_style(b"POST", b"/echo", body, []))
    finally:
        await client.close()
    assert upstream.accepts == 0


async def test_interim_responses_are_skipped_and_a_malformed_one_is_503_upe(waypoint: Waypoint) -> None:
    async with raw(waypoint.port) as client:
        client.send(b"GET /continue HTTP/1.1\r\nHost: svc\r\n\r\n")
        reply = await client.response()
        assert reply.head.status == 200 and json.loads(reply.body)["path"] == "/continue"
        client.send(b"GET /garbage HTTP/1.1\r\nHost: svc\r\n\r\n")
        broken = await client.response()
    assert broken.head.status == 503 and b"invalid response" in broken.body
