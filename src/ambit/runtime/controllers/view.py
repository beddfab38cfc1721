"""What every controller reads: the daemon's informer cache (:class:`ClusterView`), plus ``poll``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ambit.store import Informer


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = obj.get("metadata") or {}
    return found


class ClusterView:
    """The informer's cache as plain dicts; the daemon sets ``informer`` once it runs."""

    def __init__(self) -> None:
        self.informer: Informer | None = None

    def objects(self, kind: str) -> list[dict[str, Any]]:
        assert self.informer is not None
        return [dict(o) for (k, _ns, _n), o in self.informer.cache.items() if k == kind]

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        assert self.informer is not None
        found = self.informer.get(kind, name, namespace)
        return None if found is None else dict(found)


async def poll(predicate: Callable[[], bool], within: float, interval: float = 0.1) -> bool:
    """Wait until ``predicate()`` holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)
