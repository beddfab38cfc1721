"""The informer against a real store server: sync, events, 410 then relist with synthesized deletions,
surviving a store restart, resync."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ambit.store.client import StoreClient
from ambit.store.core import Schema
from ambit.store.informer import Informer
from ambit.store.server import StoreServer
from ambit.store.types import ADDED, DELETED, MODIFIED, Key, Obj, Op, WatchEvent, object_key


def cm(name: str, namespace: str = "default", **data: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def svc(name: str) -> Obj:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": 80}]},
    }


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-si-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def new_server(sock_dir: Path, **options: Any) -> StoreServer:
    options.setdefault("ensure_namespaces", ())
    return StoreServer(sock_dir / "data", sock_dir / "store.sock", schema=Schema.permissive(), **options)


@contextlib.asynccontextmanager
async def running(sock_dir: Path, **options: Any) -> AsyncIterator[StoreServer]:
    server = new_server(sock_dir, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Key]] = []
        self.changed = asyncio.Event()

    def __call__(self, kind: str, obj: Obj) -> None:
        self.events.append((kind, object_key(obj)))
        self.changed.set()

    async def wait_for(self, predicate: Any, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


async def eventually(predicate: Any, within: float = 5.0) -> None:
    """Poll a condition about the informer's state (it has no event for "cache equals X")."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_informer_syncs_and_follows_changes(sock_dir: Path) -> None:
    async with running(sock_dir) as server, StoreClient(server.socket_path) as client:
        await client.create(cm("a"))
        await client.create(svc("ignored"))
        informer = Informer(client, ["ConfigMap"])
        recorder = Recorder()
        informer.subscribe(recorder)
        async with informer:
            await asyncio.wait_for(informer.wait_synced(), 5)
            assert list(informer.cache) == [("ConfigMap", "default", "a")]
            assert recorder.events == [(ADDED, ("ConfigMap", "default", "a"))]
            await client.create(cm("b"))
            await client.apply(cm("a", k="v"))
            await client.delete("ConfigMap", "b")
            await client.create(svc("also-ignored"))
            await recorder.wait_for(lambda: len(recorder.events) == 4)
            assert recorder.events[1:] == [
                (ADDED, ("ConfigMap", "default", "b")),
                (MODIFIED, ("ConfigMap", "default", "a")),
                (DELETED, ("ConfigMap", "default", "b")),
            ]
            a = informer.get("ConfigMap", "a", "default")
            assert a is not None
            assert a["data"] == {"k": "v"}
            assert informer.resource_version == "5"
            with pytest.raises(TypeError):
                informer.cache[("ConfigMap", "default", "x")] = {}  # type: ignore[index]


async def test_410_then_relist_synthesizes_deletions(sock_dir: Path) -> None:
    """The watcher is paused while 200+ writes go by a 50-event history: the resumed watch gets 410,
    the informer relists and diffs, and subscribers see exactly the net changes, deletions included."""
    async with running(sock_dir, history=50) as server, StoreClient(server.socket_path) as client:
        await client.transaction([Op("create", cm(f"keep-{i}")) for i in range(20)])
        await client.transaction([Op("create", cm(f"gone-{i}")) for i in range(10)])
        resume = asyncio.Event()
        resume.set()
        real_watch = client.watch

        async def gated_watch(*args: Any, **kwargs: Any) -> AsyncGenerator[WatchEvent, None]:
            await resume.wait()  # "paused": the informer cannot re-watch until released
            async with contextlib.aclosing(real_watch(*args, **kwargs)) as events:
                async for event in events:
                    yield event

        client.watch = gated_watch  # type: ignore[method-assign]
        informer = Informer(client, ["ConfigMap"], watch_timeout=0.2)
        recorder = Recorder()
        informer.subscribe(recorder)
        async with informer:
            await asyncio.wait_for(informer.wait_synced(), 5)
            assert len(informer.cache) == 30
            recorder.events.clear()
            resume.clear()
            await asyncio.sleep(0.4)  # the current watch ends at its timeout; the next one waits
            paused_at = informer.resource_version
            await client.transaction([Op("delete", cm(f"gone-{i}")) for i in range(10)])
            for i in range(200):
                await client.create(cm(f"new-{i}"))
            await client.apply(cm("keep-0", changed="yes"))
            assert paused_at is not None
            assert int(paused_at) < server.store.history_floor
            resume.set()
            await eventually(lambda: informer.lists == 2 and len(informer.cache) == 220)
            expected = {object_key(o): o for o in (await client.list("ConfigMap")).items}
            assert dict(informer.cache) == expected
            deleted = sorted(key[2] for kind, key in recorder.events if kind == DELETED)
            assert deleted == sorted(f"gone-{i}" for i in range(10))
            assert sum(1 for kind, _ in recorder.events if kind == ADDED) == 200
            assert [key[2] for kind, key in recorder.events if kind == MODIFIED] == ["keep-0"]
            # and it keeps watching after the relist
            await client.delete("ConfigMap", "keep-1")
            await eventually(lambda: ("ConfigMap", "default", "keep-1") not in informer.cache)


