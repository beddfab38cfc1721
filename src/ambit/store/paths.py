"""Where a cluster's store lives: ``/run/ambit/<cluster>/store.sock`` and ``/run/ambit/<cluster>/store/``.

``AMBIT_RUN_DIR`` replaces the ``/run/ambit`` base (tests, unprivileged runs).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RUN_DIR = Path("/run/ambit")


def run_dir() -> Path:
    """The base directory of every local cluster's runtime files."""
    return Path(os.environ.get("AMBIT_RUN_DIR") or DEFAULT_RUN_DIR)


def cluster_dir(cluster: str) -> Path:
    """The runtime directory of one cluster."""
    if not cluster or "/" in cluster or cluster in {".", ".."}:
        raise ValueError(f"{cluster!r} is not a cluster name")
    return run_dir() / cluster


def socket_path(cluster: str) -> Path:
    """The store server's Unix socket of `cluster`."""
    return cluster_dir(cluster) / "store.sock"


def data_dir(cluster: str) -> Path:
    """The store server's data directory (snapshot and write-ahead log) of `cluster`."""
    return cluster_dir(cluster) / "store"
