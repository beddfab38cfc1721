"""The replica of ``ambit bench controlplane``: ``ambit controlplane`` as a child process, and /proc readings.

`Plane` starts the real CLI in its own session (SIGTERM to it if the bench dies, where ``setpriv``
exists), waits for ``/healthz/ready``, reads ``/metrics`` and ``/debug/syncz``, and stops it with
SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from ambit.bench.child import PROFILE_ENV
from ambit.bench.cp_results import Memory
from ambit.bench.procs import ChildError

_PLANE_STOP_GRACE = 15.0
_PUSH_POLL = 0.02  # seconds between /debug/syncz reads while a change is pushed
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A loopback TCP port free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _with_parent_death_signal(argv: list[str]) -> list[str]:
    """`argv` run so that it gets SIGTERM when this process dies (util-linux ``setpriv``), if available."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    if setpriv is None:
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


def ambit_executable() -> str:
    """The ``ambit`` console script of the running interpreter's environment."""
    beside = Path(sys.executable).with_name("ambit")
    if beside.exists():
        return str(beside)
    found = shutil.which("ambit")
    if found is None:
        raise ChildError("cannot find the `ambit` command (is ambit installed in this environment?)")
    return found


class Plane:
    """The replica: ``ambit controlplane`` in its own session, its output in a log file."""

    def __init__(self, argv: Sequence[str], log_path: Path, http_port: int) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.http_port = http_port
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                _with_parent_death_signal(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C at the terminal reaches only the bench
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None:
            raise ChildError(f"the control plane exited with {code}:\n{self.log_tail()}")

    def http(self, path: str, timeout: float = 10.0) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return int(response.status), response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as exc:
            return exc.code, ""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                if self.http("/healthz/ready", timeout=2.0)[0] == 200:
                    return
            time.sleep(0.05)
        raise ChildError(f"the control plane was not ready within {timeout:.0f}s:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        self._check_alive()
        status, text = self.http("/metrics")
        if status != 200:
            raise ChildError(f"the control plane's /metrics answered {status}")
        return parse_metrics(text)

    def responses(self) -> int:
        """xDS responses this replica has sent so far (``/debug/syncz``)."""
        status, text = self.http("/debug/syncz")
        if status != 200:
            raise ChildError(f"the control plane's /debug/syncz answered {status}")
        return int(json.loads(text)["responses"])

    def wait_responses(self, count: int, deadline: float) -> int | None:
        """CLOCK_MONOTONIC ns when the replica had sent `count` responses in all (None: not by `deadline`)."""
        while time.monotonic() < deadline:
            self._check_alive()
            if self.responses() >= count:
                return time.monotonic_ns()
            time.sleep(_PUSH_POLL)
        return None

    def memory(self) -> Memory:
        self._check_alive()
        return Memory.of(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM (the CLI closes the replica cleanly), then SIGKILL if it lingers."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(_PLANE_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self._log.close()

    def __enter__(self) -> Plane:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        except BaseException:  # a second Ctrl-C while waiting: do not leave it running
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise

    def log_counts(self) -> tuple[int, int]:
        """(WARNING lines, ERROR/CRITICAL/Traceback lines) in the replica's log so far."""
        warnings = errors = 0
        with contextlib.suppress(OSError), open(self.log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if " WARNING " in line:
                    warnings += 1
                elif " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback"):
                    errors += 1
        return warnings, errors


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc, in clock ticks)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def run_queue_wait_seconds(pid: int) -> float:
    """Seconds the threads of a process spent runnable but waiting for a CPU.

    From ``/proc/<pid>/task/*/schedstat``; threads that already ended are not counted."""
    total = 0
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError, IndexError),
                open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f,
            ):
                total += int(f.read().split()[1])
    return total / 1e9


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> metric name (labels dropped) -> sum of its samples."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(value)
        except ValueError:
            continue
    return out


def plane_argv(root: Path, store_socket: Path, grpc_port: int, http_port: int) -> list[str]:
    """The replica's command line (under cProfile when ``$AMBIT_BENCH_PROFILE`` names a directory)."""
    argv = [
        ambit_executable(),
        "controlplane",
        "--store-socket",
        str(store_socket),
        "--state-dir",
        str(root / "state"),
        "--listen",
        "127.0.0.1",
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
        "--token-port",
        "0",
    ]
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        out = Path(profile_dir) / f"controlplane-{os.getpid()}.prof"
        argv = [sys.executable, "-m", "cProfile", "-o", str(out), *argv]
    return argv
