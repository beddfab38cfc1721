"""Pod resource usage from Linux ``/proc``: the process tree of a pod, its CPU time and memory.

- :func:`process_tree` / :func:`process_trees`: a root pid and all its descendants, from the ppid field
  of ``/proc/<pid>/stat``. One pass over ``/proc`` serves any number of roots, so a sampler that measures
  tens of pods every few seconds reads each ``stat`` once per round (a few milliseconds for a few hundred
  processes), not once per pod.
- :func:`cpu_seconds`: ``utime + stime`` of the live processes, plus ``cutime + cstime`` (the CPU time of
  children they have already reaped), divided by ``SC_CLK_TCK``. Counting reaped children keeps the sum
  from dropping when a short-lived child of the pod exits, as the pod's cgroup counter would; a child
  reaped by a process outside the tree (an orphan re-parented to init) does drop out of it, which
  :class:`CpuMeter` treats like a restart.
- :func:`memory_bytes`: the summed ``VmRSS`` of ``/proc/<pid>/status``. RSS and not PSS: PSS
  (``smaps_rollup``) splits shared pages fairly between forked workers, but the kernel produces it by
  walking every mapping's page tables under the mm lock, a cost that grows with the process's size and
  is paid on every sample; ``status`` is a constant-time read. RSS over-counts pages shared between
  processes of the tree (copy-on-write after fork, shared libraries), so a pod of many forked workers
  reads high; Kubernetes' own figure (the cgroup's working set) is not available per process.
- :class:`CpuMeter`: cumulative CPU seconds → cores used over the last interval, per key; a counter that
  goes backwards (a restarted process) or a changed incarnation restarts the measurement.

Every read tolerates processes vanishing between listing and reading (they are skipped). Linux only.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterable

PROC = "/proc"
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (index 0 is field 3, the state)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    _, paren, rest = raw.rpartition(b")")  # the command may contain spaces and parentheses
    if not paren:
        return None
    return rest.decode("ascii", "replace").split()


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir(PROC)
    except OSError:
        return children
    for name in names:
        if not name.isdigit():
            continue
        fields = _stat_fields(int(name))
        if fields is None or len(fields) < 2:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def process_trees(roots: Iterable[int]) -> dict[int, list[int]]:
    """For each root pid, the root and its descendants (empty when the root is gone); one ``/proc`` scan."""
    children = _children()
    trees: dict[int, list[int]] = {}
    for root in roots:
        if not os.path.exists(f"{PROC}/{root}"):
            trees[root] = []
            continue
        tree, queue, seen = [], [root], {root}
        while queue:
            pid = queue.pop()
            tree.append(pid)
            for child in children.get(pid, ()):
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        trees[root] = sorted(tree)
    return trees


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, sorted (empty when ``pid`` is gone)."""
    return process_trees([pid])[pid]


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time used by the live ``pids`` and the children they reaped, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is None or len(fields) < 15:
            continue
        ticks += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / _TICKS


def memory_bytes(pids: Iterable[int]) -> int:
    """Resident memory (``VmRSS``) of the live ``pids``, in bytes."""
    total = 0
    for pid in pids:
        try:
            with open(f"{PROC}/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        total += int(line.split()[1]) * 1024  # kB
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total


class CpuMeter:
    """Cores used per key, from successive cumulative CPU-second samples."""

    def __init__(self) -> None:
        self._last: dict[Hashable, tuple[float, float, Hashable]] = {}

    def update(self, key: Hashable, seconds: float, now: float, incarnation: Hashable = None) -> float | None:
        """Record a sample; the rate since the previous one, or None when there is no usable previous one.

        ``now`` is a monotonic clock. ``incarnation`` (e.g. the root pid and its start time) restarts
        the measurement when it changes; so does a counter that went backwards.
        """
        previous = self._last.get(key)
        self._last[key] = (now, seconds, incarnation)
        if previous is None:
            return None
        then, before, was = previous
        if was != incarnation or seconds < before or now <= then:
            return None
        return (seconds - before) / (now - then)

    def forget(self, key: Hashable) -> None:
        self._last.pop(key, None)
