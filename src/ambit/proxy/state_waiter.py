"""The sync gate: "has the first config synced, and is this workload in it?", and a way to wait for it.

A proxy holds a connection (or a pod's start) until its config has synced and holds the workload, then
refuses it when that did not happen in time (connections are held, then refused: DESIGN §5, facts
§1.10). :class:`StateWaiter` follows a :class:`~ambit.state.store.StateStore` and wakes its waiters on
every change.
"""

from __future__ import annotations

import asyncio

from ambit.state.snapshot import Snapshot
from ambit.state.store import StateStore


class StateWaiter:
    """Whether the config has synced and holds a given pod; wakes waiters on every change."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._synced = False
        self._wake: asyncio.Future[None] | None = None
        self._waiting = 0
        self._unsubscribe = store.subscribe(self._changed)

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def waiting(self) -> int:
        """How many callers are held in :meth:`wait_ready` right now (observability and tests)."""
        return self._waiting

    def mark_synced(self) -> None:
        """The first config is in the store (the xDS client's ``synced``); never unset."""
        self._synced = True
        self._pulse()

    def ready(self, uid: str) -> Snapshot | None:
        """The current snapshot if it is synced and holds workload ``uid``, else None."""
        snapshot = self.store.current
        if self._synced and uid in snapshot.workloads:
            return snapshot
        return None

    async def wait_ready(self, uid: str, wait_seconds: float) -> Snapshot | None:
        """:meth:`ready`, waiting up to ``wait_seconds`` for it; None when it did not happen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while (snapshot := self.ready(uid)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._wake is None or self._wake.done():
                self._wake = loop.create_future()
            self._waiting += 1
            try:
                await asyncio.wait([self._wake], timeout=remaining)
            finally:
                self._waiting -= 1
        return snapshot

    def close(self) -> None:
        self._unsubscribe()
        self._pulse()

    def _changed(self, _snapshot: Snapshot) -> None:
        self._pulse()

    def _pulse(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)
