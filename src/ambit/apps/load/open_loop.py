"""The open-loop scheduler: request ``i`` starts at ``i / rate`` whatever came before, and is recorded.

Transport-independent: `run_open_loop` calls an `Execute` per request (see "Open loop" in the package
docstring of ``ambit.apps.load``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from ambit.apps.load.config import LoadConfig
from ambit.apps.load.outcomes import OVERLOADED, TIMEOUT, classify
from ambit.apps.load.result import LoadResult, RequestRecord
from ambit.net.tasks import spawn


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


def config_dict(config: LoadConfig, scheme: str) -> dict[str, Any]:
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
        config=config_dict(config, target.scheme),
        started_wall=wall0,
        started_monotonic=run.t0,
        elapsed=max((r.ended for r in records), default=0.0),
        records=records,
    )
