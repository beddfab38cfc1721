"""The waypoint's HTTP/2 server and upstream pool, end to end over loopback with real clients.

curl (``--http2-prior-knowledge``) and grpcio talk to ``serve_h2`` behind a real TCP listener; its
handler forwards through ``H2Upstream`` to a real upstream: our own ``serve_h2`` with an echo /
generator handler (for curl) or a grpcio server (for gRPC). The gRPC server and clients run in
threads (grpcio's own I/O), so they behave the same under asyncio and uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes

from ambit.net.drain import Drain
from ambit.net.duplex import Duplex, TcpDuplex
from ambit.protocol import h2tuning
from ambit.waypoint.exchange import BodyError, BodyStream, Downstream, Request, RequestHandler, Response
from ambit.waypoint.h2_client import H2Upstream
from ambit.waypoint.h2_server import serve_h2
from ambit.waypoint.upstream_errors import UpstreamError

DOWNSTREAM = Downstream("spiffe://cluster.local/ns/test/sa/client", "127.0.0.1", "10.0.0.1:80")
MiB = 1024 * 1024
GRPC_OPTIONS = [("grpc.enable_http_proxy", 0)]


# ------------------------------------------------------------------------------------------ helpers


class H2Listener:
    """A TCP listener that serves every accepted connection with ``serve_h2``."""

    def __init__(self, handler: RequestHandler, drain: Drain | None = None) -> None:
        self.handler = handler
        self.drain = drain
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []
        self.served = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> H2Listener:
        listener = self

        class Accepted(TcpDuplex):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                listener._serve(self)

        self.server = await asyncio.get_running_loop().create_server(Accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def _serve(self, duplex: TcpDuplex) -> None:
        task = asyncio.get_running_loop().create_task(
            serve_h2(duplex, DOWNSTREAM, self.handler, drain=self.drain)
        )
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.served += 1
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()
        assert not self.errors, self.errors


@dataclass
class Background:
    """Tasks a test's handlers start, cancelled at the end."""

    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    generated: int = 0  # bytes the upstream's /bytes generator has fed so far

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def copy_body(src: BodyStream, dst: BodyStream) -> None:
    try:
        async for chunk in src:
            await dst.feed(chunk)
            if dst.abandoned:
                src.abandon()
                return
        dst.finish(src.trailers)
    except BodyError as exc:
        dst.fail(exc)


async def generate(dst: BodyStream, size: int, background: Background) -> None:
    block = bytes(range(256)) * 256  # 64 KiB
    left = size
    while left and not dst.abandoned:
        part = block[: min(left, len(block))]
        await dst.feed(part)
        background.generated += len(part)
        left -= len(part)
    dst.finish()


def pattern_digest(size: int) -> str:
    block = bytes(range(256)) * 256
    digest = hashlib.sha256()
    left = size
    while left:
        part = block[: min(left, len(block))]
        digest.update(part)
        left -= len(part)
    return digest.hexdigest()


def upstream_app(background: Background) -> RequestHandler:
    """``/echo`` streams the request body back (with its trailers); ``/bytes/N`` sends N bytes."""

    async def handle(request: Request, downstream: Downstream) -> Response:
        body = BodyStream()
        headers = [(b"content-type", b"application/octet-stream"), (b"x-upstream", b"ours")]
        if request.path == b"/echo":
            background.spawn(copy_body(request.body, body))
        elif request.path.startswith(b"/bytes/"):
            background.spawn(generate(body, int(request.path.rsplit(b"/", 1)[1]), background))
        elif request.path == b"/boom":
            raise RuntimeError("the handler broke")
        else:
            return Response(404, [(b"content-type", b"text/plain")], BodyStream.of(b"no such path"))
        return Response(200, headers, body)

    return handle


def proxy_to(upstream: H2Upstream, port: int) -> RequestHandler:
    """The waypoint's part, reduced: forward every request to 127.0.0.1:``port`` over HTTP/2."""

    async def connect() -> Duplex:
        _transport, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, "127.0.0.1", port)
        return duplex

    async def handle(request: Request, downstream: Downstream) -> Response:
        if request.path == b"/boom":
            raise RuntimeError("the handler broke")
        return await upstream.send(("upstream", port), connect, request)

    return handle


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "curl",
        "--http2-prior-knowledge",
        "--noproxy",
        "*",
        "-sS",
        "--max-time",
        "15",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Chain:
    """curl → proxy (serve_h2 + H2Upstream) → upstream (serve_h2 + our app)."""

    proxy: H2Listener
    upstream: H2Listener
    pool: H2Upstream
    background: Background

    @property
    def key(self) -> tuple[str, int]:
        return ("upstream", self.upstream.port)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.proxy.port}{path}"


