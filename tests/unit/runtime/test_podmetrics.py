"""Pod usage from /proc, measured on real processes started (and stopped, by pid) here."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ambit.runtime.podmetrics import CpuMeter, cpu_seconds, memory_bytes, process_tree, process_trees

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux /proc")

# A busy parent holding ~64 MiB that starts a busy child and prints the child's pid.
PARENT = """
import subprocess, sys
ballast = bytearray(64 * 2**20)
child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
print(child.pid, flush=True)
while True:
    pass
"""

# A parent that runs a child for ~0.3 s of CPU, reaps it, then sleeps.
REAPER = """
import subprocess, sys, time
busy = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
subprocess.run([sys.executable, "-c", busy])
print("done", flush=True)
time.sleep(60)
"""


def stop(*pids: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def started(script: str, executable: str = sys.executable) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen([executable, "-c", script], stdout=subprocess.PIPE, text=True)
    extra: list[int] = []
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line.isdigit():
            extra.append(int(line))
        yield proc, line
    finally:
        stop(*extra, proc.pid)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def dead_pid() -> int:
    return int(Path("/proc/sys/kernel/pid_max").read_text()) + 1


def test_tree_cpu_and_memory_of_a_busy_process_and_its_child() -> None:
    with started(PARENT) as (proc, line):
        child = int(line)
        tree = process_tree(proc.pid)
        assert tree == sorted([proc.pid, child])
        assert process_tree(child) == [child]
        assert process_trees([proc.pid, child, dead_pid()]) == {
            proc.pid: tree,
            child: [child],
            dead_pid(): [],
        }

        assert memory_bytes(tree) >= 64 * 2**20
        assert memory_bytes([child]) < memory_bytes([proc.pid])

        meter = CpuMeter()
        assert meter.update("web-1", cpu_seconds(tree), time.monotonic()) is None
        time.sleep(0.5)
        cores = meter.update("web-1", cpu_seconds(tree), time.monotonic())
        assert cores is not None
        available = len(os.sched_getaffinity(0))
        # two busy loops: up to two cores, at least most of one
        assert 0.5 < cores <= min(2, available) + 0.2


def test_cpu_of_a_reaped_child_stays_counted() -> None:
    with started(REAPER) as (proc, line):
        assert line == "done"
        assert process_tree(proc.pid) == [proc.pid]
        assert cpu_seconds([proc.pid]) >= 0.25


def test_command_names_with_spaces_and_parentheses(tmp_path: Path) -> None:
    odd = tmp_path / "x) (y"
    odd.symlink_to(sys.executable)
    with started(PARENT, executable=str(odd)) as (proc, line):
        assert Path(f"/proc/{proc.pid}/stat").read_text().count(")") >= 2
        tree = process_tree(proc.pid)
        assert tree == sorted([proc.pid, int(line)])
        time.sleep(0.1)
        assert cpu_seconds(tree) > 0


def test_vanished_processes_are_skipped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=10)
    gone = [dead_pid(), proc.pid]
    assert process_tree(dead_pid()) == []
    assert cpu_seconds(gone) == 0.0
    assert memory_bytes(gone) == 0
    # a live pid next to vanished ones still counts
    assert cpu_seconds([*gone, os.getpid()]) > 0
    assert memory_bytes([*gone, os.getpid()]) > 0


def test_a_tree_scan_is_cheap() -> None:
    roots = [os.getpid()] * 50
    start = time.perf_counter()
    for _ in range(10):
        process_trees(roots)
    assert (time.perf_counter() - start) / 10 < 0.25


def test_cpu_meter_rates_and_restarts() -> None:
    meter = CpuMeter()
    assert meter.update("a", 10.0, 100.0) is None  # nothing to compare with yet
    assert meter.update("a", 12.0, 104.0) == 0.5
    assert meter.update("a", 1.0, 108.0) is None  # the counter went back: a restart
    assert meter.update("a", 3.0, 110.0) == 1.0
    assert meter.update("a", 5.0, 112.0, incarnation=(42, 7)) is None  # a new process
    assert meter.update("a", 5.5, 113.0, incarnation=(42, 7)) == 0.5
    assert meter.update("a", 6.0, 113.0, incarnation=(42, 7)) is None  # no time passed
    assert meter.update("b", 1.0, 113.0) is None  # keys are separate
    meter.forget("a")
    assert meter.update("a", 9.0, 120.0) is None
