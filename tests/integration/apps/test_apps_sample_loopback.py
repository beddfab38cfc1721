"""The sample app in-process on loopback: the HTTP echo and what it saw, the helloworld/httpbin/bookinfo
paths, keep-alive, the TCP echo with and without the tcp-echo prefix, and a graceful stop."""

from __future__ import annotations

import asyncio
import io
import json
import math
import time
from collections.abc import AsyncIterator

import pytest

from ambit.apps.sample import SampleApp, SampleConfig


@pytest.fixture
async def app() -> AsyncIterator[SampleApp]:
    config = SampleConfig(
        http_ports=(0, 0),
        tcp_ports=(0,),
        pod="reviews-v2-abc",
        node="node-1",
        namespace="bookinfo",
        version="v2",
        bind="127.0.0.1",
        grace=2.0,
    )
    async with SampleApp(config, out=io.StringIO()) as started:
        yield started


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> dict[str, object]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    close: bool = False,
) -> Response:
    lines = [f"{method} {path} HTTP/1.1", "Host: reviews:9080"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split()[1])
    got: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode().partition(":")
        got[name.strip().lower()] = value.strip()
    length = int(got.get("content-length", "0"))
    data = b"" if method == "HEAD" else await reader.readexactly(length)
    return Response(status, got, data)


async def get(port: int, path: str, **kwargs: object) -> Response:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await exchange(reader, writer, path, close=True, **kwargs)  # type: ignore[arg-type]
    finally:
        writer.close()
        await writer.wait_closed()


async def test_http_echo_reports_what_it_saw(app: SampleApp) -> None:
    port = app.http_ports[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        mine = writer.get_extra_info("sockname")
        response = await exchange(
            reader,
            writer,
            "/anything/x?a=1&b=2",
            method="POST",
            headers={"X-Custom": "yes"},
            body=b"z" * 1000,
        )
    finally:
        writer.close()
        await writer.wait_closed()
    assert response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    echo = response.json()
    assert echo["method"] == "POST"
    assert echo["path"] == "/anything/x"
    assert echo["query"] == "a=1&b=2"
    assert echo["peer"] == f"{mine[0]}:{mine[1]}"
    assert echo["local"] == f"127.0.0.1:{port}"
    assert echo["port"] == port
    assert echo["host"] == "reviews:9080"
    assert (echo["pod"], echo["node"], echo["namespace"], echo["version"]) == (
        "reviews-v2-abc",
        "node-1",
        "bookinfo",
        "v2",
    )
    headers = echo["headers"]
    assert isinstance(headers, dict)
    assert headers["X-Custom"] == "yes"
    assert echo["body_bytes"] == 1000


async def test_sample_paths(app: SampleApp) -> None:
    port = app.http_ports[1]  # every HTTP port serves the same app
    hello = await get(port, "/hello")
    assert hello.status == 200
    assert hello.body == b"Hello version: v2, instance: reviews-v2-abc\n"
    for path in ("/", "/productpage", "/reviews/0", "/headers"):
        response = await get(port, path)
        assert response.status == 200, path
        assert response.json()["path"] == path
    for path in ("/healthz", "/ready", "/health"):
        response = await get(port, path)
        assert response.status == 200
        assert response.json()["status"] == "ok"
    assert (await get(port, "/ip")).json()["origin"] == "127.0.0.1"
    teapot = await get(port, "/status/418")
    assert teapot.status == 418
    assert teapot.json()["pod"] == "reviews-v2-abc"
    assert (await get(port, "/status/503")).status == 503
    empty = await get(port, "/status/204")
    assert (empty.status, empty.body) == (204, b"")
    assert (await get(port, "/status/abc")).status == 400
    assert (await get(port, "/delay/x")).status == 400
    begin = time.monotonic()
    delayed = await get(port, "/delay/0.2")
    assert delayed.status == 200
    assert delayed.json()["delay"] == 0.2
    assert time.monotonic() - begin >= 0.2
    head = await get(port, "/productpage", method="HEAD")
    assert (head.status, head.body) == (200, b"")


async def test_weighted_status(app: SampleApp) -> None:
    """httpbin's ``/status/<code>:<weight>,...``: each request draws a code by weight, from a seeded app."""
    n, z = 400, 3.29  # a 99.9 % two-sided interval around the expected share (normal approximation)
    bound = z * math.sqrt(0.5 * 0.5 / n)
    config = SampleConfig(http_ports=(0,), bind="127.0.0.1", log_requests=False, seed=20240501)
    async with SampleApp(config) as seeded:
        for path in ("/status/200:0.5,503:0.5", "/status/200,503"):
            reader, writer = await asyncio.open_connection("127.0.0.1", seeded.http_ports[0])
            try:
                statuses = [(await exchange(reader, writer, path)).status for _ in range(n)]
            finally:
                writer.close()
                await writer.wait_closed()
            assert set(statuses) == {200, 503}, path
            share = statuses.count(503) / n
            assert abs(share - 0.5) <= bound, (path, share, bound)
        port = seeded.http_ports[0]
        assert {(await get(port, "/status/200:0,503:1")).status for _ in range(20)} == {503}
        assert (await get(port, "/status/204:1")).body == b""
    port = app.http_ports[0]
    for bad in (
        "/status/200:-1,503:1",
        "/status/200:0,503:0",
        "/status/200:x",
        "/status/200,",
        "/status/200,600",
    ):
        response = await get(port, bad)
        assert response.status == 400, bad
        error = response.json()["error"]
        assert isinstance(error, str) and error.startswith("status must be"), bad
        assert response.json()["pod"] == "reviews-v2-abc"


async def test_keep_alive(app: SampleApp) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_ports[0])
    try:
        peers = set()
        for i in range(5):
            response = await exchange(reader, writer, f"/req/{i}")
            assert response.status == 200
            assert response.headers.get("connection", "keep-alive").lower() != "close"
            peers.add(response.json()["peer"])
        assert len(peers) == 1
        last = await exchange(reader, writer, "/last", close=True)
        assert last.status == 200
        assert await reader.read() == b""  # the server closed after `Connection: close`
    finally:
        writer.close()
        await writer.wait_closed()