@pytest.fixture
async def chain() -> AsyncIterator[Chain]:
    background = Background()
    upstream = await H2Listener(upstream_app(background)).start()
    pool = H2Upstream()
    proxy = await H2Listener(proxy_to(pool, upstream.port)).start()
    try:
        yield Chain(proxy, upstream, pool, background)
    finally:
        await proxy.close()
        await pool.close()
        await upstream.close()
        await background.close()


class GrpcApp:
    """A grpcio server (its own threads) with generic, bytes-in bytes-out methods."""

    def __init__(self) -> None:
        self.cancelled = threading.Event()  # a streaming call ended without finishing
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        self.server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "test.Echo",
                    {
                        "Unary": grpc.unary_unary_rpc_method_handler(self.unary),
                        "Missing": grpc.unary_unary_rpc_method_handler(self.missing),
                        "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi),
                        "Hold": grpc.stream_stream_rpc_method_handler(self.hold),
                        "Ticks": grpc.unary_stream_rpc_method_handler(self.ticks),
                        "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
                    },
                ),
            )
        )
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.set_trailing_metadata((("x-trailer", "t-" + request.decode()),))
        return request[::-1]

    def missing(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no widget named " + request.decode())
        raise AssertionError("abort raises")

    def slow(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        time.sleep(float(request.decode()))
        return b"done"

    def bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for message in requests:
            yield message.upper()

    def hold(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)  # the client never half-closes: only a cancel ends it
        for message in requests:
            yield message.upper()

    def ticks(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        context.add_callback(self.cancelled.set)  # this call only ends by cancellation
        n = 0
        while context.is_active():
            yield b"tick %d" % n
            n += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.stop(None).wait()


@pytest.fixture
def grpc_app() -> Iterator[GrpcApp]:
    app = GrpcApp()
    try:
        yield app
    finally:
        app.stop()


@dataclass
class GrpcChain:
    proxy: H2Listener
    pool: H2Upstream
    app: GrpcApp
    channel: grpc.Channel

    @property
    def key(self) -> tuple[str, int]:
        return ("upstream", self.app.port)


async def grpc_chain(
    app: GrpcApp, handler: Callable[[RequestHandler], RequestHandler] | None = None
) -> GrpcChain:
    pool = H2Upstream()
    forward = proxy_to(pool, app.port)
    proxy = await H2Listener(handler(forward) if handler else forward).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{proxy.port}", options=GRPC_OPTIONS)
    return GrpcChain(proxy, pool, app, channel)


async def close_grpc_chain(chain: GrpcChain) -> None:
    await asyncio.to_thread(chain.channel.close)
    await chain.proxy.close()
    await chain.pool.close()


@pytest.fixture
async def grpc_proxy(grpc_app: GrpcApp) -> AsyncIterator[GrpcChain]:
    chain = await grpc_chain(grpc_app)
    try:
        yield chain
    finally:
        await close_grpc_chain(chain)


# ------------------------------------------------------------------------------------------ curl


async def test_curl_get_5_mib_and_reuse(chain: Chain, tmp_path: Path) -> None:
    size = 5 * MiB
    head = tmp_path / "headers"  # not /dev/stderr: curl crashes opening it on uvloop's socketpair
    for _ in range(2):
        code, out, err = await curl("-o", "-", "-D", str(head), chain.url(f"/bytes/{size}"))
        assert code == 0, err
        assert len(out) == size
        assert hashlib.sha256(out).hexdigest() == pattern_digest(size)
        headers = head.read_bytes()
        assert headers.startswith(b"HTTP/2 200")
        assert b"x-upstream: ours" in headers
    assert chain.pool.connections(chain.key) == 1  # one upstream connection served both requests


async def test_curl_post_5_mib_streams_both_ways(chain: Chain, tmp_path: Path) -> None:
    payload = os.urandom(5 * MiB)
    source = tmp_path / "payload"
    source.write_bytes(payload)
    target = tmp_path / "echoed"
    code, out, err = await curl(
        "--data-binary",
        f"@{source}",
        "-o",
        str(target),
        "-w",
        "%{http_code} %{http_version}",
        chain.url("/echo"),
    )
    assert code == 0, err
    assert out == b"200 2"
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(payload).digest()


async def test_curl_404_and_handler_failure(chain: Chain) -> None:
    code, out, err = await curl("-w", "\n%{http_code}", chain.url("/nowhere"))
    assert (code, out) == (0, b"no such path\n404"), err
    code, out, err = await curl("-o", "/dev/null", "-w", "%{http_code}", chain.url("/boom"))
    assert (code, out) == (0, b"502"), err  # the proxy's handler raised before any response


async def test_upstream_handler_failure_is_a_502_from_the_upstream(chain: Chain) -> None:
    upstream_only = f"http://127.0.0.1:{chain.upstream.port}/boom"
    code, out, err = await curl("-o", "/dev/null", "-w", "%{http_code}", upstream_only)
    assert (code, out) == (0, b"502"), err


# ------------------------------------------------------------------------------------------ gRPC


async def test_grpc_unary_keeps_trailers(grpc_proxy: GrpcChain) -> None:
    call = grpc_proxy.channel.unary_unary("/test.Echo/Unary")

    def run() -> tuple[bytes, Any, Any]:
        response, outcome = call.with_call(b"hello", timeout=10)
        return response, outcome.code(), dict(outcome.trailing_metadata())

    response, code, trailers = await asyncio.to_thread(run)
    assert response == b"olleh"
    assert code == grpc.StatusCode.OK
    assert trailers["x-trailer"] == "t-hello"


async def test_grpc_not_found_passes_through(grpc_proxy: GrpcChain) -> None:
    call = grpc_proxy.channel.unary_unary("/test.Echo/Missing")
    with pytest.raises(grpc.RpcError) as caught:
        await asyncio.to_thread(call, b"gizmo", timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert caught.value.details() == "no widget named gizmo"  # type: ignore[attr-defined]


async def test_grpc_bidi_streaming_interleaves(grpc_proxy: GrpcChain) -> None:
    call = grpc_proxy.channel.stream_stream("/test.Echo/Bidi")

    def run() -> tuple[list[bytes], list[bytes], Any]:
        outbox: queue.Queue[bytes | None] = queue.Queue()

        def requests() -> Iterator[bytes]:
            while (item := outbox.get()) is not None:
                yield item

        responses = call(requests(), timeout=10)
        replies = []
        for i in range(5):  # each reply arrives before the next request is even sent: full duplex
            outbox.put(b"message %d" % i)
            replies.append(next(responses))
        outbox.put(b"last")
        outbox.put(None)
        rest = list(responses)
        return replies, rest, responses.code()

    replies, rest, code = await asyncio.to_thread(run)
    assert replies == [b"MESSAGE %d" % i for i in range(5)]
    assert rest == [b"LAST"]
    assert code == grpc.StatusCode.OK


async def test_grpc_many_concurrent_calls_share_a_connection(grpc_proxy: GrpcChain) -> None:
    call = grpc_proxy.channel.unary_unary("/test.Echo/Unary")
    results = await asyncio.gather(*(asyncio.to_thread(call, b"m%d" % i, timeout=10) for i in range(40)))
    assert results == [(b"m%d" % i)[::-1] for i in range(40)]
    assert grpc_proxy.pool.connections(grpc_proxy.key) == 1


async def test_grpc_client_cancel_resets_the_upstream_bidi_stream(grpc_proxy: GrpcChain) -> None:
    call = grpc_proxy.channel.stream_stream("/test.Echo/Hold")
    outbox: queue.Queue[bytes | None] = queue.Queue()

    def requests() -> Iterator[bytes]:
        while (item := outbox.get()) is not None:
            yield item

    def first_then_cancel() -> bytes:
        responses = call(requests(), timeout=10)
        outbox.put(b"ping")
        reply = next(responses)
        responses.cancel()
        return reply

    try:
        assert await asyncio.to_thread(first_then_cancel) == b"PING"
        await eventually(lambda: grpc_proxy.pool.streams(grpc_proxy.key) == 0)  # we reset it upstream
        await asyncio.to_thread(grpc_proxy.app.cancelled.wait, 5)
        assert grpc_proxy.app.cancelled.is_set(), "the upstream never saw the cancellation"
    finally:
        outbox.put(None)


async def test_grpc_client_cancel_resets_a_server_stream(grpc_proxy: GrpcChain) -> None:
    """The request is complete; only the response body is in flight: abandoning it resets upstream."""
    call = grpc_proxy.channel.unary_stream("/test.Echo/Ticks")

    def two_then_cancel() -> list[bytes]:
        responses = call(b"", timeout=10)
        got = [next(responses), next(responses)]
        responses.cancel()
        return got

    assert await asyncio.to_thread(two_then_cancel) == [b"tick 0", b"tick 1"]
    await asyncio.to_thread(grpc_proxy.app.cancelled.wait, 5)
    assert grpc_proxy.app.cancelled.is_set(), "the upstream kept streaming"
    await eventually(lambda: grpc_proxy.pool.streams(grpc_proxy.key) == 0)


async def test_control_a_proxy_that_drops_trailers_breaks_grpc(grpc_app: GrpcApp) -> None:
    """The check above can fail: without the trailers (grpc-status) the client sees an error."""
    background = Background()

    def drop_trailers(forward: RequestHandler) -> RequestHandler:
        async def handle(request: Request, downstream: Downstream) -> Response:
            response = await forward(request, downstream)
            body = BodyStream()

            async def copy_without_trailers() -> None:
                async for chunk in response.body:
                    await body.feed(chunk)
                body.finish()

            background.spawn(copy_without_trailers())
            return Response(response.status, response.headers, body)

        return handle

    chain = await grpc_chain(grpc_app, drop_trailers)
    try:
        call = chain.channel.unary_unary("/test.Echo/Unary")
        with pytest.raises(grpc.RpcError) as caught:
            await asyncio.to_thread(call, b"hello", timeout=10)
        assert caught.value.code() != grpc.StatusCode.OK  # type: ignore[attr-defined]
    finally:
        await close_grpc_chain(chain)
        await background.close()


# ------------------------------------------------------------------------------------------ raw HTTP/2


class RawClient:
    """An h2 client on asyncio streams, to see the frames themselves (GOAWAY, RST_STREAM)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        h2tuning.keep_open_through_goaway(self.conn)  # keep reading the streams a GOAWAY lets finish
        self.conn.initiate_connection()
        self.flush()

    @classmethod
    async def open(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def flush(self) -> None:
        self.writer.write(self.conn.data_to_send())

    def get(self, path: str, *, end: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", b"test"),
            (b":path", path.encode()),
        ]
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    async def next_events(self) -> list[h2.events.Event] | None:
        data = await self.reader.read(65536)
        if not data:
            return None
        events = self.conn.receive_data(data)
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.flush()
        return events

    async def until(
        self, kind: type[h2.events.Event], within: float = 5.0
    ) -> tuple[Any, list[h2.events.Event]]:
        seen: list[h2.events.Event] = []
        async with asyncio.timeout(within):
            while True:
                events = await self.next_events()
                assert events is not None, f"connection closed before {kind.__name__}; saw {seen}"
                for event in events:
                    seen.append(event)
                    if isinstance(event, kind):
                        return event, seen

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def test_drain_sends_goaway_and_lets_in_flight_finish() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: Request, downstream: Downstream) -> Response:
        started.set()
        await release.wait()
        return Response(200, [(b"x-done", b"yes")], BodyStream.of(b"finished", [(b"x-final", b"1")]))

    drain = Drain()
    listener = await H2Listener(slow, drain).start()
    client = await RawClient.open(listener.port)
    try:
        first = client.get("/slow")
        await asyncio.wait_for(started.wait(), 5)
        drain.start(10)
        goaway, _ = await client.until(h2.events.ConnectionTerminated)
        assert goaway.error_code == ErrorCodes.NO_ERROR
        assert goaway.last_stream_id == first

        late = client.get("/late")  # after the GOAWAY: refused, never handled
        reset, _ = await client.until(h2.events.StreamReset)
        assert (reset.stream_id, reset.error_code) == (late, ErrorCodes.REFUSED_STREAM)

        release.set()
        ended, seen = await client.until(h2.events.StreamEnded)
        assert ended.stream_id == first
        response = next(e for e in seen if isinstance(e, h2.events.ResponseReceived))
        assert (b":status", b"200") in response.headers
        assert b"".join(e.data for e in seen if isinstance(e, h2.events.DataReceived)) == b"finished"
        trailers = next(e for e in seen if isinstance(e, h2.events.TrailersReceived))
        assert trailers.headers == [(b"x-final", b"1")]

        async with asyncio.timeout(5):  # then the server closes the connection
            while await client.next_events() is not None:
                pass
        await client.close()
        await eventually(lambda: listener.served == 1)
    finally:
        await client.close()
        await listener.close()


async def test_client_reset_cancels_the_handler() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def wait_forever(request: Request, downstream: Downstream) -> Response:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    listener = await H2Listener(wait_forever).start()
    client = await RawClient.open(listener.port)
    try:
        sid = client.get("/")
        await asyncio.wait_for(started.wait(), 5)
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        await asyncio.wait_for(cancelled.wait(), 5)
        second = client.get("/")  # the connection carries on
        await asyncio.wait_for(started.wait(), 5)
        assert second == sid + 2
    finally:
        await client.close()
        await listener.close()


async def test_garbage_gets_goaway_and_close() -> None:
    async def never(request: Request, downstream: Downstream) -> Response:
        raise AssertionError("no request should get here")

    listener = await H2Listener(never).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            data = await reader.read()  # to EOF: the server closes
        frames = []
        while len(data) >= 9:
            length = int.from_bytes(data[:3], "big")
            frames.append(data[3])
            data = data[9 + length :]
        assert 0x7 in frames  # GOAWAY
        writer.close()
        await eventually(lambda: listener.served == 1)
    finally:
        writer.close()
        await listener.close()


async def test_oversized_header_list_is_refused() -> None:
    async def ok(request: Request, downstream: Downstream) -> Response:
        return Response(200, [], BodyStream.of(b"ok"))

    listener = await H2Listener(ok).start()
    client = await RawClient.open(listener.port)
    try:
        sid = client.conn.get_next_available_stream_id()
        big = [(b"x-big-%d" % i, b"v" * 1000) for i in range(70)]  # ~70 KiB > 60 KiB
        headers = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/"), *big]
        client.conn.send_headers(sid, headers, end_stream=True)
        client.flush()
        goaway, _ = await client.until(h2.events.ConnectionTerminated)
        assert goaway.error_code != ErrorCodes.NO_ERROR
        await client.close()
        await eventually(lambda: listener.served == 1)
    finally:
        await client.close()
        await listener.close()


async def test_slow_client_holds_back_the_upstream(chain: Chain) -> None:
    """A client that reads nothing: flow control stops the upstream's generator after a few windows."""
    client = await RawClient.open(chain.proxy.port)
    try:
        sid = client.get(f"/bytes/{64 * MiB}")  # and never read a byte of the answer
        await eventually(lambda: chain.background.generated > 0)
        await asyncio.sleep(0.3)
        held = chain.background.generated
        assert held < 2 * MiB, f"{held} bytes generated for a client that reads nothing"
        client.conn.reset_stream(sid, ErrorCodes.CANCEL)
        client.flush()
        await eventually(lambda: not chain.background.tasks)  # the reset reached the generator
        await eventually(lambda: chain.pool.streams(chain.key) == 0)
    finally:
        await client.close()


async def test_request_trailers_go_upstream_and_come_back(chain: Chain) -> None:
    client = await RawClient.open(chain.proxy.port)
    try:
        sid = client.conn.get_next_available_stream_id()
        head = [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", b"t"), (b":path", b"/echo")]
        client.conn.send_headers(sid, [*head, (b"te", b"trailers")])
        client.conn.send_data(sid, b"some body")
        client.conn.send_headers(sid, [(b"x-checksum", b"abc")], end_stream=True)
        client.flush()
        ended, seen = await client.until(h2.events.StreamEnded)
        assert ended.stream_id == sid
        assert b"".join(e.data for e in seen if isinstance(e, h2.events.DataReceived)) == b"some body"
        trailers = next(e for e in seen if isinstance(e, h2.events.TrailersReceived))
        assert trailers.headers == [(b"x-checksum", b"abc")]  # echoed as the response's trailers
    finally:
        await client.close()


async def test_a_body_that_breaks_after_the_head_resets_the_stream() -> None:
    background = Background()

    async def breaks(request: Request, downstream: Downstream) -> Response:
        body = BodyStream()

        async def produce() -> None:
            await body.feed(b"partial")
            await asyncio.sleep(0.05)
            body.fail(ConnectionResetError("upstream went away"))

        background.spawn(produce())
        return Response(200, [], body)

    listener = await H2Listener(breaks).start()
    client = await RawClient.open(listener.port)
    try:
        sid = client.get("/")
        reset, seen = await client.until(h2.events.StreamReset)
        assert (reset.stream_id, reset.error_code) == (sid, ErrorCodes.INTERNAL_ERROR)
        assert any(isinstance(e, h2.events.ResponseReceived) for e in seen)
        assert b"".join(e.data for e in seen if isinstance(e, h2.events.DataReceived)) == b"partial"
    finally:
        await client.close()
        await listener.close()
        await background.close()


# ------------------------------------------------------------------------------------------ the pool


async def test_connect_failure_is_uf() -> None:
    pool = H2Upstream()

    async def refuse() -> Duplex:
        raise ConnectionRefusedError("refused")

    request = Request(b"POST", b"http", b"x", b"/", [], BodyStream.of(b"payload"))
    try:
        with pytest.raises(UpstreamError) as caught:
            await pool.send("k", refuse, request)
        assert caught.value.flags == "UF"
        assert await request.body.read_all(100) == b"payload"  # untouched: a retry can still send it
    finally:
        await pool.close()


async def test_upstream_goaway_moves_new_requests_to_a_new_connection() -> None:
    background = Background()
    drain = Drain()
    started = asyncio.Event()
    release = asyncio.Event()

    async def app(request: Request, downstream: Downstream) -> Response:
        if request.path == b"/slow":
            started.set()
            await release.wait()
        return Response(200, [], BodyStream.of(request.path))

    upstream = await H2Listener(app, drain).start()
    pool = H2Upstream()
    send = proxy_to(pool, upstream.port)
    key = ("upstream", upstream.port)
    try:
        slow = asyncio.ensure_future(
            send(Request(b"GET", b"http", b"u", b"/slow", [], BodyStream.of()), DOWNSTREAM)
        )
        await asyncio.wait_for(started.wait(), 5)
        drain.start(10)  # the upstream sends GOAWAY; /slow is in flight
        await eventually(lambda: pool.connections(key) == 0)
        release.set()
        response = await asyncio.wait_for(slow, 5)
        assert await response.body.read_all(100) == b"/slow"  # the in-flight stream finished

        upstream2 = await H2Listener(app).start()
        try:
            send2 = proxy_to(pool, upstream2.port)
            response = await send2(Request(b"GET", b"http", b"u", b"/next", [], BodyStream.of()), DOWNSTREAM)
            assert await response.body.read_all(100) == b"/next"
        finally:
            await pool.close()
            await upstream2.close()
    finally:
        await pool.close()
        await upstream.close()
        await background.close()


async def test_upstream_connection_loss_fails_the_response_body() -> None:
    started = asyncio.Event()
    accepted: list[TcpDuplex] = []

    async def partial(request: Request, downstream: Downstream) -> Response:
        body = BodyStream()
        await body.feed(b"x" * 1000)
        started.set()
        return Response(200, [], body)  # never finished

    upstream = await H2Listener(partial).start()
    pool = H2Upstream()

    async def connect() -> Duplex:
        _t, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, "127.0.0.1", upstream.port)
        accepted.append(duplex)
        return duplex

    try:
        response = await pool.send("k", connect, Request(b"GET", b"http", b"u", b"/", [], BodyStream.of()))
        assert response.status == 200
        assert await anext(response.body) == b"x" * 1000
        accepted[0].abort()  # the upstream connection dies mid-body
        with pytest.raises(BodyError) as caught:
            await response.body.read_all(MiB)
        assert isinstance(caught.value.__cause__, UpstreamError)
        assert caught.value.__cause__.flags == "UC"
        assert pool.connections("k") == 0
    finally:
        await pool.close()
        await upstream.close()


async def test_idle_connection_is_closed() -> None:
    async def ok(request: Request, downstream: Downstream) -> Response:
        return Response(200, [], BodyStream.of(b"ok"))

    upstream = await H2Listener(ok).start()
    pool = H2Upstream(idle_timeout=0.2)
    send = proxy_to(pool, upstream.port)
    key = ("upstream", upstream.port)
    try:
        response = await send(Request(b"GET", b"http", b"u", b"/", [], BodyStream.of()), DOWNSTREAM)
        assert await response.body.read_all(10) == b"ok"
        assert pool.connections(key) == 1
        await eventually(lambda: pool.connections(key) == 0 and upstream.served == 1, within=3)
    finally:
        await pool.close()
        await upstream.close()
