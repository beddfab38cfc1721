"""The supervisor (kubelet's process role): start processes, restart crashed ones with backoff.

Each process is started with ``subprocess.Popen`` (in a network namespace through ``ip netns exec``,
which execs the command, so the pid is the command's own), its output appended to a log file, and
its pid + argv recorded (:mod:`ambit.runtime.procs`) so `ambit down` can stop it after a daemon crash.
:meth:`Supervisor.tick` (called periodically) notices exits and restarts with exponential backoff
(0.5 s doubling to 10 s; reset after 10 s of uptime), as a kubelet's CrashLoopBackOff.

Component control (`ambit stop|start|kill|restart`, :mod:`ambit.runtime.control`): :meth:`Supervisor.hold`
sends SIGTERM and holds the process down (no restart) until :meth:`Supervisor.release` starts it
again; :meth:`Supervisor.kill` is SIGKILL of the supervised pid (then restarted as any crash);
:meth:`Supervisor.replace` starts a second process for a key and hands back the old one (recorded as
``<key>-draining``) for the caller to drain: an overlapping replacement.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ambit.runtime import nsexec, procs

log = logging.getLogger(__name__)

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0


@dataclass
class ProcessSpec:
    key: str  # file-safe and unique: "ztunnel-node1", "pod-ns-name-container"
    argv: Sequence[str]
    log: Path
    netns: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    restart: bool = True


@dataclass
class _Entry:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    exit_code: int | None = None
    held: bool = False  # stopped on command: not restarted until released


class Supervisor:
    def __init__(self, pids_dir: Path) -> None:
        self.pids_dir = pids_dir
        self._entries: dict[str, _Entry] = {}

    def start(self, spec: ProcessSpec) -> None:
        """Run ``spec`` (again, if a process with the key runs it is stopped first by the caller)."""
        if spec.key in self._entries:
            raise ValueError(f"process {spec.key} is already supervised")
        entry = _Entry(spec)
        self._entries[spec.key] = entry
        self._spawn(entry)

    def _spawn(self, entry: _Entry) -> None:
        spec = entry.spec
        spec.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(spec.env)
        with open(spec.log, "ab") as out:
            kwargs = {
                "stdin": subprocess.DEVNULL,
                "stdout": out,
                "stderr": subprocess.STDOUT,
                "env": env,
                "start_new_session": True,
            }
            if spec.netns:
                proc = nsexec.popen(spec.netns, list(spec.argv), **kwargs)
            else:
                proc = subprocess.Popen(list(spec.argv), **kwargs)  # type: ignore[call-overload]
        entry.proc = proc
        entry.started_at = time.monotonic()
        entry.exit_code = None
        procs.record(self.pids_dir / f"{spec.key}.json", proc.pid, spec.argv)
        log.info("started %s (pid %d): %s", spec.key, proc.pid, " ".join(spec.argv))

    def running(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.proc is not None and entry.proc.poll() is None

    def pid(self, key: str) -> int | None:
        entry = self._entries.get(key)
        return entry.proc.pid if entry is not None and entry.proc is not None and self.running(key) else None

    def restarts(self, key: str) -> int:
        entry = self._entries.get(key)
        return entry.restarts if entry is not None else 0

    def keys(self) -> list[str]:
        return list(self._entries)

    def tick(self) -> list[str]:
        """Restart what exited and is due; returns the keys restarted."""
        now = time.monotonic()
        restarted: list[str] = []
        for entry in list(self._entries.values()):
            proc = entry.proc
            if proc is not None:
                code = proc.poll()
                if code is None:
                    if now - entry.started_at > STABLE_AFTER:
                        entry.failures = 0
                    continue
                entry.exit_code = code
                entry.proc = None
                (self.pids_dir / f"{entry.spec.key}.json").unlink(missing_ok=True)
                if entry.held:
                    log.info("%s exited with %s (stopped on command)", entry.spec.key, code)
                    continue
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**entry.failures)
                entry.failures += 1
                entry.next_start = now + delay
                log.warning("%s exited with %s; restarting in %.1fs", entry.spec.key, code, delay)
            if entry.spec.restart and not entry.held and entry.proc is None and now >= entry.next_start:
                entry.restarts += 1
                try:
                    self._spawn(entry)
                    restarted.append(entry.spec.key)
                except OSError:
                    log.exception("restarting %s failed", entry.spec.key)
                    entry.next_start = now + BACKOFF_MAX
        return restarted

    # --- component control ---------------------------------------------------------------------------

    def held(self, key: str) -> bool:
        entry = self._entries.get(key)
        return entry is not None and entry.held

    def held_keys(self) -> list[str]:
        return sorted(k for k, e in self._entries.items() if e.held)

    def hold(self, key: str) -> bool:
        """Hold ``key`` down and send it SIGTERM (non-blocking; :meth:`tick` reaps it, never restarts it).
        True if a process was running."""
        entry = self._entry(key)
        entry.held = True
        if entry.proc is None or entry.proc.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError):
            entry.proc.terminate()
        return True

    def release(self, key: str) -> int | None:
        """Lift the hold and start the process now (if it is not running); returns its pid."""
        entry = self._entry(key)
        entry.held = False
        entry.failures = 0
        entry.next_start = 0.0
        if entry.proc is not None and entry.proc.poll() is not None:
            entry.exit_code = entry.proc.returncode
            entry.proc = None
        if entry.proc is None:
            self._spawn(entry)
        return self.pid(key)

    def kill(self, key: str) -> int | None:
        """SIGKILL the supervised process (our own child: its pid cannot have been reused while
        unreaped); :meth:`tick` restarts it unless held. Returns the pid killed, None if none ran."""
        entry = self._entry(key)
        if entry.proc is None or entry.proc.poll() is not None:
            return None
        pid = entry.proc.pid
        with contextlib.suppress(ProcessLookupError):
            entry.proc.kill()
        return pid

    def replace(self, key: str) -> subprocess.Popen[bytes] | None:
        """Start a new process for ``key`` while the old one still runs; return the old one (now
        recorded as ``<key>-draining``) for the caller to terminate, then :meth:`drained`."""
        entry = self._entry(key)
        if entry.held:
            raise ValueError(f"{key} is stopped")
        old = entry.proc if entry.proc is not None and entry.proc.poll() is None else None
        if old is not None:
            procs.record(self.pids_dir / f"{key}-draining.json", old.pid, entry.spec.argv)
        self._spawn(entry)
        return old

    def drained(self, key: str) -> None:
        (self.pids_dir / f"{key}-draining.json").unlink(missing_ok=True)

    def _entry(self, key: str) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            raise KeyError(key)
        return entry

    def stop(self, key: str, grace: float = 3.0) -> None:
        """Stop and forget one process (blocking up to ``grace`` seconds)."""
        entry = self._entries.pop(key, None)
        if entry is None or entry.proc is None:
            if entry is not None:
                (self.pids_dir / f"{key}.json").unlink(missing_ok=True)
            return
        _terminate(entry.proc, grace)
        (self.pids_dir / f"{key}.json").unlink(missing_ok=True)

    def stop_all(self, grace: float = 3.0) -> None:
        entries = list(self._entries.values())
        self._entries.clear()
        for entry in entries:
            if entry.proc is not None and entry.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    entry.proc.terminate()
        deadline = time.monotonic() + grace
        for entry in entries:
            if entry.proc is not None:
                _terminate(entry.proc, max(0.0, deadline - time.monotonic()))
            (self.pids_dir / f"{entry.spec.key}.json").unlink(missing_ok=True)


def terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL (blocking)."""
    _terminate(proc, grace)


def _terminate(proc: subprocess.Popen[bytes], grace: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)
