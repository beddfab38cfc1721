"""A node reboot (`ambit fault reboot NODE`, ``ClusterHandle.reboot``): what a power cycle does to one
node of the local runtime, then its boot.

Teardown, with the node's kubelet paused (a pass leaves its pods alone; the reboot first waits for the
pod sync in flight) and its pod terminations cancelled:

1. **Every process of the node SIGKILLed at once**, no grace, no preStop, no drain: its ztunnel, every
   container of its pods, and anything else running in one of its pods' network namespaces (an
   `ambit exec`, the chaos probe). The supervised ones are held at once, so the supervisor does not
   restart them. The monotonic time of the first signal is the boot's id (``boot``).
2. The node agent forgets the node's pods (once the dead ztunnel's ZDS connection is seen closed): it
   restarts with the node, and nothing of the old sandboxes may be replayed.
3. Each pod's sandbox deleted: its veth, netns and hosts file (``NetRuntime.remove_pod``), its projected
   token; its supervised processes forgotten; its status written not ready (its containers are gone),
   so that "ready again" is observed afterwards, not left over from before.

Boot: the kubelet gets a :class:`~ambit.runtime.controllers.kubelet.Boot` (its pods in a random order,
from the command's ``seed`` or a drawn one, and each pod's address to keep) and is un-paused, and the
node's ztunnel is started again at the same instant: the two race. The kubelet brings every pod back
through its ordinary path, which is what a reboot must not break: a new sandbox (the old address when it
is still free), capture installed, the pod handed to the ztunnel over ZDS and ACKed, and only then its
containers. A pod the new ztunnel cannot take yet waits Pending ("WaitingForZtunnel") for as long as it
takes: fail closed. Each start is recorded with those three times (:mod:`ambit.runtime.start_order`).

Not modelled: the node's Lease keeps being renewed (the daemon sends the heartbeats; a reboot is over
well within the node grace period), and the node's ztunnel cache on disk survives, as a real disk does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import select
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ambit.runtime import control, nsexec, replica_sets
from ambit.runtime.controllers.kubelet import Boot, Kubelet, PodState
from ambit.runtime.controllers.view import poll
from ambit.runtime.supervisor import Supervisor
from ambit.store.types import Conflict, NotFound, StoreError

log = logging.getLogger("ambit.runtime.daemon")

KILL_WAIT = 5.0  # the killed processes gone and the ztunnel's ZDS connection seen closed, within this
STATUS_TRIES = 3
SWEEPS = 3  # kill what runs in the pods' namespaces, again while something new appears there


@dataclass(frozen=True)
class Rebooted:
    """What a reboot did: the boot's id (the monotonic time of the SIGKILLs), the seed and the order the
    pods come back in, the pids killed, and the new ztunnel's pid."""

    node: str
    boot: float
    seed: int
    order: tuple[str, ...]  # "namespace/name"
    killed: tuple[int, ...]
    ztunnel_pid: int | None

    def reply(self) -> dict[str, Any]:
        ztunnel = f"ztunnel started (pid {self.ztunnel_pid})" if self.ztunnel_pid else "no ztunnel to start"
        message = (
            f"{self.node} rebooted: {len(self.killed)} processes killed; {ztunnel}; "
            f"{len(self.order)} pods come back in this order (seed {self.seed}): "
            + (", ".join(self.order) or "-")
        )
        return {
            "message": message,
            "keys": [control.ztunnel_key(self.node)],
            "boot": self.boot,
            "seed": self.seed,
            "order": list(self.order),
            "killed": list(self.killed),
        }


def boot_order(states: Iterable[PodState], seed: int) -> list[PodState]:
    """The pods in the order they come back: sorted by namespace and name, then shuffled by ``seed``."""
    ordered = sorted(states, key=lambda s: (s.namespace, s.name, s.uid))
    random.Random(seed).shuffle(ordered)
    return ordered


def down_status(status: Mapping[str, Any], since: str) -> dict[str, Any]:
    """A pod's status once its node went down: not ready (its containers are gone); the rest kept."""
    conditions = [dict(c) for c in status.get("conditions") or () if c.get("type") != "Ready"]
    conditions.append(
        {"type": "Ready", "status": "False", "lastTransitionTime": since, "reason": "NodeRebooted"}
    )
    containers = [{**c, "ready": False} for c in status.get("containerStatuses") or ()]
    return {**status, "conditions": conditions, "containerStatuses": containers}


