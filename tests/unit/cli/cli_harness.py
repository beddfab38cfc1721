"""The CLI tests' store: a real store server on its own loop in a thread, and the CLI run against it
(``ambit --cluster clitest ...``). The fixtures ``run_dir`` and ``store`` are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from click.testing import CliRunner, Result

from ambit.cli import cli
from ambit.store.server import StoreServer

CLUSTER = "clitest"


class ThreadedStore:
    """The real store server on its own loop in a thread, so CLI calls (which run their own loop) reach it."""

    def __init__(self, data: Path, socket_path: Path) -> None:
        self.data = data
        self.socket_path = socket_path
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="store", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            server = StoreServer(self.data, self.socket_path)
            self.loop.run_until_complete(server.start())
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            self.loop.close()
            return
        self.ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.run_until_complete(server.close())
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(15), "the store did not start"
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(15)


def ambit(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--cluster", CLUSTER, *args], input=stdin, catch_exceptions=False)


def ok(*args: str, stdin: str | None = None) -> Result:
    result = ambit(*args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result