async def test_informer_survives_a_store_restart(sock_dir: Path) -> None:
    server = new_server(sock_dir)
    await server.start()
    async with StoreClient(server.socket_path) as client:
        await client.create(cm("before"))
        informer = Informer(client, backoff_initial=0.02, backoff_max=0.2)
        async with informer:
            await asyncio.wait_for(informer.wait_synced(), 5)
            await server.close()
            await asyncio.sleep(0.3)  # down: the informer retries with backoff
            server = new_server(sock_dir)
            await server.start()
            try:
                async with StoreClient(server.socket_path) as writer:
                    await writer.create(cm("after"))
                await eventually(lambda: ("ConfigMap", "default", "after") in informer.cache)
                assert ("ConfigMap", "default", "before") in informer.cache
                assert informer.lists == 1  # resumed from its revision: no relist needed
            finally:
                await server.close()


async def test_informer_waits_for_a_store_that_is_not_up_yet(
    sock_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ambit.store.informer")

    def retries() -> int:
        return sum("store unavailable" in r.getMessage() for r in caplog.records)

    async with StoreClient(sock_dir / "store.sock") as client:
        informer = Informer(client, ["ConfigMap"], backoff_initial=0.02, backoff_max=0.1)
        async with informer:
            await eventually(lambda: retries() >= 3)  # it tried three times (no fixed sleep)
            assert not informer.synced
            async with running(sock_dir) as server, StoreClient(server.socket_path) as writer:
                await writer.create(cm("x"))
                await asyncio.wait_for(informer.wait_synced(), 5)
                await eventually(lambda: len(informer.cache) == 1)


async def test_resync_and_failing_subscribers(sock_dir: Path) -> None:
    resyncs: list[int] = []
    seen: list[str] = []

    async def on_resync(cache: Any) -> None:
        resyncs.append(len(cache))

    def broken(kind: str, obj: Obj) -> None:
        raise RuntimeError("subscriber bug")

    async def good(kind: str, obj: Obj) -> None:
        seen.append(obj["metadata"]["name"])

    async with running(sock_dir) as server, StoreClient(server.socket_path) as client:
        await client.create(cm("a"))
        informer = Informer(client, ["ConfigMap"], resync_period=0.05, on_resync=on_resync)
        informer.subscribe(broken)
        unsubscribe = informer.subscribe(good)
        queue = informer.subscribe_queue()
        async with informer:
            await asyncio.wait_for(informer.wait_synced(), 5)
            await client.create(cm("b"))
            await eventually(lambda: seen == ["a", "b"] and len(resyncs) >= 2)
            assert resyncs[-1] == 2
            assert [(await queue.get())[0] for _ in range(2)] == [ADDED, ADDED]
            unsubscribe()
            await client.create(cm("c"))
            await eventually(lambda: queue.qsize() == 1)
            assert seen == ["a", "b"]
