"""The informer over any ``ObjectSource``: an in-memory source drives list, watch, bookmarks and 410."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable
from typing import Any

import pytest

from ambit.resources.source import (
    ADDED,
    BOOKMARK,
    DELETED,
    Conflict,
    Gone,
    ListResult,
    NotFound,
    Obj,
    ObjectSource,
    WatchEvent,
)
from ambit.store import Informer

_END = WatchEvent("END", {})


def pod(name: str, rv: int) -> Obj:
    return {"kind": "Pod", "metadata": {"name": name, "namespace": "default", "resourceVersion": str(rv)}}


class MemorySource:
    """A minimal ObjectSource: objects by name, a revision counter, and a queue of watch events."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.revision = 0
        self.events: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.answer_gone = False
        self.lists = 0

    def put(self, name: str) -> Obj:
        self.revision += 1
        self.objects[name] = pod(name, self.revision)
        return self.objects[name]

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        if name not in self.objects:
            raise NotFound(name)
        return self.objects[name]

    async def list(
        self,
        kinds: str | Iterable[str] | None = None,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> ListResult:
        self.lists += 1
        return ListResult(items=list(self.objects.values()), resource_version=str(self.revision))

    async def watch(
        self,
        resource_version: str | int,
        kinds: Iterable[str] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        if self.answer_gone:
            self.answer_gone = False
            raise Gone("too old")
        while (event := await self.events.get()) is not _END:
            yield event

    async def create(self, obj: Obj) -> Obj:
        return self.put(obj["metadata"]["name"])

    async def update(self, obj: Obj) -> Obj:
        name = obj["metadata"]["name"]
        if self.objects[name]["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise Conflict(name, status=409)
        return self.put(name)

    async def delete(
        self, kind: str, name: str, namespace: str | None = None, *, resource_version: str | None = None
    ) -> Obj:
        return self.objects.pop(name)

    async def close(self) -> None:
        pass


async def eventually(predicate: Any) -> None:
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_an_informer_runs_on_any_object_source() -> None:
    memory = MemorySource()
    source: ObjectSource = memory
    memory.put("a")
    seen: list[tuple[str, str]] = []
    async with Informer(source, ["Pod"], backoff_initial=0.001) as informer:
        informer.subscribe(lambda change, obj: seen.append((change, obj["metadata"]["name"])))
        await informer.wait_synced()
        assert [key[2] for key in informer.cache] == ["a"]

        await memory.events.put(WatchEvent(ADDED, memory.put("b")))
        await eventually(lambda: ("ADDED", "b") in seen)
        await memory.events.put(WatchEvent(BOOKMARK, {"metadata": {"resourceVersion": "10"}}))
        await eventually(lambda: informer.resource_version == "10")

        # the history is gone while "a" was deleted: the relist reports the deletion
        del memory.objects["a"]
        memory.answer_gone = True
        await memory.events.put(_END)
        await eventually(lambda: (DELETED, "a") in seen)
        assert memory.lists == 2
        assert [key[2] for key in informer.cache] == ["b"]


async def test_compare_and_swap_through_the_protocol() -> None:
    source: ObjectSource = MemorySource()
    stored = await source.create(pod("a", 0))
    updated = await source.update(stored)
    with pytest.raises(Conflict):
        await source.update(stored)  # stale resourceVersion
    assert (await source.get("Pod", "a"))["metadata"]["resourceVersion"] == updated["metadata"][
        "resourceVersion"
    ]
