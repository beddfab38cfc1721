"""Drain as a primitive: one trigger, many watchers; stop accepting, finish in-flight work, then close."""

from __future__ import annotations

import asyncio


class Drain:
    """A one-shot drain signal with a deadline, shared by every listener and long-lived task."""

    def __init__(self) -> None:
        self._started = asyncio.Event()
        self.deadline: float | None = None

    @property
    def draining(self) -> bool:
        return self._started.is_set()

    def start(self, deadline_seconds: float) -> None:
        if not self._started.is_set():
            self.deadline = asyncio.get_running_loop().time() + deadline_seconds
            self._started.set()

    async def wait(self) -> None:
        await self._started.wait()

    def remaining(self) -> float:
        if self.deadline is None:
            return float("inf")
        return max(0.0, self.deadline - asyncio.get_running_loop().time())