async def reboot(kubelet: Kubelet, supervisor: Supervisor, *, seed: int | None = None) -> Rebooted:
    """Reboot ``kubelet``'s node (see the module docstring); returns once it boots (its ztunnel started,
    its kubelet given the boot), not once its pods are back."""
    node = kubelet.node
    seed = random.SystemRandom().randrange(2**31) if seed is None else seed
    kubelet.paused = True
    ztunnel = control.ztunnel_key(node)
    known = set(supervisor.keys())
    pid: int | None = None
    try:
        async with kubelet.lock:  # the pod sync in flight, if any, is done
            terminating = set(kubelet.terminating)  # deleted pods: after the boot, only deleted
            await kubelet.cancel_terminations()
            states = list(kubelet.pods.values())
            keys = [k for k in (ztunnel, *(k for s in states for k in s.keys)) if k in known]
            try:
                boot, killed = await _kill(supervisor, keys, [s.net.netns for s in states])
                await poll(lambda: not kubelet.agent.ready_connections(), KILL_WAIT, 0.02)
                for uid in list(kubelet.agent.enrolled):
                    await kubelet.agent.delete(uid)
                since = replica_sets.rfc3339(time.time())
                for state in states:
                    kubelet.pods.pop(state.uid, None)
                    await _remove_sandbox(kubelet, supervisor, state)
                coming_back = [s for s in states if s.uid not in terminating]
                for state in coming_back:
                    await _report_down(kubelet, state, since)
                order = boot_order(coming_back, seed)
                kubelet.begin_boot(
                    Boot(
                        at=boot,
                        order={s.uid: rank for rank, s in enumerate(order)},
                        hosts={s.uid: s.net.host for s in order},
                    )
                )
            finally:  # the node boots even from a teardown that failed half-way
                if ztunnel in known:
                    pid = supervisor.release(ztunnel)
    finally:
        kubelet.paused = False
    names = tuple(f"{s.namespace}/{s.name}" for s in order)
    log.info(
        "rebooted %s: killed %s; booting (seed %d, order %s, ztunnel pid %s)",
        node,
        killed,
        seed,
        ", ".join(names),
        pid,
    )
    return Rebooted(node, boot, seed, names, tuple(killed), pid)


async def _kill(supervisor: Supervisor, keys: list[str], netns: list[str]) -> tuple[float, list[int]]:
    """SIGKILL the supervised ``keys`` and every process in the ``netns``, at once, and wait until they
    are gone; the monotonic time of the first signal and the pids killed. A process forked meanwhile is
    caught by a second sweep."""
    killed: list[int] = []
    first = time.monotonic()
    for sweep in range(SWEEPS):
        residents = await asyncio.to_thread(_open_residents, netns)  # a /proc walk: off the daemon's loop
        try:
            if sweep > 0 and not residents:
                break
            if sweep == 0:
                first = time.monotonic()
            killed += _kill_at_once(supervisor, keys if sweep == 0 else [], residents, set(killed))
            await poll(lambda: not any(supervisor.running(k) for k in keys), KILL_WAIT, 0.02)
            await poll(functools.partial(_all_exited, list(residents.values())), KILL_WAIT, 0.02)
        finally:
            for fd in residents.values():
                os.close(fd)
    return first, killed


def _kill_at_once(
    supervisor: Supervisor, keys: list[str], residents: Mapping[int, int], done: set[int]
) -> list[int]:
    """SIGKILL every supervised key and every resident (pid -> pidfd) not in ``done``, then hold the
    keys, with no await in between: the supervisor cannot restart one before the last is killed."""
    killed = [pid for key in keys if (pid := supervisor.kill(key)) is not None]
    for pid, fd in residents.items():
        if pid in killed or pid in done:
            continue
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            killed.append(pid)
    for key in keys:
        supervisor.hold(key)  # the process is dead: no SIGTERM is sent, it is only kept down
    return killed


def _open_residents(netns: Iterable[str]) -> dict[int, int]:
    """pid -> pidfd of every process (never this one) whose network namespace is one of ``netns``. The
    namespace is checked again once the pidfd is open, so a reused pid is never signalled."""
    wanted: set[tuple[int, int]] = set()
    for name in netns:
        with contextlib.suppress(OSError, nsexec.NetnsError):
            wanted.add(nsexec.netns_id(name))
    found: dict[int, int] = {}
    if not wanted:
        return found
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        if not _in(pid, wanted):
            continue
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue
        if _in(pid, wanted):
            found[pid] = fd
        else:
            os.close(fd)
    return found


def _in(pid: int, namespaces: set[tuple[int, int]]) -> bool:
    try:
        return nsexec.netns_id(f"/proc/{pid}/ns/net") in namespaces
    except OSError:
        return False


def _all_exited(pidfds: list[int]) -> bool:
    """Every process exited (a pidfd turns readable when its process exits)."""
    if not pidfds:
        return True
    poller = select.poll()  # not select(): a daemon with many pods has descriptors above 1024
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    return len(poller.poll(0)) == len(pidfds)


async def _remove_sandbox(kubelet: Kubelet, supervisor: Supervisor, state: PodState) -> None:
    for key in state.keys:
        await asyncio.to_thread(supervisor.stop, key, 0.5)  # dead already: only forgotten
    leftover = await asyncio.to_thread(kubelet.net.remove_pod, state.uid)
    if leftover:
        log.warning(
            "reboot of %s: processes %s outlived their netns %s", kubelet.node, leftover, state.net.netns
        )
    if kubelet.tokens is not None:
        kubelet.tokens.remove(state.uid)


async def _report_down(kubelet: Kubelet, state: PodState, since: str) -> None:
    """Write the pod's status not ready (compare-and-swap, a few tries); a pod gone meanwhile is left."""
    for _ in range(STATUS_TRIES):
        try:
            pod = await kubelet.client.get("Pod", state.name, state.namespace)
            if (pod.get("metadata") or {}).get("uid") != state.uid:
                return
            status = down_status(pod.get("status") or {}, since)
            await kubelet.client.update({**pod, "status": status})
            return
        except NotFound:
            return
        except Conflict:
            continue
        except StoreError as exc:
            log.info("status of %s/%s after the reboot: %s", state.namespace, state.name, exc)
            return
