"""Graceful termination of a deleted pod, the kubelet's ``killPod`` path, in order:

1. **Endpoints out, and ACKed.** The store has set the pod's ``deletionTimestamp``, so the control
   plane stops serving it as an endpoint (its workload turns unhealthy). The kubelet asks every
   control-plane replica (``GET /debug/workload_sync?uid=U`` on 15014, from the namespace of the node
   the replica runs on, so this plaintext never crosses the fabric) until each says it no longer
   serves the pod and every proxy connected to it has ACKed that state, for at most min(5 s, grace/2):
   half the grace period is always left for preStop and SIGTERM. Kubernetes does not wait here:
   endpoint removal and SIGTERM race there, which is why so many pods carry a ``preStop: sleep``.
   Here no proxy picks the pod for a new connection once SIGTERM is sent.
2. **preStop** of each container that has one (``exec``: the command in the pod's network namespace;
   ``httpGet``: a GET from the node; ``sleep``), within the grace period.
3. **SIGTERM** to every container process (held: the supervisor does not restart it).
4. **SIGKILL** to what still runs when ``deletionGracePeriodSeconds`` (counted from the start of step
   1, as the kubelet counts it) are over; a later delete that shortens the grace period shortens this
   wait too.

The kubelet then removes the pod's network and deletes the Pod object with a grace period of 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ambit.runtime import nsexec
from ambit.runtime.admin_client import AdminError, http_get
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.controllers.view import poll
from ambit.runtime.supervisor import Supervisor

log = logging.getLogger("ambit.runtime.daemon")

ENDPOINT_ACK_CAP = 5.0  # step 1 waits at most this long (or the grace period, if shorter)
CONTROL_PLANE_HTTP_PORT = 15014
SYNC_POLL = 0.05
MIN_SIGTERM_GRACE = 2.0  # Kubernetes gives SIGTERM at least 2 s, even when preStop used up the grace
KILL_WAIT = 2.0


@dataclass(frozen=True)
class ReplicaSync:
    """One control-plane replica's answer about one pod."""

    address: str
    reachable: bool
    done: bool = False
    proxies: int = 0
    synced: int = 0


def ask_replica(node_netns: str, address: str, uid: str, timeout: float) -> ReplicaSync:
    """Ask one replica (from ``node_netns``, its own node's) whether it still serves ``uid`` and how
    many proxies hold its current state."""
    try:
        status, body = http_get(
            node_netns,
            f"/debug/workload_sync?uid={uid}",
            host=address,
            port=CONTROL_PLANE_HTTP_PORT,
            timeout=timeout,
        )
        answer = json.loads(body) if status == 200 else None
        if not isinstance(answer, dict):
            return ReplicaSync(address, reachable=False)
        proxies, synced = int(answer.get("proxies") or 0), int(answer.get("synced") or 0)
    except (OSError, AdminError, ValueError, TypeError):
        return ReplicaSync(address, reachable=False)
    done = bool(answer.get("ready")) and not answer.get("serving") and synced >= proxies
    return ReplicaSync(address, True, done, proxies, synced)


async def wait_endpoints_removed(
    replicas: Callable[[], Sequence[tuple[str, str]]], uid: str, within: float
) -> tuple[bool, str]:
    """Step 1: (whether every reachable replica's proxies ACKed the pod's removal in time, a summary).
    ``replicas()`` gives each replica's (address, the netns of the node it runs on)."""
    started = time.monotonic()
    deadline = started + within
    answers: list[ReplicaSync] = []
    while True:
        remaining = max(0.1, deadline - time.monotonic())
        answers = list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(ask_replica, netns, address, uid, min(1.0, remaining))
                    for address, netns in replicas()
                )
            )
        )
        reachable = [a for a in answers if a.reachable]
        if reachable and all(a.done for a in reachable):
            proxies = sum(a.proxies for a in reachable)
            return True, f"{proxies} proxies ACKed in {time.monotonic() - started:.2f}s"
        if time.monotonic() >= deadline:
            detail = ", ".join(
                f"{a.address}: {a.synced}/{a.proxies} synced" if a.reachable else f"{a.address}: no answer"
                for a in answers
            )
            return False, f"not confirmed within {within:.1f}s ({detail or 'no control-plane replica'})"
        await asyncio.sleep(SYNC_POLL)


