"""Process records: every process the runtime starts is recorded (pid + argv) so that `ambit down`
can stop exactly those, also after the daemon died, and never an unrelated process that reused a pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from ambit.runtime.layout import write_json


def cmdline(pid: int) -> list[str] | None:
    """The argv of a live process (None when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if not raw:
        return None
    return raw.rstrip(b"\0").decode(errors="replace").split("\0")


def matches(pid: int, argv: Sequence[str]) -> bool:
    """``pid`` is alive and still runs ``argv`` (or ``ip netns exec ... argv`` before the exec)."""
    current = cmdline(pid)
    if current is None:
        return False
    argv = list(argv)
    return current == argv or current[-len(argv) :] == argv


def record(path: Path, pid: int, argv: Sequence[str]) -> None:
    write_json(path, {"pid": pid, "argv": list(argv)})


def read(path: Path) -> tuple[int, list[str]] | None:
    try:
        data = json.loads(path.read_text())
        return int(data["pid"]), [str(a) for a in data["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def stop(pid: int, argv: Sequence[str], *, grace: float = 3.0) -> bool:
    """SIGTERM, then SIGKILL after ``grace``; only while the pid still runs ``argv``. True if it ran."""
    if not matches(pid, argv):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not matches(pid, argv):
            return True
        time.sleep(0.05)
    if matches(pid, argv):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(100):
            _reap(pid)
            if cmdline(pid) is None:
                break
            time.sleep(0.02)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def stop_recorded(directory: Path, *, grace: float = 3.0) -> list[int]:
    """Stop every process recorded in ``directory`` (``*.json``) and remove the records."""
    stopped: list[int] = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        entry = read(path)
        if entry is not None and stop(*entry, grace=grace):
            stopped.append(entry[0])
        path.unlink(missing_ok=True)
    return stopped


def pss_kib(pids: Sequence[int]) -> int:
    """The proportional set size of ``pids`` together, in KiB (``Pss:`` of ``/proc/PID/smaps_rollup``;
    a process that is gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total