async def test_request_log_lines(app: SampleApp) -> None:
    await get(app.http_ports[0], "/status/503?x=1")
    out = app._log._out
    assert isinstance(out, io.StringIO)
    lines = out.getvalue().splitlines()
    assert any(
        f"http :{app.http_ports[0]} 127.0.0.1:" in line and "GET /status/503?x=1 503" in line
        for line in lines
    )


async def test_tcp_echo(app: SampleApp) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.tcp_ports[0])
    try:
        writer.write(b"first")
        assert await reader.readexactly(5) == b"first"
        blob = bytes(range(256)) * 4096  # 1 MiB, more than the socket buffers hold
        writer.write(blob)
        assert await reader.readexactly(len(blob)) == blob
        writer.write(b"no newline needed")
        writer.write_eof()
        assert await reader.read() == b"no newline needed"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_tcp_echo_prefix() -> None:
    config = SampleConfig(tcp_ports=(0, 0), tcp_prefix="hello", bind="127.0.0.1", log_requests=False)
    async with SampleApp(config) as app:
        for port in app.tcp_ports:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(b"one\ntw")
                assert await reader.readexactly(10) == b"hello one\n"
                writer.write(b"o\nthree")
                assert await reader.readexactly(10) == b"hello two\n"
                writer.write_eof()
                assert await reader.read() == b"hello three"
            finally:
                writer.close()
                await writer.wait_closed()


async def test_graceful_stop_finishes_in_flight_work() -> None:
    config = SampleConfig(http_ports=(0,), tcp_ports=(0,), bind="127.0.0.1", log_requests=False, grace=3.0)
    app = SampleApp(config)
    await app.start()
    http_port, tcp_port = app.http_ports[0], app.tcp_ports[0]
    slow = asyncio.ensure_future(get(http_port, "/delay/0.4"))
    tcp_reader, tcp_writer = await asyncio.open_connection("127.0.0.1", tcp_port)
    try:
        await asyncio.sleep(0.1)  # the delayed request is in progress
        begin = time.monotonic()
        stopping = asyncio.ensure_future(app.stop())
        await asyncio.sleep(0.05)
        with pytest.raises(OSError):  # no longer listening
            await asyncio.open_connection("127.0.0.1", http_port)
        # the open TCP connection still echoes during the grace period, until the client closes it
        tcp_writer.write(b"still here")
        assert await tcp_reader.readexactly(10) == b"still here"
        tcp_writer.write_eof()
        assert await tcp_reader.read() == b""
        response = await slow
        assert response.status == 200
        await stopping
        assert time.monotonic() - begin < 2.0  # nothing waited for the full grace period
    finally:
        tcp_writer.close()
        await tcp_writer.wait_closed()
        await app.stop()


async def test_stop_closes_idle_tcp_connections_after_grace() -> None:
    config = SampleConfig(tcp_ports=(0,), bind="127.0.0.1", log_requests=False, grace=0.3)
    app = SampleApp(config)
    await app.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", app.tcp_ports[0])
    try:
        begin = time.monotonic()
        await app.stop()
        assert 0.25 <= time.monotonic() - begin < 2.0
        assert await reader.read() == b""  # closed by the app (FIN)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_port_in_use_leaves_nothing_open() -> None:
    first = SampleApp(SampleConfig(http_ports=(0,), bind="127.0.0.1", log_requests=False))
    async with first:
        taken = first.http_ports[0]
        second = SampleApp(SampleConfig(http_ports=(0, taken), bind="127.0.0.1", log_requests=False))
        with pytest.raises(OSError):
            await second.start()
        assert second._runner is not None
        assert all(sock.fileno() == -1 for sock in second._listeners.http)


async def test_websocket_echo(app: SampleApp) -> None:
    import aiohttp

    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{app.http_ports[0]}/ws") as ws,
    ):
        await ws.send_str("hi")
        assert await ws.receive_str() == "reviews-v2-abc: hi"
    plain = await get(app.http_ports[0], "/ws")  # control: without an Upgrade, /ws is the echo
    assert plain.status == 200 and plain.json()["path"] == "/ws"


async def test_a_pod_that_fails_by_itself() -> None:
    config = SampleConfig(http_ports=(0,), pod="flaky", bind="127.0.0.1", fail_statuses="200:0,503:1", seed=1)
    async with SampleApp(config, out=io.StringIO()) as app:
        port = app.http_ports[0]
        assert (await get(port, "/hello")).status == 503
        assert (await get(port, "/anything")).status == 503
        assert (await get(port, "/healthz")).status == 200  # readiness still passes
    healthy = SampleConfig(http_ports=(0,), pod="ok", bind="127.0.0.1", fail_statuses="200:1,503:0")
    async with SampleApp(healthy, out=io.StringIO()) as app:  # control: weight 0 never fails
        assert (await get(app.http_ports[0], "/hello")).status == 200
    assert SampleConfig(pod="p").resolved({"SAMPLE_FAIL_STATUSES": "200:0.5,503:0.5"}).fail_statuses == (
        "200:0.5,503:0.5"
    )