def pre_stop_handlers(pod: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, int]]]:
    """(container name, its ``lifecycle.preStop``, its named ports) of each container that has one."""
    found = []
    for container in (pod.get("spec") or {}).get("containers") or ():
        handler = (container.get("lifecycle") or {}).get("preStop")
        if isinstance(handler, dict) and handler:
            named = {
                str(p["name"]): int(p["containerPort"]) for p in container.get("ports") or () if p.get("name")
            }
            found.append((str(container.get("name")), handler, named))
    return found


async def run_pre_stop(
    handler: dict[str, Any],
    *,
    pod_ip: str,
    pod_netns: str,
    node_netns: str,
    within: float,
    named_ports: dict[str, int] | None = None,
) -> str:
    """Run one preStop handler for at most ``within`` seconds; what happened, for the log."""
    if within <= 0:
        return "skipped (no grace left)"
    if "exec" in handler:
        argv = [str(a) for a in (handler["exec"] or {}).get("command") or ()]
        if not argv:
            return "exec with no command"
        if argv[0] == "ambit":
            argv = [*ambit_argv(), *argv[1:]]
        try:
            done = await asyncio.to_thread(nsexec.run, pod_netns, argv, check=False, timeout=within)
        except Exception as exc:  # a timeout or a missing binary: the kubelet logs it and goes on
            return f"exec {argv[0]} failed: {exc}"
        return f"exec {argv[0]} exited {done.returncode}"
    if "httpGet" in handler:
        get = handler["httpGet"] or {}
        path = str(get.get("path") or "/")
        host = str(get.get("host") or pod_ip)
        port = get.get("port") or 80
        if isinstance(port, str) and not port.isdigit():  # a named container port
            if port not in (named_ports or {}):
                return f"httpGet {path}: no container port named {port!r}"
            port = (named_ports or {})[port]
        try:
            status, _ = await asyncio.to_thread(
                http_get, node_netns, path, host=host, port=int(port), timeout=within
            )
        except (OSError, AdminError, ValueError) as exc:
            return f"httpGet {path} failed: {exc}"
        return f"httpGet {path} answered {status}"
    if "sleep" in handler:
        seconds = min(within, float((handler["sleep"] or {}).get("seconds") or 0))
        await asyncio.sleep(seconds)
        return f"slept {seconds:g}s"
    return "no action (exec, httpGet or sleep)"


async def stop_processes(supervisor: Supervisor, keys: Sequence[str], deadline: Callable[[], float]) -> str:
    """Steps 3 and 4: SIGTERM every process (held down), SIGKILL what runs at ``deadline()`` (monotonic,
    asked again while waiting: a later delete may shorten the grace period)."""
    started = time.monotonic()
    supervised = set(supervisor.keys())
    for key in keys:
        if key in supervised:
            supervisor.hold(key)

    def all_exited() -> bool:
        return not any(supervisor.running(k) for k in keys)

    while not all_exited():
        if time.monotonic() >= deadline():
            killed = [k for k in keys if supervisor.kill(k) is not None]
            await poll(all_exited, KILL_WAIT, interval=0.05)
            return f"SIGKILL after {time.monotonic() - started:.1f}s: {', '.join(killed)}"
        await asyncio.sleep(0.05)
    return f"exited {time.monotonic() - started:.2f}s after SIGTERM"


def grace_of(pod: dict[str, Any]) -> float:
    meta = pod.get("metadata") or {}
    grace = meta.get("deletionGracePeriodSeconds")
    return float(grace) if isinstance(grace, int | float) else 30.0
