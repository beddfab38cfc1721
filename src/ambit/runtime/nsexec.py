"""Run a command inside a network namespace (``ip netns exec NAME ...``, which also bind-mounts
``/etc/netns/NAME/*``, e.g. a per-pod hosts file).

Socket creation inside a namespace lives in :mod:`ambit.net.netns` (ztunnel needs it too, and it
cannot import the runtime); it is re-exported here for the runtime's callers.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Any

from ambit.net.netns import (
    CLONE_NEWNET,
    NETNS_RUN_DIR,
    THREAD_NETNS,
    NetnsError,
    Target,
    call_in_netns,
    current_netns_id,
    netns_id,
    netns_path,
    socket_in_netns,
)

__all__ = [
    "CLONE_NEWNET",
    "NETNS_RUN_DIR",
    "THREAD_NETNS",
    "NetnsError",
    "Target",
    "call_in_netns",
    "command",
    "current_netns_id",
    "netns_id",
    "netns_path",
    "popen",
    "run",
    "socket_in_netns",
]


def command(netns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside ``netns``."""
    netns_path(netns)
    return ["ip", "netns", "exec", netns, *argv]


def run(
    netns: str,
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    check: bool = True,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``netns`` to completion, capturing text output."""
    proc = subprocess.run(
        command(netns, argv),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=_env(),
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise NetnsError(f"in {netns}: {' '.join(argv)} failed ({proc.returncode}): {detail}")
    return proc


def popen(netns: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` inside ``netns``. ``ip netns exec`` execs the command, so the returned pid is the
    command's own pid (stop it by that pid)."""
    kwargs.setdefault("env", _env())
    return subprocess.Popen(command(netns, argv), **kwargs)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["LC_ALL"] = "C"
    return env
