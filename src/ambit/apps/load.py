"""An open-loop, fixed-rate HTTP/TCP load client that records every request.

Open loop, no coordinated omission
----------------------------------
Request ``i`` is *scheduled* at ``i / rate`` seconds after the start, whatever happened to the
requests before it; there are exactly ``floor(rate * duration)`` of them, so a stalled server or a
lagging event loop never reduces the number of requests. Each request's ``latency`` is measured
from its scheduled time, not from when it was actually sent: time spent waiting to be sent counts
(``started - scheduled`` shows how late it went out; should a millisecond timer such as uvloop's
fire early, latency counts from the actual start instead). A request that cannot start because
of a limit is recorded too, as ``overloaded``:

* ``max_inflight`` (default 4096): requests outstanding at once, in every mode (the record's
  ``started`` is None: it never ran);
* keep-alive connections: the pool keeps ``connections`` (N) connections, used one request at a
  time and reused first in, first out. When all are busy, a request opens an extra connection, up
  to ``max_connections`` open at once (default ``max(N, 512)``); extra connections are closed
  after their request rather than pooled. Beyond that bound the request is ``overloaded`` (it
  started, but got no connection) — or, with ``queue``, it waits for the next connection to come
  free (first come, first served), and the wait counts in its latency: a fixed pool of exactly
  ``max_connections`` connections, as fortio's ``-c`` with ``-qps``.

Each request runs under ``timeout`` seconds (default 5) from its actual start.

Modes
-----
``new``: a new TCP connection per request (HTTP sends ``Connection: close``). ``keepalive``: the
pool above. ``mixed``: even-numbered requests new, odd-numbered kept-alive.

A kept-alive connection found closed by the peer while idle is discarded before use. If a *reused*
connection fails with ``closed``/``reset`` before a single response byte arrives (the peer closed
it as the request went out), the request is retried once on a new connection, as HTTP clients do
for idle connections; such records have ``retried`` True and `LoadResult.retried` counts them, so
a test can forbid them.

Outcomes
--------
``ok`` (HTTP 2xx; TCP: the exact echo), ``http_<status>`` (any other final status),
``connect_error`` (refused, unreachable, resolution failed), ``timeout`` (detail: the phase),
``reset`` (ECONNRESET/EPIPE), ``closed`` (EOF before any response byte), ``short_read`` (EOF in
the middle of a response or echo), ``protocol_error`` (unparseable HTTP), ``mismatch`` (TCP echo
differs), ``overloaded`` (a limit above), ``error`` (anything else; detail says what).

Targets: ``http://host[:port]/path?query`` (https is not supported) or ``tcp://host:port``. TCP
requests send a line ``<marker> <index> ....\\n`` of ``payload`` bytes (default 64) and expect it
back (with ``expect_prefix``: ``<prefix> <line>``, the Istio tcp-echo answer). HTTP requests send
``X-Request-Id: <marker>-<index>``; with ``payload`` > 0 a body of that many bytes (POST unless
``method`` says otherwise).

Bounds: rate <= 20000/s, duration <= 3600 s, at most 1,000,000 requests per run, timeout <= 60 s.
The run ends by itself at about ``duration + timeout``.

API: ``await run_load(LoadConfig(...)) -> LoadResult``; the CLI is ``ambit app load``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import socket
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ambit.net.tasks import spawn

Mode = Literal["new", "keepalive", "mixed"]
MODES: tuple[Mode, ...] = ("new", "keepalive", "mixed")

MAX_RATE = 20000.0
MAX_DURATION = 3600.0
MAX_REQUESTS = 1_000_000
MAX_TIMEOUT = 60.0
MAX_PAYLOAD = 1024 * 1024
DEFAULT_TIMEOUT = 5.0
DEFAULT_CONNECTIONS = 8
DEFAULT_TCP_PAYLOAD = 64
_MAX_HEAD_LINE = 64 * 1024
_MAX_HEADERS = 200

OK = "ok"
CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"
RESET = "reset"
CLOSED = "closed"
SHORT_READ = "short_read"
PROTOCOL_ERROR = "protocol_error"
MISMATCH = "mismatch"
OVERLOADED = "overloaded"
ERROR = "error"

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class RequestFailed(Exception):
    """A request ended with `outcome` (one of the outcome names); raised inside a request."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome = outcome
        self.detail = detail


