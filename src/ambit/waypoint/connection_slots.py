"""A DestinationRule's ``tcp.maxConnections`` as the waypoint enforces it for HTTP/1.1 upstreams.

Envoy's HTTP/1.1 connection pool holds at most ``max_connections`` connections to a cluster; a request
that finds them all busy waits for one as a *pending* request, and a request that finds
``http1MaxPendingRequests`` already waiting overflows (503, flag ``UO``). An HTTP/1.1 request occupies
its connection until its response ends, so :class:`ConnectionSlots` counts requests in flight to the
Service from this replica: at most ``limit`` at once, at most ``max_pending`` more waiting (FIFO), the
rest refused. A waiting request that is cancelled (its client left) gives up its place; a slot freed
while a request waits passes straight to the first waiter. Limits are per waypoint replica, as Envoy's
circuit breakers are per proxy. Not thread-safe: one event loop.
"""

from __future__ import annotations

import asyncio
from collections import deque


class ConnectionSlots:
    """At most ``limit`` held, at most ``max_pending`` (None: unbounded) waiting for one."""

    def __init__(self, limit: int, max_pending: int | None) -> None:
        if limit < 1 or (max_pending is not None and max_pending < 1):
            raise ValueError(f"limit {limit!r} and max_pending {max_pending!r} must be at least 1")
        self.limit = limit
        self.max_pending = max_pending
        self.in_use = 0
        self.overflows = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def pending(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> bool:
        """Take a slot, waiting for one if all are held (True); False, at once, when the wait queue is
        full: an overflow."""
        if self.in_use < self.limit and not self.pending:
            self.in_use += 1
            return True
        if self.max_pending is not None and self.pending >= self.max_pending:
            self.overflows += 1
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot just as it gave up: pass it on
            else:
                waiter.cancel()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    def release(self) -> None:
        """Give a slot back: to the first request waiting, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: in_use is unchanged
                return
        if self.in_use == 0:
            raise RuntimeError("ConnectionSlots.release() without a matching acquire()")
        self.in_use -= 1
