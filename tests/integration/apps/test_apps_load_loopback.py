"""The load client on loopback: against the sample app in every mode (HTTP and TCP), and against servers
that refuse, reset, stall, close idle connections, answer 503 for a while, or echo the wrong bytes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from ambit.apps.load import LoadConfig, LoadResult, Mode, run_load
from ambit.apps.load.outcomes import CONNECT_ERROR, MISMATCH, OK, PROTOCOL_ERROR, RESET, SHORT_READ, TIMEOUT
from ambit.apps.sample import SampleApp, SampleConfig

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def sample() -> AsyncIterator[SampleApp]:
    config = SampleConfig(http_ports=(0,), tcp_ports=(0,), pod="p", bind="127.0.0.1", log_requests=False)
    async with SampleApp(config) as app:
        yield app


@pytest.fixture
async def prefixed() -> AsyncIterator[SampleApp]:
    config = SampleConfig(tcp_ports=(0,), tcp_prefix="hello", bind="127.0.0.1", log_requests=False)
    async with SampleApp(config) as app:
        yield app


@contextlib.asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[int]:
    """A throwaway asyncio server on loopback; every connection's handler is cancelled at the end."""
    handlers: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a cancelled handler ends normally: asyncio's stream callback expects no cancellation
        finally:
            handlers.discard(task)
            writer.close()

    srv = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await srv.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> dict[str, str]:
    await reader.readuntil(b"\r\n")
    headers = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


def check_schedule(result: LoadResult, expected: int) -> None:
    assert result.total == expected
    assert [r.index for r in result.records] == list(range(expected))
    assert all(r.latency >= r.ended - r.started >= 0 for r in result.records if r.started is not None)


# against the sample app


@pytest.mark.parametrize("mode", ["new", "keepalive", "mixed"])
async def test_http_modes_against_the_sample_app(sample: SampleApp, mode: Mode) -> None:
    target = f"http://127.0.0.1:{sample.http_ports[0]}/productpage"
    config = LoadConfig(target, rate=200, duration=2, mode=mode, connections=32)
    result = await run_load(config)
    check_schedule(result, 400)
    assert result.failed == 0, (result.outcomes(), result.failures[:5])
    assert result.retried == 0
    assert {r.status for r in result.records} == {200}
    timeline = result.by_second()
    assert [(s.scheduled, s.ok, s.failed) for s in timeline] == [(200, 200, 0), (200, 200, 0)]
    assert result.achieved_rate > 150
    p50, p99 = result.percentile(50), result.percentile(99)
    assert p50 is not None
    assert p99 is not None
    assert 0 < p50 <= p99 < 5
    connections = result.connections()
    if mode == "new":
        assert connections == {"new": 400}
    elif mode == "keepalive":  # loose bounds: a busy machine stalls the loop and overflows the pool
        assert connections["reused"] >= 100
    else:
        assert connections["new"] >= 200
        assert connections["reused"] >= 50
        assert {r.connection for r in result.records if r.mode == "new"} == {"new"}


@pytest.mark.parametrize("mode", ["new", "keepalive", "mixed"])
async def test_tcp_modes_against_the_sample_app(sample: SampleApp, mode: Mode) -> None:
    config = LoadConfig(
        f"tcp://127.0.0.1:{sample.tcp_ports[0]}", rate=200, duration=1, mode=mode, payload=256, marker="evt"
    )
    result = await run_load(config)
    check_schedule(result, 200)
    assert result.failed == 0, result.outcomes()
    if mode == "keepalive":
        assert result.connections()["reused"] >= 50


async def test_tcp_echo_prefix(prefixed: SampleApp) -> None:
    target = f"tcp://127.0.0.1:{prefixed.tcp_ports[0]}"
    result = await run_load(LoadConfig(target, rate=100, duration=0.5, mode="mixed", expect_prefix="hello"))
    assert result.outcomes() == {OK: 50}
    wrong = await run_load(LoadConfig(target, rate=100, duration=0.2, mode="new"))
    assert wrong.outcomes() == {MISMATCH: 20}


async def test_http_against_a_tcp_echo_is_a_protocol_error(sample: SampleApp) -> None:
    result = await run_load(LoadConfig(f"http://127.0.0.1:{sample.tcp_ports[0]}/", rate=100, duration=0.2))
    assert result.outcomes() == {PROTOCOL_ERROR: 20}


# against misbehaving servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("mode", ["new", "keepalive"])
async def test_closed_port_is_connect_error(mode: Mode) -> None:
    port = free_port()
    result = await run_load(LoadConfig(f"http://127.0.0.1:{port}/", rate=100, duration=0.3, mode=mode))
    check_schedule(result, 30)
    assert result.outcomes() == {CONNECT_ERROR: 30}
    assert all(r.started is not None for r in result.records)
    assert all(r.connection == "new" for r in result.records)
    tcp = await run_load(LoadConfig(f"tcp://127.0.0.1:{port}", rate=100, duration=0.1, mode=mode))
    assert tcp.outcomes() == {CONNECT_ERROR: 10}


