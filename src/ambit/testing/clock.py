"""A hand-driven clock for tests of time-dependent async code (certificate refresh, backoff).

``FakeClock`` satisfies ``ambit.identity.secrets.Clock``. Its ``sleep`` blocks until the test moves
time forward past the sleeper's deadline; nothing ever waits for real time. Every requested sleep
duration is recorded in ``sleeps`` so tests can assert on backoff intervals.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)
SETTLE_ROUNDS = 100


class FakeClock:
    """Time that moves only when told to (``advance`` / ``run_for``)."""

    def __init__(self, start: datetime = DEFAULT_START) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` forward (a non-positive wait only yields)."""
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        item = (self._now + timedelta(seconds=seconds), next(self._order), future)
        heapq.heappush(self._sleepers, item)
        try:
            await future
        finally:
            if item in self._sleepers:
                self._sleepers.remove(item)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper whose deadline has passed.

        Woken tasks run only once the test yields to the loop (``await clock.settle()``).
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._now += timedelta(seconds=seconds)
        self._wake()

    def _wake(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    @property
    def pending(self) -> list[float]:
        """Seconds from now until each pending sleeper's deadline, soonest first."""
        return sorted((deadline - self._now).total_seconds() for deadline, _, _ in self._sleepers)

    async def settle(self, rounds: int = SETTLE_ROUNDS) -> None:
        """Let ready tasks run: yield to the event loop ``rounds`` times without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def run_for(self, seconds: float) -> None:
        """Move time forward by ``seconds`` one deadline at a time, letting tasks run at each step.

        Unlike a single ``advance``, a task that sleeps again after waking (a retry loop) gets its
        next deadline measured from the moment it woke, as with a real clock.
        """
        target = self._now + timedelta(seconds=seconds)
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            self._now = max(self._now, self._sleepers[0][0])
            self._wake()
            await self.settle()
        self._now = target
        self._wake()
        await self.settle()