def http_outcome(status: int) -> str:
    """``ok`` for 2xx, ``http_<status>`` otherwise."""
    return OK if 200 <= status <= 299 else f"http_{status}"


def classify(exc: BaseException, phase: str) -> tuple[str, str]:
    """(outcome, detail) for an exception that ended a request in `phase` (connect/request/response)."""
    if isinstance(exc, RequestFailed):
        return exc.outcome, exc.detail
    if isinstance(exc, TimeoutError):
        return TIMEOUT, phase
    if isinstance(exc, asyncio.IncompleteReadError):
        return (SHORT_READ if exc.partial else CLOSED), f"{phase}: {len(exc.partial)} bytes then EOF"
    if isinstance(exc, asyncio.LimitOverrunError):
        return PROTOCOL_ERROR, f"{phase}: line too long"
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if phase == "connect":
            return CONNECT_ERROR, f"{name}: {exc.strerror or exc}"
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or (
            exc.errno in _RESET_ERRNOS
        ):
            return RESET, f"{phase}: {name}"
        return ERROR, f"{phase}: {name}: {exc}"
    return ERROR, f"{phase}: {type(exc).__name__}: {exc}"


# configuration


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: ``http`` (host, port, path with query) or ``tcp`` (host, port)."""

    scheme: Literal["http", "tcp"]
    host: str
    port: int
    path: str = "/"

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "tcp"):
            raise ValueError(f"target must be http://host[:port]/path or tcp://host:port, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"target {url!r} has no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"target {url!r}: {exc}") from None
        if parts.scheme == "tcp":
            if port is None:
                raise ValueError(f"tcp target {url!r} needs a port")
            return cls("tcp", parts.hostname, port, "")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls("http", parts.hostname, 80 if port is None else port, path)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class LoadConfig:
    """One load run; see the module docstring for the meaning of each knob."""

    target: str
    rate: float
    duration: float
    mode: Mode = "keepalive"
    connections: int = DEFAULT_CONNECTIONS
    max_connections: int | None = None
    max_inflight: int = 4096
    timeout: float = DEFAULT_TIMEOUT
    payload: int | None = None
    marker: str = "ambit-load"
    method: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    expect_prefix: str | None = None
    retry_stale: bool = True
    queue: bool = False

    @property
    def total_requests(self) -> int:
        """How many requests the run schedules: ``floor(rate * duration)``."""
        return math.floor(self.rate * self.duration + 1e-9)

    @property
    def pool_limit(self) -> int:
        return self.max_connections if self.max_connections is not None else max(self.connections, 512)

    def payload_bytes(self, scheme: str) -> int:
        if self.payload is not None:
            return self.payload
        return DEFAULT_TCP_PAYLOAD if scheme == "tcp" else 0

    def validate(self) -> Target:
        """The parsed target; ValueError when a knob is out of bounds."""
        target = Target.parse(self.target)
        if not 0 < self.rate <= MAX_RATE:
            raise ValueError(f"rate must be in (0, {MAX_RATE:.0f}]")
        if not 0 < self.duration <= MAX_DURATION:
            raise ValueError(f"duration must be in (0, {MAX_DURATION:.0f}] seconds")
        if self.total_requests > MAX_REQUESTS:
            raise ValueError(f"rate * duration must not exceed {MAX_REQUESTS} requests")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ValueError(f"timeout must be in (0, {MAX_TIMEOUT:.0f}] seconds")
        if not 1 <= self.connections <= self.pool_limit:
            raise ValueError("need 1 <= connections <= max_connections")
        if self.max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        if not 0 <= self.payload_bytes(target.scheme) <= MAX_PAYLOAD:
            raise ValueError(f"payload must be in [0, {MAX_PAYLOAD}] bytes")
        if any(c in self.marker for c in "\r\n"):
            raise ValueError("marker must be one line")
        for name, value in self.headers:
            if not name or any(c in name + value for c in "\r\n") or ":" in name:
                raise ValueError(f"bad header {name!r}")
        return target

    def keepalive(self, index: int) -> bool:
        """Whether request `index` uses a kept-alive connection."""
        return self.mode == "keepalive" or (self.mode == "mixed" and index % 2 == 1)


# records and results


@dataclass(slots=True)
class RequestRecord:
    """One scheduled request. Times are seconds since the run's start (`LoadResult.started_monotonic`)."""

    index: int
    scheduled: float
    started: float | None
    ended: float
    outcome: str
    mode: str = ""  # "new" or "keepalive": what the request asked for
    connection: str = ""  # "new" or "reused": what it got ("" if it never got one)
    status: int | None = None
    detail: str = ""
    retried: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def latency(self) -> float:
        """Seconds from the scheduled start to the end (includes any delay in sending).

        From the actual start if that came first (a millisecond timer, as uvloop's, may fire early).
        """
        began = self.scheduled if self.started is None else min(self.scheduled, self.started)
        return self.ended - began

    def to_dict(self) -> dict[str, Any]:
        return {
            "i": self.index,
            "scheduled": round(self.scheduled, 6),
            "started": None if self.started is None else round(self.started, 6),
            "ended": round(self.ended, 6),
            "latency": round(self.latency, 6),
            "outcome": self.outcome,
            "mode": self.mode,
            "connection": self.connection,
            "status": self.status,
            "detail": self.detail,
            "retried": self.retried,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(
            index=int(data["i"]),
            scheduled=float(data["scheduled"]),
            started=None if data.get("started") is None else float(data["started"]),
            ended=float(data["ended"]),
            outcome=str(data["outcome"]),
            mode=str(data.get("mode", "")),
            connection=str(data.get("connection", "")),
            status=None if data.get("status") is None else int(data["status"]),
            detail=str(data.get("detail", "")),
            retried=bool(data.get("retried", False)),
        )


def percentile_of(sorted_values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (0 <= p <= 100) of an ascending sequence; None if it is empty."""
    if not 0 <= p <= 100:
        raise ValueError("percentile must be in [0, 100]")
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class SecondStats:
    """The requests *scheduled* in ``[second, second + 1)`` of the run."""

    second: int
    scheduled: int
    ok: int
    failed: int
    outcomes: dict[str, int]
    max_latency: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "second": self.second,
            "scheduled": self.scheduled,
            "ok": self.ok,
            "failed": self.failed,
            "outcomes": self.outcomes,
            "max_latency": None if self.max_latency is None else round(self.max_latency, 6),
        }


PERCENTILES = (50.0, 90.0, 99.0, 99.9)


@dataclass(slots=True)
class LoadResult:
    """Every request of a run, in schedule order, and what can be computed from them.

    Record times are seconds since `started_monotonic` (``time.monotonic()``, CLOCK_MONOTONIC,
    which on Linux is one clock for every process): an event timed with ``time.monotonic()``,
    in this process or another, is at ``t - started_monotonic`` on the run's timeline.
    """

    config: dict[str, Any]
    started_wall: float  # time.time() at the start
    started_monotonic: float  # time.monotonic() at the start; record times are relative to it
    elapsed: float  # seconds from the start to the last request's end
    records: list[RequestRecord] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return float(self.config["duration"])

    @property
    def total(self) -> int:
        return len(self.records)

    @property
    def ok(self) -> int:
        return sum(1 for r in self.records if r.outcome == OK)

    @property
    def failed(self) -> int:
        """How many requests did not end ``ok``."""
        return self.total - self.ok

    @property
    def failures(self) -> list[RequestRecord]:
        return [r for r in self.records if r.outcome != OK]

    @property
    def retried(self) -> int:
        return sum(1 for r in self.records if r.retried)

    def failed_between(self, start: float, end: float) -> list[RequestRecord]:
        """Failed requests scheduled in ``[start, end)`` (seconds since the start)."""
        return [r for r in self.records if r.outcome != OK and start <= r.scheduled < end]

    def outcomes(self) -> dict[str, int]:
        counts = Counter(r.outcome for r in self.records)
        return dict(sorted(counts.items(), key=lambda kv: (kv[0] != OK, -kv[1], kv[0])))

    def connections(self) -> dict[str, int]:
        """How many requests went on a new and on a reused connection."""
        counts = Counter(r.connection or "none" for r in self.records)
        return dict(sorted(counts.items()))

    def latencies(self, *, ok_only: bool = True) -> list[float]:
        """Latencies in seconds, ascending (of ``ok`` requests only, by default)."""
        return sorted(r.latency for r in self.records if r.outcome == OK or not ok_only)

    def percentile(self, p: float, *, ok_only: bool = True) -> float | None:
        """The `p`-th percentile latency in seconds (nearest rank), None without requests."""
        return percentile_of(self.latencies(ok_only=ok_only), p)

    @property
    def achieved_rate(self) -> float:
        """Requests actually started per second, over the longer of the schedule and the last start."""
        starts = [r.started for r in self.records if r.started is not None]
        if not starts:
            return 0.0
        return len(starts) / max(self.duration, *starts)

    def by_second(self) -> list[SecondStats]:
        """Per-second timeline by scheduled time; every second of the run appears, even empty."""
        seconds = max(1, math.ceil(self.duration - 1e-9))
        if self.records:
            seconds = max(seconds, math.floor(self.records[-1].scheduled) + 1)
        buckets: list[list[RequestRecord]] = [[] for _ in range(seconds)]
        for record in self.records:
            buckets[min(max(0, math.floor(record.scheduled)), seconds - 1)].append(record)
        timeline = []
        for second, bucket in enumerate(buckets):
            ok = sum(1 for r in bucket if r.outcome == OK)
            outcomes = dict(sorted(Counter(r.outcome for r in bucket).items()))
            latencies = [r.latency for r in bucket if r.outcome == OK]
            timeline.append(
                SecondStats(second, len(bucket), ok, len(bucket) - ok, outcomes, max(latencies, default=None))
            )
        return timeline

    def summary(self) -> dict[str, Any]:
        latencies = self.latencies()
        return {
            "target": self.config["target"],
            "mode": self.config["mode"],
            "rate": self.config["rate"],
            "duration": self.duration,
            "total": self.total,
            "ok": len(latencies),
            "failed": self.total - len(latencies),
            "retried": self.retried,
            "outcomes": self.outcomes(),
            "connections": self.connections(),
            "achieved_rate": round(self.achieved_rate, 3),
            "elapsed": round(self.elapsed, 3),
            "latency": {
                **{f"p{p:g}": _round(percentile_of(latencies, p)) for p in PERCENTILES},
                "max": _round(latencies[-1] if latencies else None),
            },
        }

    def to_dict(self, *, records: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "config": self.config,
            "started_wall": self.started_wall,
            "started_monotonic": self.started_monotonic,
            "elapsed": self.elapsed,
            "summary": self.summary(),
            "by_second": [s.to_dict() for s in self.by_second()],
        }
        if records:
            data["records"] = [r.to_dict() for r in self.records]
        return data

    def to_json(self, *, records: bool = True, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(records=records), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadResult:
        return cls(
            config=dict(data["config"]),
            started_wall=float(data["started_wall"]),
            started_monotonic=float(data["started_monotonic"]),
            elapsed=float(data["elapsed"]),
            records=[RequestRecord.from_dict(r) for r in data.get("records", [])],
        )

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        return cls.from_dict(json.loads(text))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


# the open-loop scheduler


@dataclass(slots=True)
class Attempt:
    """What a request's executor learns while it runs (read by the scheduler for the record)."""

    index: int
    keepalive: bool
    phase: str = "connect"
    connection: str = ""
    status: int | None = None
    retried: bool = False


Execute = Callable[[Attempt], Awaitable[str]]
"""Runs one request; returns its outcome (``ok``, ``http_503``) or raises (see `classify`)."""


def _config_dict(config: LoadConfig, scheme: str) -> dict[str, Any]:
    data = asdict(config)
    data["payload"] = config.payload_bytes(scheme)
    data["max_connections"] = config.pool_limit
    data["headers"] = [list(h) for h in config.headers]
    data["total_requests"] = config.total_requests
    return data


class _OpenLoop:
    """One run of `run_open_loop`: the schedule, the requests in flight and their records."""

    def __init__(self, config: LoadConfig, execute: Execute) -> None:
        self.config = config
        self.execute = execute
        self.interval = 1.0 / config.rate
        self.records: list[RequestRecord | None] = [None] * config.total_requests
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle = asyncio.Event()
        self.idle.set()
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def one(self, index: int, scheduled: float) -> None:
        started = self.now()
        attempt = Attempt(index, self.config.keepalive(index))
        detail = ""
        try:
            async with asyncio.timeout(self.config.timeout):
                outcome = await self.execute(attempt)
        except Exception as exc:
            outcome, detail = classify(exc, attempt.phase)
        self.records[index] = RequestRecord(
            index,
            scheduled,
            started,
            self.now(),
            outcome,
            "keepalive" if attempt.keepalive else "new",
            attempt.connection,
            attempt.status,
            detail,
            attempt.retried,
        )

    def finished(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not self.tasks:
            self.idle.set()

    def launch(self, index: int, scheduled: float) -> None:
        if len(self.tasks) >= self.config.max_inflight:
            self.records[index] = RequestRecord(
                index,
                scheduled,
                None,
                self.now(),
                OVERLOADED,
                "keepalive" if self.config.keepalive(index) else "new",
                detail=f"{self.config.max_inflight} requests in flight",
            )
            return
        task = spawn(self.one(index, scheduled), name=f"load-{index}")
        self.tasks.add(task)
        self.idle.clear()
        task.add_done_callback(self.finished)

    async def schedule(self) -> None:
        since_yield = 0
        for index in range(len(self.records)):
            scheduled = index * self.interval
            delay = scheduled - self.now()
            if delay > 0:
                await asyncio.sleep(delay)
                since_yield = 0
            elif since_yield >= 32:  # behind schedule: still let the requests run
                await asyncio.sleep(0)
                since_yield = 0
            self.launch(index, scheduled)
            since_yield += 1
        # Every request ends within its own timeout; the margin only guards against a stuck executor.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.timeout + 5.0):
                await self.idle.wait()

    async def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    def complete(self) -> list[RequestRecord]:
        end = self.now()
        return [
            r
            if r is not None
            else RequestRecord(i, i * self.interval, None, end, TIMEOUT, detail="cancelled at the end")
            for i, r in enumerate(self.records)
        ]


async def run_open_loop(config: LoadConfig, execute: Execute) -> LoadResult:
    """Schedule `config.total_requests` calls of `execute` at fixed intervals and record each.

    This is the transport-independent core of `run_load` (see the module docstring).
    """
    target = config.validate()
    wall0 = time.time()
    run = _OpenLoop(config, execute)
    try:
        await run.schedule()
    finally:
        await run.cancel()
    records = run.complete()
    return LoadResult(
        config=_config_dict(config, target.scheme),
        started_wall=wall0,
        started_monotonic=run.t0,
        elapsed=max((r.ended for r in records), default=0.0),
        records=records,
    )


# transports


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class _Pool:
    """Kept-alive connections: see "keep-alive connections" in the module docstring."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        self.open = 0
        self.idle: deque[_Conn] = deque()
        # Requests queued for a connection (``queue``): handed a free connection, or None for a free slot.
        self.waiters: deque[asyncio.Future[_Conn | None]] = deque()

    async def wait(self) -> _Conn | None:
        """Queue for the next connection (or free slot) when all ``limit`` are busy."""
        waiter: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()  # handed over as we were cancelled (timeout): pass it on
                if handed is not None:
                    self.give_back(handed, True)
                else:
                    self.open -= 1  # the slot reserved for us goes to the next in line
                    self._slot_freed()
            else:
                self.waiters.remove(waiter)
            raise

    def _next_waiter(self) -> asyncio.Future[_Conn | None] | None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                return waiter
        return None

    def _slot_freed(self) -> None:
        waiter = self._next_waiter()
        if waiter is not None:
            self.open += 1  # the waiter opens a new connection in this slot
            waiter.set_result(None)

    def take(self) -> _Conn | None:
        """An idle usable connection if the pool is full; None: the caller opens one (see `reserve`)."""
        if self.open < self.size:
            return None
        while self.idle:
            conn = self.idle.popleft()
            if conn.usable():
                return conn
            self.discard(conn)
        return None

    def reserve(self) -> None:
        if self.open >= self.limit:
            raise RequestFailed(OVERLOADED, f"{self.limit} kept-alive connections busy")
        self.open += 1

    def give_back(self, conn: _Conn, reusable: bool) -> None:
        if reusable and self.open <= self.size and conn.usable():
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_result(conn)
            else:
                self.idle.append(conn)
        else:
            conn.close()
            self.open -= 1
            self._slot_freed()

    def discard(self, conn: _Conn) -> None:
        conn.abort()
        self.open -= 1
        self._slot_freed()

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()
            self.open -= 1


class _Client:
    """Connections for one run; subclasses speak HTTP or TCP echo over them."""

    def __init__(self, config: LoadConfig, target: Target) -> None:
        self.config = config
        self.target = target
        self.address: tuple[str, int] = (target.host, target.port)
        self.pool = _Pool(config.connections, config.pool_limit)

    async def prepare(self) -> None:
        """Resolve the host once; if that fails, every connect resolves (and fails) by itself."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(self.target.host, self.target.port, type=socket.SOCK_STREAM)
        except OSError:
            return
        if infos:
            self.address = (str(infos[0][4][0]), self.target.port)

    async def _connect(self, attempt: Attempt) -> _Conn:
        attempt.phase = "connect"
        attempt.connection = "new"
        reader, writer = await asyncio.open_connection(*self.address, limit=_MAX_HEAD_LINE)
        return _Conn(reader, writer)

    async def _acquire(self, attempt: Attempt, *, fresh: bool) -> _Conn:
        if not attempt.keepalive:
            return await self._connect(attempt)
        conn = None if fresh else self.pool.take()
        if conn is not None:
            attempt.connection = "reused"
            return conn
        if self.config.queue and self.pool.open >= self.pool.limit:
            attempt.phase = "queued"
            conn = await self.pool.wait()
            if conn is not None:
                attempt.connection = "reused"
                return conn
        else:
            self.pool.reserve()
        try:
            return await self._connect(attempt)
        except BaseException:
            self.pool.open -= 1
            self.pool._slot_freed()
            raise

    def _release(self, attempt: Attempt, conn: _Conn, reusable: bool) -> None:
        if attempt.keepalive:
            self.pool.give_back(conn, reusable)
        else:
            conn.close()

    def _drop(self, attempt: Attempt, conn: _Conn) -> None:
        if attempt.keepalive:
            self.pool.discard(conn)
        else:
            conn.abort()

    async def execute(self, attempt: Attempt) -> str:
        fresh = False
        while True:
            conn = await self._acquire(attempt, fresh=fresh)
            try:
                outcome, reusable = await self._exchange(attempt, conn)
            except BaseException as exc:
                self._drop(attempt, conn)
                if (
                    not fresh
                    and attempt.connection == "reused"
                    and self.config.retry_stale
                    and _stale(exc, attempt.phase)
                ):
                    fresh = attempt.retried = True
                    continue
                raise
            self._release(attempt, conn, reusable)
            return outcome

    async def _exchange(self, attempt: Attempt, conn: _Conn) -> tuple[str, bool]:
        raise NotImplementedError

    def close(self) -> None:
        self.pool.close()


def _stale(exc: BaseException, phase: str) -> bool:
    """Whether `exc` says a reused connection was gone before any response byte arrived."""
    if phase not in ("request", "response"):
        return False
    if isinstance(exc, RequestFailed):
        return exc.outcome == CLOSED
    if isinstance(exc, asyncio.IncompleteReadError):
        return not exc.partial
    return isinstance(exc, ConnectionResetError | BrokenPipeError)


class _HttpClient(_Client):
    def __init__(self, config: LoadConfig, target: Target) -> None:
        super().__init__(config, target)
        size = config.payload_bytes("http")
        self.method = (config.method or ("POST" if size else "GET")).upper()
        self.payload = size

    def request(self, index: int, keepalive: bool) -> bytes:
        body = _filler(f"{self.config.marker} {index} ".encode(), self.payload, b"x") if self.payload else b""
        lines = [
            f"{self.method} {self.target.path} HTTP/1.1",
            f"Host: {self.target.host_header}",
            "User-Agent: ambit-load",
            f"Connection: {'keep-alive' if keepalive else 'close'}",
            f"X-Request-Id: {self.config.marker}-{index}",
        ]
        lines += [f"{name}: {value}" for name, value in self.config.headers]
        if body or self.method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _exchange(self, attempt: Attempt, conn: _Conn) -> tuple[str, bool]:
        attempt.phase = "request"
        conn.writer.write(self.request(attempt.index, attempt.keepalive))
        await conn.writer.drain()
        attempt.phase = "response"
        status, close = await read_response(conn.reader, head=self.method == "HEAD")
        attempt.status = status
        return http_outcome(status), not close


class _TcpClient(_Client):
    def __init__(self, config: LoadConfig, target: Target) -> None:
        super().__init__(config, target)
        self.payload = config.payload_bytes("tcp")
        self.prefix = b"" if config.expect_prefix is None else config.expect_prefix.encode() + b" "

    def line(self, index: int) -> bytes:
        head = f"{self.config.marker} {index} ".encode()
        return _filler(head, max(self.payload, len(head) + 1) - 1, b".") + b"\n"

    async def _exchange(self, attempt: Attempt, conn: _Conn) -> tuple[str, bool]:
        attempt.phase = "request"
        line = self.line(attempt.index)
        expected = self.prefix + line
        conn.writer.write(line)
        await conn.writer.drain()
        attempt.phase = "response"
        echo = await conn.reader.readexactly(len(expected))
        if echo != expected:
            raise RequestFailed(MISMATCH, f"sent {line[:40]!r}, got {echo[:40]!r}")
        return OK, True


def _filler(head: bytes, size: int, pad: bytes) -> bytes:
    return head[:size] if len(head) >= size else head + pad * (size - len(head))


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, bool]:
    """Read one HTTP/1.x response (discarding the body): (status, whether the connection must close).

    Raises RequestFailed: ``closed`` (EOF before the first byte), ``short_read`` (EOF later),
    ``protocol_error`` (not HTTP/1.x, bad framing, a line over 64 KiB).
    """
    got_any = False
    try:
        while True:
            line = await reader.readuntil(b"\r\n")
            got_any = True
            version, status = _status_line(line)
            headers = await _headers(reader)
            if 100 <= status <= 199:
                continue  # interim response: the final one follows
            break
        connection = headers.get("connection", "").lower()
        close = "close" in connection or (version == "HTTP/1.0" and "keep-alive" not in connection)
        if head or status in (204, 304):
            return status, close
        if "chunked" in headers.get("transfer-encoding", "").lower():
            await _chunked(reader)
        elif "content-length" in headers:
            await _discard(reader, _content_length(headers["content-length"]))
        else:
            while await reader.read(65536):
                pass
            close = True
        return status, close
    except asyncio.IncompleteReadError as exc:
        if got_any or exc.partial:
            raise RequestFailed(SHORT_READ, "EOF in the middle of the response") from None
        raise RequestFailed(CLOSED, "EOF before the response") from None
    except asyncio.LimitOverrunError:
        raise RequestFailed(PROTOCOL_ERROR, "response line longer than 64 KiB") from None


def _status_line(line: bytes) -> tuple[str, int]:
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1].isdigit():
        raise RequestFailed(PROTOCOL_ERROR, f"bad status line {line[:60]!r}")
    return parts[0], int(parts[1])


async def _headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            return headers
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep:
            raise RequestFailed(PROTOCOL_ERROR, f"bad header line {line[:60]!r}")
        key = name.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    raise RequestFailed(PROTOCOL_ERROR, f"more than {_MAX_HEADERS} headers")


def _content_length(text: str) -> int:
    values = {v.strip() for v in text.split(",")}
    if len(values) != 1 or not (value := values.pop()).isdigit():
        raise RequestFailed(PROTOCOL_ERROR, f"bad Content-Length {text!r}")
    return int(value)


async def _discard(reader: asyncio.StreamReader, size: int) -> None:
    while size > 0:
        size -= len(await reader.readexactly(min(size, 65536)))


async def _chunked(reader: asyncio.StreamReader) -> None:
    while True:
        line = await reader.readuntil(b"\r\n")
        text = line.split(b";", 1)[0].strip()
        try:
            size = int(text, 16)
        except ValueError:
            raise RequestFailed(PROTOCOL_ERROR, f"bad chunk size {line[:40]!r}") from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
            return
        await _discard(reader, size + 2)


async def run_load(config: LoadConfig) -> LoadResult:
    """Run `config` against its target and return every request's record (see the module docstring)."""
    target = config.validate()
    client: _Client = _HttpClient(config, target) if target.scheme == "http" else _TcpClient(config, target)
    await client.prepare()
    try:
        return await run_open_loop(config, client.execute)
    finally:
        client.close()


__all__ = [
    "MODES",
    "Attempt",
    "LoadConfig",
    "LoadResult",
    "Mode",
    "RequestFailed",
    "RequestRecord",
    "SecondStats",
    "Target",
    "classify",
    "http_outcome",
    "percentile_of",
    "read_response",
    "run_load",
    "run_open_loop",
]