async def reset_after_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: RST


@pytest.mark.parametrize("mode", ["new", "keepalive"])
async def test_reset_by_the_server(mode: Mode) -> None:
    async with server(reset_after_request) as port:
        result = await run_load(LoadConfig(f"http://127.0.0.1:{port}/", rate=100, duration=0.3, mode=mode))
    check_schedule(result, 30)
    assert result.outcomes() == {RESET: 30}


async def test_stalled_server_times_out_without_thinning_the_schedule() -> None:
    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(3600)

    async with server(stall) as port:
        config = LoadConfig(f"http://127.0.0.1:{port}/", rate=100, duration=0.5, mode="mixed", timeout=0.3)
        result = await run_load(config)
    check_schedule(result, 50)
    assert result.outcomes() == {TIMEOUT: 50}
    assert {r.detail for r in result.records} == {"response"}
    assert min(r.latency for r in result.records) >= 0.29  # uvloop's timers have 1 ms resolution


async def test_short_read() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
        await writer.drain()

    async with server(half) as port:
        result = await run_load(LoadConfig(f"http://127.0.0.1:{port}/", rate=100, duration=0.2, mode="new"))
    assert result.outcomes() == {SHORT_READ: 20}


async def test_timeline_shows_when_requests_failed() -> None:
    """Requests 100..199 (the second second of the schedule) get a 503."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            headers = await read_request(reader)
            index = int(headers["x-request-id"].rsplit("-", 1)[1])
            status = "503 Service Unavailable" if 100 <= index < 200 else "200 OK"
            writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok".encode())
            await writer.drain()

    async with server(handler) as port:
        config = LoadConfig(f"http://127.0.0.1:{port}/", rate=100, duration=3, mode="mixed", marker="evt")
        result = await run_load(config)
    check_schedule(result, 300)
    assert result.outcomes() == {OK: 200, "http_503": 100}
    timeline = result.by_second()
    assert [(s.second, s.scheduled, s.ok, s.failed) for s in timeline] == [
        (0, 100, 100, 0),
        (1, 100, 0, 100),
        (2, 100, 100, 0),
    ]
    assert timeline[1].outcomes == {"http_503": 100}
    assert [r.index for r in result.failed_between(0.0, 1.0)] == []
    assert len(result.failed_between(1.0, 2.0)) == 100
    assert result.failed_between(2.0, 3.0) == []


async def test_idle_connections_closed_by_the_server_are_not_failures() -> None:
    """The server closes each kept-alive connection 20 ms after answering: the pool notices."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.02)

    async with server(handler) as port:
        config = LoadConfig(f"http://127.0.0.1:{port}/", rate=20, duration=1, connections=2)
        result = await run_load(config)
    assert result.outcomes() == {OK: 20}
    assert result.connections() == {"new": 20}


async def test_a_reused_connection_closed_as_the_request_goes_out_is_retried() -> None:
    """The server answers once, then reads the next request and closes without answering."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        await read_request(reader)

    async with server(handler) as port:
        target = f"http://127.0.0.1:{port}/"
        result = await run_load(LoadConfig(target, rate=20, duration=0.5, connections=1))
        strict = await run_load(LoadConfig(target, rate=20, duration=0.5, connections=1, retry_stale=False))
    assert result.failed == 0
    assert result.retried >= 4
    assert all(r.connection == "new" for r in result.records if r.retried)
    assert strict.retried == 0
    assert strict.outcomes().get("closed", 0) >= 4


async def test_queue_keeps_exactly_the_fixed_pool_and_counts_the_wait() -> None:
    """--queue: with every connection busy a request waits for one (no extra connection, no
    'overloaded'), and its latency includes the wait."""
    connections = 0

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with server(slow) as port:
        config = LoadConfig(
            f"http://127.0.0.1:{port}/", rate=100, duration=0.5, connections=2, max_connections=2, queue=True
        )
        result = await run_load(config)
    check_schedule(result, 50)
    assert result.outcomes() == {OK: 50}
    assert connections == 2, "the pool stays at exactly two connections"
    # Two connections serve 40 requests/s against 100 scheduled: the backlog shows in the latency.
    assert max(r.latency for r in result.records) > 0.5


async def test_without_queue_a_full_fixed_pool_overloads() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with server(slow) as port:
        config = LoadConfig(
            f"http://127.0.0.1:{port}/", rate=100, duration=0.5, connections=2, max_connections=2
        )
        result = await run_load(config)
    assert result.outcomes().get("overloaded", 0) > 0
