"""Kept-alive connections: one stream pair per `Connection`, and the `KeepAlivePool` that lends them.

See "keep-alive connections" in the package docstring of ``ambit.apps.load``.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ambit.apps.load.outcomes import OVERLOADED, RequestFailed


class Connection:
    """One TCP connection's reader and writer, new or kept alive, and when it was connected
    (``time.monotonic()``)."""

    __slots__ = ("connected", "reader", "writer")

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connected: float | None = None
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.connected = time.monotonic() if connected is None else connected

    def usable(self) -> bool:
        return not (self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class KeepAlivePool:
    """Kept-alive connections: see "keep-alive connections" in the module docstring."""

    def __init__(self, size: int, limit: int, max_age: float | None = None) -> None:
        self.size = size
        self.limit = limit
        self.max_age = max_age  # seconds since connected; an older connection is closed, not reused
        self.open = 0
        self.idle: deque[Connection] = deque()
        # Requests queued for a connection (``queue``): handed a free connection, or None for a free slot.
        self.waiters: deque[asyncio.Future[Connection | None]] = deque()

    async def wait(self) -> Connection | None:
        """Queue for the next connection (or free slot) when all ``limit`` are busy."""
        waiter: asyncio.Future[Connection | None] = asyncio.get_running_loop().create_future()
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

    def _next_waiter(self) -> asyncio.Future[Connection | None] | None:
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

    def take(self) -> Connection | None:
        """An idle usable connection if the pool is full; None: the caller opens one (see `reserve`)."""
        if self.open < self.size:
            return None
        while self.idle:
            conn = self.idle.popleft()
            if not conn.usable():
                self.discard(conn)
            elif self.expired(conn):
                self.retire(conn)
            else:
                return conn
        return None

    def expired(self, conn: Connection) -> bool:
        """Whether `conn` is older than ``max_age`` (never without one)."""
        return self.max_age is not None and time.monotonic() - conn.connected > self.max_age

    def reserve(self) -> None:
        if self.open >= self.limit:
            raise RequestFailed(OVERLOADED, f"{self.limit} kept-alive connections busy")
        self.open += 1

    def unreserve(self) -> None:
        """Free a slot taken by `reserve` (or handed to a waiter) whose connection never opened."""
        self.open -= 1
        self._slot_freed()

    def give_back(self, conn: Connection, reusable: bool) -> None:
        if reusable and self.open <= self.size and conn.usable() and not self.expired(conn):
            waiter = self._next_waiter()
            if waiter is not None:
                waiter.set_result(conn)
            else:
                self.idle.append(conn)
        else:
            self.retire(conn)

    def retire(self, conn: Connection) -> None:
        """Close `conn` cleanly (it is not reused) and free its slot."""
        conn.close()
        self.open -= 1
        self._slot_freed()

    def discard(self, conn: Connection) -> None:
        conn.abort()
        self.open -= 1
        self._slot_freed()

    def close(self) -> None:
        while self.idle:
            self.idle.popleft().close()
            self.open -= 1
