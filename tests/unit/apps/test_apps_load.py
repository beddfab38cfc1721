"""The load client without a network: open-loop scheduling, percentiles, the per-second timeline,
outcome classification, HTTP response framing and the kept-alive pool."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import time

import pytest

from ambit.apps.load import (
    Attempt,
    LoadConfig,
    LoadResult,
    RequestFailed,
    RequestRecord,
    Target,
    classify,
    http_outcome,
    percentile_of,
    read_response,
    run_open_loop,
)
from ambit.apps.load.clients import HttpClient, TcpClient
from ambit.apps.load.open_loop import config_dict
from ambit.apps.load.outcomes import (
    CLOSED,
    CONNECT_ERROR,
    ERROR,
    MISMATCH,
    OK,
    OVERLOADED,
    PROTOCOL_ERROR,
    RESET,
    SHORT_READ,
    TIMEOUT,
)
from ambit.apps.load.pool import KeepAlivePool

# configuration


def test_target_parse() -> None:
    assert Target.parse("http://svc.ns:9080/productpage?u=1") == Target(
        "http", "svc.ns", 9080, "/productpage?u=1"
    )
    assert Target.parse("http://10.0.0.1") == Target("http", "10.0.0.1", 80, "/")
    assert Target.parse("tcp://10.0.0.1:9000") == Target("tcp", "10.0.0.1", 9000, "")
    assert Target.parse("http://[fd00::1]:8080/x").host_header == "[fd00::1]:8080"
    assert Target.parse("http://a/").host_header == "a"
    for bad in ("https://a/", "tcp://a", "a:80", "http://:80/", "http://a:99999/"):
        with pytest.raises(ValueError):
            Target.parse(bad)


def test_config_bounds_and_counts() -> None:
    config = LoadConfig("http://a/", rate=200, duration=2)
    assert config.total_requests == 400
    assert LoadConfig("http://a/", rate=3, duration=0.5).total_requests == 1  # floor(1.5)
    assert LoadConfig("http://a/", rate=0.1, duration=10).total_requests == 1  # 1e-9 slack
    assert config.pool_limit == 512
    assert LoadConfig("tcp://a:1", rate=1, duration=1).payload_bytes("tcp") == 64
    assert config.payload_bytes("http") == 0
    for bad in (
        {"rate": 0},
        {"rate": 20001},
        {"duration": 0},
        {"duration": 3601},
        {"rate": 20000, "duration": 3600},  # more than a million requests
        {"timeout": 0},
        {"timeout": 61},
        {"connections": 0},
        {"connections": 10, "max_connections": 5},
        {"max_inflight": 0},
        {"payload": 2 * 1024 * 1024},
        {"marker": "a\nb"},
        {"headers": (("X-A", "b\r\nc"),)},
        {"mode": "sometimes"},
    ):
        kwargs = {"rate": 10.0, "duration": 1.0, **bad}
        with pytest.raises(ValueError):
            LoadConfig("http://a/", **kwargs).validate()  # type: ignore[arg-type]


def test_mixed_mode_alternates() -> None:
    mixed = LoadConfig("http://a/", rate=1, duration=1, mode="mixed")
    assert [mixed.keepalive(i) for i in range(4)] == [False, True, False, True]
    assert not LoadConfig("http://a/", rate=1, duration=1, mode="new").keepalive(1)
    assert LoadConfig("http://a/", rate=1, duration=1, mode="keepalive").keepalive(0)


# outcome classification


def test_http_outcome() -> None:
    assert http_outcome(200) == OK
    assert http_outcome(204) == OK
    assert http_outcome(302) == "http_302"
    assert http_outcome(503) == "http_503"


@pytest.mark.parametrize(
    ("exc", "phase", "outcome"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "connect", CONNECT_ERROR),
        (OSError(errno.EHOSTUNREACH, "unreachable"), "connect", CONNECT_ERROR),
        (socket.gaierror(-2, "Name or service not known"), "connect", CONNECT_ERROR),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "connect", CONNECT_ERROR),
        (ConnectionResetError(errno.ECONNRESET, "reset"), "response", RESET),
        (BrokenPipeError(errno.EPIPE, "pipe"), "request", RESET),
        (OSError(errno.ECONNRESET, "reset"), "response", RESET),
        (TimeoutError(), "connect", TIMEOUT),
        (TimeoutError(), "response", TIMEOUT),
        (asyncio.IncompleteReadError(b"", 10), "response", CLOSED),
        (asyncio.IncompleteReadError(b"abc", 10), "response", SHORT_READ),
        (asyncio.LimitOverrunError("long", 1), "response", PROTOCOL_ERROR),
        (RequestFailed(MISMATCH, "differs"), "response", MISMATCH),
        (OSError(errno.ENOBUFS, "no buffers"), "request", ERROR),
        (ValueError("boom"), "response", ERROR),
    ],
)
def test_classify(exc: BaseException, phase: str, outcome: str) -> None:
    got, detail = classify(exc, phase)
    assert got == outcome
    if outcome == TIMEOUT:
        assert detail == phase


# percentiles and the timeline


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile_of(values, 50) == 50
    assert percentile_of(values, 90) == 90
    assert percentile_of(values, 99) == 99
    assert percentile_of(values, 99.9) == 100
    assert percentile_of(values, 100) == 100
    assert percentile_of(values, 0) == 1
    assert percentile_of([7.0], 50) == 7
    assert percentile_of([], 50) is None
    with pytest.raises(ValueError):
        percentile_of(values, 101)


def record(index: int, scheduled: float, latency: float, outcome: str = OK) -> RequestRecord:
    return RequestRecord(index, scheduled, scheduled, scheduled + latency, outcome, "new", "new")


def result_of(records: list[RequestRecord], duration: float) -> LoadResult:
    config = LoadConfig("http://a/", rate=max(1.0, len(records) / duration), duration=duration)
    return LoadResult(
        config=config_dict(config, "http"),
        started_wall=1000.0,
        started_monotonic=5.0,
        elapsed=max(r.ended for r in records),
        records=records,
    )


def test_result_counts_percentiles_and_timeline() -> None:
    records = [
        record(0, 0.0, 0.010),
        record(1, 0.5, 0.020),
        record(2, 0.99, 0.030, "http_503"),
        # second 1: nothing scheduled
        record(3, 2.0, 0.040),
        record(4, 2.5, 0.050, RESET),
        record(5, 2.999, 0.060, RESET),
    ]
    result = result_of(records, duration=3)
    assert (result.total, result.ok, result.failed) == (6, 3, 3)
    assert [r.index for r in result.failures] == [2, 4, 5]
    assert [r.index for r in result.failed_between(2.0, 3.0)] == [4, 5]
    assert result.outcomes() == {OK: 3, RESET: 2, "http_503": 1}
    assert result.percentile(50) == pytest.approx(0.020)
    assert result.percentile(100) == pytest.approx(0.040)
    assert result.percentile(100, ok_only=False) == pytest.approx(0.060)
    timeline = result.by_second()
    assert [(s.second, s.scheduled, s.ok, s.failed) for s in timeline] == [
        (0, 3, 2, 1),
        (1, 0, 0, 0),
        (2, 3, 1, 2),
    ]
    assert timeline[0].outcomes == {"http_503": 1, OK: 2}
    assert timeline[0].max_latency == pytest.approx(0.020)
    assert timeline[1].max_latency is None
    assert timeline[2].outcomes == {OK: 1, RESET: 2}


def test_result_json_round_trip() -> None:
    records = [record(0, 0.0, 0.010), record(1, 0.5, 0.5, TIMEOUT)]
    records[1].started = None
    records[1].detail = "response"
    records[0].status = 200
    result = result_of(records, duration=1)
    data = json.loads(result.to_json())
    assert data["summary"]["outcomes"] == {OK: 1, TIMEOUT: 1}
    assert data["summary"]["latency"]["p50"] == pytest.approx(0.010)
    assert data["by_second"][0]["failed"] == 1
    back = LoadResult.from_json(result.to_json())
    assert back.records == result.records
    assert back.started_wall == 1000.0
    assert back.started_monotonic == 5.0
    assert [s.to_dict() for s in back.by_second()] == data["by_second"]
    assert "records" not in json.loads(result.to_json(records=False))


# open-loop scheduling (a fake executor: no network)


async def test_schedule_is_fixed_rate_and_records_everything() -> None:
    seen: list[tuple[int, float]] = []
    t0 = time.monotonic()

    async def execute(attempt: Attempt) -> str:
        seen.append((attempt.index, time.monotonic() - t0))
        attempt.connection = "new"
        return OK

    config = LoadConfig("http://a/", rate=100, duration=0.5)
    result = await run_open_loop(config, execute)
    assert result.total == 50
    assert result.ok == 50
    assert [r.index for r in result.records] == list(range(50))
    assert [r.scheduled for r in result.records] == pytest.approx([i / 100 for i in range(50)])
    for r in result.records:
        assert r.started is not None
        assert r.started >= r.scheduled - 0.002  # loop timers may fire up to a tick early
        assert r.latency == pytest.approx(r.ended - r.scheduled)
    assert [i for i, _ in seen] == list(range(50))
    assert 0.45 <= seen[-1][1] < 1.5


async def test_stalled_server_does_not_reduce_the_schedule() -> None:
    async def stalled(attempt: Attempt) -> str:
        attempt.phase = "response"
        await asyncio.sleep(3600)
        return OK

    config = LoadConfig("http://a/", rate=200, duration=0.5, timeout=0.2)
    begin = time.monotonic()
    result = await run_open_loop(config, stalled)
    assert time.monotonic() - begin < 2.0
    assert result.total == 100
    assert result.outcomes() == {TIMEOUT: 100}
    assert {r.detail for r in result.records} == {"response"}
    assert min(r.latency for r in result.records) >= 0.19  # uvloop's timers have 1 ms resolution
    assert result.by_second()[0].scheduled == 100


async def test_latency_counts_from_the_schedule_when_sending_is_late() -> None:
    async def execute(attempt: Attempt) -> str:
        if attempt.index == 0:
            time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop on purpose: requests 1..29 go out late
        return OK

    config = LoadConfig("http://a/", rate=100, duration=0.5)
    result = await run_open_loop(config, execute)
    assert result.total == 50
    assert result.failed == 0
    late = [r for r in result.records if 0 < r.scheduled < 0.29]
    assert late
    for r in late:
        assert r.started is not None
        assert r.started >= 0.29
        # latency from the schedule, not from the (late) start: the wait is included
        assert r.latency >= 0.29 - r.scheduled
        assert r.latency > r.ended - r.started
    assert result.percentile(99) is not None
    assert result.percentile(99) >= 0.2  # type: ignore[operator]


async def test_max_inflight_records_overloaded() -> None:
    async def stalled(attempt: Attempt) -> str:
        await asyncio.sleep(3600)
        return OK

    config = LoadConfig("http://a/", rate=100, duration=0.2, timeout=0.5, max_inflight=5)
    result = await run_open_loop(config, stalled)
    assert result.total == 20
    assert result.outcomes() == {OVERLOADED: 15, TIMEOUT: 5}
    for r in result.records:
        assert (r.started is None) == (r.outcome == OVERLOADED)


async def test_outcomes_from_the_executor() -> None:
    async def execute(attempt: Attempt) -> str:
        attempt.connection = "reused" if attempt.keepalive else "new"
        if attempt.index % 3 == 1:
            attempt.phase = "connect"
            raise ConnectionRefusedError(errno.ECONNREFUSED, "refused")
        if attempt.index % 3 == 2:
            attempt.status = 503
            return http_outcome(503)
        return OK

    result = await run_open_loop(LoadConfig("http://a/", rate=200, duration=0.06, mode="mixed"), execute)
    assert [r.outcome for r in result.records] == [OK, CONNECT_ERROR, "http_503"] * 4
    assert [r.mode for r in result.records[:2]] == ["new", "keepalive"]
    assert [r.connection for r in result.records[:2]] == ["new", "reused"]
    assert result.records[2].status == 503
    assert result.connections() == {"new": 6, "reused": 6}


# HTTP response framing


async def framed(data: bytes, *, head: bool = False) -> tuple[int, bool, bytes]:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    status, close = await read_response(reader, head=head)
    return status, close, await reader.read()


async def test_read_response_framing() -> None:
    assert await framed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloNEXT") == (200, False, b"NEXT")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\nNEXT"
    assert await framed(chunked) == (200, False, b"NEXT")
    assert await framed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof") == (200, True, b"")
    assert await framed(b"HTTP/1.1 503 x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") == (
        503,
        True,
        b"",
    )
    assert await framed(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n") == (200, True, b"")
    keep10 = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"
    assert await framed(keep10) == (200, False, b"")
    assert await framed(b"HTTP/1.1 204 No\r\n\r\nNEXT") == (204, False, b"NEXT")
    assert await framed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nNEXT", head=True) == (
        200,
        False,
        b"NEXT",
    )
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    assert await framed(interim) == (201, False, b"")


@pytest.mark.parametrize(
    ("data", "outcome"),
    [
        (b"", CLOSED),
        (b"HTTP/1.1 200 OK\r\n", SHORT_READ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", SHORT_READ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", SHORT_READ),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", PROTOCOL_ERROR),
        (b"SSH-2.0-OpenSSH\r\n", PROTOCOL_ERROR),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", PROTOCOL_ERROR),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab", PROTOCOL_ERROR),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n", PROTOCOL_ERROR),
    ],
)
async def test_read_response_failures(data: bytes, outcome: str) -> None:
    reader = asyncio.StreamReader(limit=64 * 1024)
    reader.feed_data(data)
    reader.feed_eof()
    with pytest.raises(RequestFailed) as info:
        await read_response(reader)
    assert info.value.outcome == outcome


# requests on the wire and the kept-alive pool


def test_http_request_bytes() -> None:
    target = Target.parse("http://svc:9080/productpage?x=1")
    get = HttpClient(LoadConfig("http://svc:9080/productpage?x=1", rate=1, duration=1), target)
    text = get.request(7, keepalive=True).decode()
    assert text.startswith("GET /productpage?x=1 HTTP/1.1\r\nHost: svc:9080\r\n")
    assert "Connection: keep-alive\r\n" in text
    assert "X-Request-Id: ambit-load-7\r\n" in text
    assert "Content-Length" not in text
    assert text.endswith("\r\n\r\n")
    config = LoadConfig(
        "http://svc:9080/", rate=1, duration=1, payload=100, marker="evt", headers=(("X-A", "b"),)
    )
    post = HttpClient(config, Target.parse(config.target))
    raw = post.request(3, keepalive=False)
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST / HTTP/1.1")
    assert b"Connection: close" in head
    assert b"X-A: b" in head
    assert b"Content-Length: 100" in head
    assert len(body) == 100
    assert body.startswith(b"evt 3 ")


def test_tcp_line() -> None:
    config = LoadConfig("tcp://a:9000", rate=1, duration=1, marker="m")
    client = TcpClient(config, Target.parse(config.target))
    line = client.line(12)
    assert len(line) == 64
    assert line.startswith(b"m 12 ")
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    tiny = LoadConfig("tcp://a:9000", rate=1, duration=1, marker="marker", payload=4)
    assert TcpClient(tiny, Target.parse(tiny.target)).line(123) == b"marker 123 \n"


class FakeConn:
    def __init__(self) -> None:
        self.alive = True
        self.closed = False

    def usable(self) -> bool:
        return self.alive and not self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def test_pool_fills_to_size_then_reuses_first_in_first_out() -> None:
    pool = KeepAlivePool(size=2, limit=3)
    assert pool.take() is None  # below size: open a new one
    pool.reserve()
    a = FakeConn()
    pool.give_back(a, reusable=True)  # type: ignore[arg-type]
    assert pool.take() is None  # still below size, although `a` is idle
    pool.reserve()
    b = FakeConn()
    pool.give_back(b, reusable=True)  # type: ignore[arg-type]
    assert pool.take() is a
    assert pool.take() is b
    # both busy: one extra connection up to the limit, then overloaded
    pool.reserve()
    with pytest.raises(RequestFailed) as info:
        pool.reserve()
    assert info.value.outcome == OVERLOADED
    extra = FakeConn()
    pool.give_back(extra, reusable=True)  # type: ignore[arg-type]
    assert extra.closed  # above size: not pooled
    assert pool.open == 2
    pool.give_back(a, reusable=True)  # type: ignore[arg-type]
    b.alive = False  # closed by the peer while busy
    pool.give_back(b, reusable=True)  # type: ignore[arg-type]
    assert b.closed
    assert pool.open == 1
    assert pool.take() is None  # below size again
    pool.reserve()
    pool.give_back(FakeConn(), reusable=True)  # type: ignore[arg-type]
    a.alive = False  # closed by the peer while idle: skipped
    taken = pool.take()
    assert taken is not None
    assert taken is not a
    assert a.closed
    pool.give_back(taken, reusable=False)  # type: ignore[arg-type]
    pool.close()
    assert pool.open == 0
