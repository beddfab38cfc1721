"""An informer: a local cache of some kinds of objects, kept current by list + watch.

It LISTs (recording the list's revision, not the items'), WATCHes from that revision, and applies
every event to ``cache``. On 410 Gone it relists and diffs the new list against the cache, so
deletions that happened while it was behind still reach the subscribers as DELETED events. When the
store is unreachable (down, restarting) it retries with jittered exponential backoff and resumes the
watch from the last revision it saw (bookmarks included); it never gives up while running.

    informer = Informer(client, ["Pod", "Service"])
    informer.subscribe(on_change)          # on_change(type, obj), sync or async, called in order
    informer.start()
    await informer.wait_synced()
    ...
    await informer.close()

Subscribers run on the event loop, one event at a time: they must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from ambit.net.tasks import spawn
from ambit.resources.source import ObjectSource
from ambit.store.types import (
    ADDED,
    BOOKMARK,
    DELETED,
    MODIFIED,
    Gone,
    Key,
    Obj,
    StoreError,
    WatchEvent,
    object_key,
)

_log = logging.getLogger(__name__)

Handler = Callable[[str, Obj], Awaitable[None] | None]
ResyncHandler = Callable[[Mapping[Key, Obj]], Awaitable[None] | None]


class Informer:
    """A list+watch cache of `kinds` (every kind when None) from one object source (a store client)."""

    def __init__(
        self,
        client: ObjectSource,
        kinds: Iterable[str] | None = None,
        *,
        resync_period: float | None = None,
        on_resync: ResyncHandler | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        watch_timeout: float | None = 300.0,
        name: str = "informer",
    ) -> None:
        self.client = client
        self.kinds: frozenset[str] | None = frozenset(kinds) if kinds is not None else None
        self.resync_period = resync_period
        self.on_resync = on_resync
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.watch_timeout = watch_timeout
        self.name = name
        self._cache: dict[Key, Obj] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[None] | None = None
        self._closed = False
        self.resource_version: str | None = None
        #: how many LISTs it has made (the first one included); for tests and /debug
        self.lists = 0

    # -- what users see --------------------------------------------------------------------------

    @property
    def cache(self) -> Mapping[Key, Obj]:
        """A read-only view of the cached objects, keyed by ``(kind, namespace or "", name)``."""
        return MappingProxyType(self._cache)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def get(self, kind: str, name: str, namespace: str = "") -> Obj | None:
        return self._cache.get((kind, namespace, name))

    def subscribe(self, handler: Handler) -> Callable[[], None]:
        """Call `handler(type, obj)` for every change (ADDED, MODIFIED, DELETED); returns an unsubscribe."""
        self._handlers.append(handler)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.remove(handler)

        return unsubscribe

    def subscribe_queue(self, maxsize: int = 0) -> asyncio.Queue[tuple[str, Obj]]:
        """A queue receiving ``(type, obj)`` for every change. With `maxsize`, a full queue drops events
        (logged): prefer a callback or an unbounded queue that is drained promptly."""
        queue: asyncio.Queue[tuple[str, Obj]] = asyncio.Queue(maxsize)

        def put(kind: str, obj: Obj) -> None:
            try:
                queue.put_nowait((kind, obj))
            except asyncio.QueueFull:
                _log.warning("%s: subscriber queue full, dropped a %s event", self.name, kind)

        self.subscribe(put)
        return queue

    def start(self) -> None:
        if self._task is None:
            self._task = spawn(self._run(), name=f"{self.name}-run")
            if self.resync_period and self.on_resync is not None:
                self._resync_task = spawn(self._resync_loop(), name=f"{self.name}-resync")

    async def wait_synced(self) -> None:
        """Wait until the first LIST is in the cache (wrap in ``asyncio.timeout`` to bound it)."""
        await self._synced.wait()

    async def close(self) -> None:
        self._closed = True
        for task in (self._task, self._resync_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._resync_task = None

    async def __aenter__(self) -> Informer:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        need_list = True
        failures = 0
        while not self._closed:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch()
                failures = 0
            except Gone as exc:
                _log.info("%s: %s; relisting", self.name, exc)
                need_list = True
                failures += 1
                if failures > 1:  # a store answering 410 again and again: do not spin
                    await self._backoff(failures - 1)
            except StoreError as exc:
                failures += 1
                _log.info("%s: store unavailable (%s); retrying", self.name, exc)
                await self._backoff(failures)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                _log.exception("%s: unexpected failure; retrying", self.name)
                await self._backoff(failures)

    async def _backoff(self, failures: int) -> None:
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** min(failures - 1, 16))
        await asyncio.sleep(random.uniform(ceiling / 2, ceiling))

    async def _relist(self) -> None:
        listing = await self.client.list(self.kinds)
        self.lists += 1
        fresh = {object_key(obj): obj for obj in listing.items}
        old = self._cache
        self._cache = fresh
        self.resource_version = listing.resource_version
        changes: list[tuple[str, Obj]] = []
        for key, obj in old.items():
            if key not in fresh:
                changes.append((DELETED, obj))
        for key, obj in fresh.items():
            before = old.get(key)
            if before is None:
                changes.append((ADDED, obj))
            elif before.get("metadata", {}).get("resourceVersion") != obj.get("metadata", {}).get(
                "resourceVersion"
            ):
                changes.append((MODIFIED, obj))
        self._synced.set()
        for change_type, obj in changes:
            await self._dispatch(change_type, obj)

    async def _watch(self) -> None:
        assert self.resource_version is not None
        stream = self.client.watch(self.resource_version, self.kinds, timeout_seconds=self.watch_timeout)
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                await self._apply(event)

    async def _apply(self, event: WatchEvent) -> None:
        if event.type == BOOKMARK:
            if event.resource_version:
                self.resource_version = event.resource_version
            return
        if self.resource_version is not None and event.revision <= int(self.resource_version or 0):
            return  # already seen
        key = object_key(event.object)
        if event.type == DELETED:
            self._cache.pop(key, None)
        elif event.type in (ADDED, MODIFIED):
            self._cache[key] = event.object
        else:
            _log.warning("%s: ignoring a %r event", self.name, event.type)
        self.resource_version = event.resource_version
        if event.type in (ADDED, MODIFIED, DELETED):
            await self._dispatch(event.type, event.object)

    async def _dispatch(self, change_type: str, obj: Obj) -> None:
        for handler in list(self._handlers):
            try:
                result: Any = handler(change_type, obj)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s: a subscriber failed on %s %s", self.name, change_type, object_key(obj))

    async def _resync_loop(self) -> None:
        assert self.resync_period is not None and self.on_resync is not None
        while not self._closed:
            await asyncio.sleep(self.resync_period)
            if not self.synced:
                continue
            try:
                result: Any = self.on_resync(self.cache)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s: the resync handler failed", self.name)
