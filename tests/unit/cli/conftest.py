"""Fixtures of the CLI tests: a private run directory and a real store server for cluster ``clitest``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_harness import CLUSTER, ThreadedStore


@pytest.fixture
def run_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="ambit-cli-", dir="/tmp"))
    monkeypatch.setenv("AMBIT_RUN_DIR", str(root))
    monkeypatch.delenv("AMBIT_CLUSTER", raising=False)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def store(run_dir: Path) -> Iterator[ThreadedStore]:
    server = ThreadedStore(run_dir / CLUSTER / "store", run_dir / CLUSTER / "store.sock")
    server.start()
    try:
        yield server
    finally:
        server.stop()
