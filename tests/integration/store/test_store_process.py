"""The real ``ambit store serve`` as a subprocess: validation with ``ambit.resources``, a clean
restart (SIGTERM), a crash (SIGKILL) losing nothing acknowledged, and an informer riding through both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambit.store.client import StoreClient
from ambit.store.informer import Informer
from ambit.store.persist import LOG, SNAPSHOT
from ambit.store.types import Invalid, Obj, Op, StoreError


def service(name: str, port: object = 80) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": port}]},
    }


class StoreProcess:
    def __init__(self, root: Path) -> None:
        self.data = root / "data"
        self.socket = root / "store.sock"
        self.log = root / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        script = Path(sys.executable).with_name("ambit")
        entry = (
            [str(script)] if script.exists() else [sys.executable, "-c", "from ambit.cli import main; main()"]
        )
        return [*entry, "store", "serve", "--dir", str(self.data), "--socket", str(self.socket)]

    def spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as log:
            return subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)

    async def start(self) -> None:
        self.proc = self.spawn()
        async with StoreClient(self.socket, timeout=2) as client:
            for _ in range(300):
                if self.proc.poll() is not None:
                    pytest.fail(f"ambit store serve exited {self.proc.returncode}: {self.log.read_text()}")
                with contextlib.suppress(StoreError):
                    if self.socket.exists():
                        await client.health()
                        return
                await asyncio.sleep(0.05)
        pytest.fail(f"ambit store serve did not come up: {self.log.read_text()}")

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        for _ in range(200):
            code = self.proc.poll()
            if code is not None:
                self.proc = None
                return code
            await asyncio.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        pytest.fail("ambit store serve did not stop within 10 s")

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def store_process() -> Iterator[StoreProcess]:
    root = Path(tempfile.mkdtemp(prefix="ambit-sp-", dir="/tmp"))
    process = StoreProcess(root)
    try:
        yield process
    finally:
        process.cleanup()
        shutil.rmtree(root, ignore_errors=True)


async def test_serve_validates_and_survives_a_clean_restart(store_process: StoreProcess) -> None:
    await store_process.start()
    assert os.stat(store_process.data).st_mode & 0o777 == 0o700
    async with StoreClient(store_process.socket) as client:
        assert (await client.get("Namespace", "default"))["metadata"]["name"] == "default"
        with pytest.raises(Invalid) as info:
            await client.transaction([Op("apply", service("ok")), Op("apply", service("bad", port="abc"))])
        assert "Service/default/bad" in info.value.message
        assert "spec.ports[0].port" in info.value.message
        assert info.value.index == 1
        result = await client.transaction([Op("apply", service(f"svc-{i}")) for i in range(10)])
        before = (await client.list()).items
    assert await store_process.stop(signal.SIGTERM) == 0
    assert not store_process.socket.exists()
    assert (store_process.data / SNAPSHOT).exists()
    assert (store_process.data / LOG).read_bytes() == b""  # folded into the snapshot at shutdown

    await store_process.start()
    async with StoreClient(store_process.socket) as client:
        listing = await client.list()
        assert listing.items == before
        assert listing.resource_version == result.resource_version
        created = await client.create(service("after"))
        assert int(created["metadata"]["resourceVersion"]) == int(result.resource_version) + 1
    assert await store_process.stop(signal.SIGINT) == 0


async def test_a_crash_loses_nothing_acknowledged_and_informers_resume(store_process: StoreProcess) -> None:
    await store_process.start()
    async with StoreClient(store_process.socket) as client:
        informer = Informer(client, ["Service"], backoff_initial=0.02, backoff_max=0.2)
        async with informer:
            await asyncio.wait_for(informer.wait_synced(), 5)
            for i in range(20):
                await client.create(service(f"svc-{i}"))
            await client.delete("Service", "svc-0")
            acknowledged = (await client.list("Service")).items
            assert await store_process.stop(signal.SIGKILL) == -signal.SIGKILL

            await store_process.start()  # replays the write-ahead log
            after = await client.list("Service")
            assert after.items == acknowledged
            await client.create(service("post-crash"))
            await client.delete("Service", "svc-1")
            post_crash, svc_1 = ("Service", "default", "post-crash"), ("Service", "default", "svc-1")
            async with asyncio.timeout(10):
                while post_crash not in informer.cache or svc_1 in informer.cache:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            assert dict(informer.cache) == {
                ("Service", "default", o["metadata"]["name"]): o for o in (await client.list("Service")).items
            }
    assert await store_process.stop() == 0
