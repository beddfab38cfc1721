"""HTTP/1.1 ↔ HTTP/2 through the waypoint's exchange model, both ways, with real curl on loopback.

curl (HTTP/1.1) → ``serve_http1`` → ``H2Upstream`` → ``serve_h2`` (the upstream app), and
curl (HTTP/2 prior knowledge) → ``serve_h2`` → ``Http1Upstream`` → ``serve_http1`` (the upstream app).
The upstream app echoes the request body and reports the HTTP version it was spoken to in.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ambit.net.duplex import Duplex, TcpDuplex
from ambit.waypoint.exchange import BodyError, BodyStream, Downstream, Request, RequestHandler, Response
from ambit.waypoint.h2_client import H2Upstream
from ambit.waypoint.h2_server import serve_h2
from ambit.waypoint.http1_client import Http1Upstream
from ambit.waypoint.http1_server import serve_http1

DOWNSTREAM = Downstream("spiffe://cluster.local/ns/default/sa/curl", "127.0.0.1", "10.96.0.10:80")
Serve = Callable[[Duplex, Downstream, RequestHandler], Coroutine[Any, Any, None]]


class Listener:
    """A loopback TCP listener serving each connection with ``serve`` (serve_http1 or serve_h2)."""

    def __init__(self, serve: Serve, handler: RequestHandler) -> None:
        self.serve = serve
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> Listener:
        listener = self

        class Accepted(TcpDuplex):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                task = asyncio.get_running_loop().create_task(
                    listener.serve(self, DOWNSTREAM, listener.handler)
                )
                listener.tasks.add(task)
                task.add_done_callback(listener.tasks.discard)

        self.server = await asyncio.get_running_loop().create_server(Accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


@dataclass
class EchoApp:
    """Echoes the body back; answers with the version it heard in ``x-upstream-version``."""

    versions: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    async def handle(self, request: Request, _downstream: Downstream) -> Response:
        self.versions.append(request.version)
        body = BodyStream()

        async def copy() -> None:
            try:
                async for chunk in request.body:
                    await body.feed(chunk)
                body.finish(request.body.trailers)
            except BodyError as exc:
                body.fail(exc)

        task = asyncio.ensure_future(copy())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        headers = [
            (b"content-type", b"application/octet-stream"),
            (b"x-upstream-version", request.version.encode()),
        ]
        return Response(200, headers, body)


def forward(upstream: H2Upstream | Http1Upstream, port: int) -> RequestHandler:
    async def connect() -> Duplex:
        _transport, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, "127.0.0.1", port)
        return duplex

    key: Hashable = ("upstream", port)

    async def handle(request: Request, _downstream: Downstream) -> Response:
        return await upstream.send(key, connect, request)

    return handle


async def curl(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "curl", "--noproxy", "*", "-sS", "--max-time", "15", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


@dataclass
class Chain:
    front: Listener
    back: Listener
    app: EchoApp
    pool: H2Upstream | Http1Upstream


@pytest.fixture(params=["1.1-to-2", "2-to-1.1"])
async def chain(request: pytest.FixtureRequest) -> AsyncIterator[Chain]:
    app = EchoApp()
    if request.param == "1.1-to-2":
        back = await Listener(serve_h2, app.handle).start()
        pool: H2Upstream | Http1Upstream = H2Upstream()
        front = await Listener(serve_http1, forward(pool, back.port)).start()
    else:
        back = await Listener(serve_http1, app.handle).start()
        pool = Http1Upstream()
        front = await Listener(serve_h2, forward(pool, back.port)).start()
    try:
        yield Chain(front, back, app, pool)
    finally:
        await front.close()
        await pool.close()
        await back.close()
        for task in list(app.tasks):
            task.cancel()


async def test_a_streamed_body_crosses_versions_both_ways(chain: Chain, tmp_path: Path) -> None:
    payload = tmp_path / "payload"
    payload.write_bytes(bytes(range(256)) * 4096 * 2)  # 2 MiB
    headers = tmp_path / "headers"
    client_h2 = isinstance(chain.pool, Http1Upstream)  # the front speaks HTTP/2 when the back is 1.1
    version_flag = "--http2-prior-knowledge" if client_h2 else "--http1.1"
    rc, out, err = await curl(
        version_flag, "-D", str(headers), "--data-binary", f"@{payload}", "-H", "expect:",
        "-H", "content-type: application/octet-stream",
        f"http://127.0.0.1:{chain.front.port}/echo",
    )  # fmt: skip
    assert rc == 0, err
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()
    head = headers.read_text().lower()
    assert head.startswith("http/2 200" if client_h2 else "http/1.1 200")  # what the client spoke
    assert chain.app.versions == (["1.1"] if client_h2 else ["2"])  # what the upstream heard
    assert f"x-upstream-version: {'1.1' if client_h2 else '2'}" in head
