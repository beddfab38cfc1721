"""The faults `ambit chaos` injects, one function per experiment: each acts on a running cluster through
:class:`ambit.runtime.handle.ClusterHandle` and returns what it did and saw, stamped on the machine's
monotonic clock (`FaultEvents`), for the prediction to be computed from.

Each waits for its own recovery before returning (the killed component ready again, the healed node
Ready, the stopped replicas serving), so ``FaultEvents.end`` is observed, not assumed.
"""

from __future__ import annotations

import contextlib
import json
import random
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ambit.chaos import workload
from ambit.reliability.flows import FaultEvents
from ambit.resources.objects import GATEWAY_NAME_LABEL, is_ready, labels, name_of, namespace_of, node_name
from ambit.runtime import admin_client, procs
from ambit.runtime.control import ControlError
from ambit.runtime.controllers.kubelet import is_enrolled
from ambit.runtime.handle import ClusterHandle, HandleError

READY_PORT = 15021


class ExperimentError(RuntimeError):
    """The fault could not be injected or the cluster did not recover; the message says which."""


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What an experiment acts on and for how long."""

    target_node: str
    duration: float  # how long a held fault lasts (partition, outages)
    restarts: int = 10  # ztunnel-restart: how many in a row
    seed: int = 0
    recovery_timeout: float = 90.0
    memory_settle: float = 0.0  # node-partition: measure every ztunnel's PSS this long after the heal (0: no)


Experiment = Callable[[ClusterHandle, FaultPlan], FaultEvents]


def now() -> float:
    return time.monotonic()


def wait_until(predicate: Callable[[], bool], what: str, within: float, interval: float = 0.1) -> float:
    """Poll until ``predicate``; the monotonic time it first held. :class:`ExperimentError` on timeout."""
    deadline = now() + within
    while True:
        with contextlib.suppress(HandleError, OSError, admin_client.AdminError):
            if predicate():
                return now()
        if now() > deadline:
            raise ExperimentError(f"timed out after {within:.0f} s waiting for {what}")
        time.sleep(interval)


def enrolled(handle: ClusterHandle, pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Those of ``pods`` the runtime hands to their node's ztunnel (not a waypoint, not the system's)."""
    namespaces = {name_of(o): o for o in handle.objects(["Namespace"])}
    return [p for p in pods if is_enrolled(p, namespaces.get(namespace_of(p)))]


def ztunnel_serving(handle: ClusterHandle, node: str, old_pid: int | None) -> bool:
    """A new ztunnel (not ``old_pid``) on ``node`` is ready and serves every enrolled probe pod of the
    node (waypoint replicas are not captured: they are never "served")."""
    pid = handle.ztunnel_pid(node)
    if pid is None or pid == old_pid:
        return False
    status, _ = admin_client.http_get(handle.node_netns(node), "/healthz/ready", port=READY_PORT, timeout=1.0)
    if status != 200:
        return False
    pods = enrolled(handle, [p for p in handle.pods(workload.NAMESPACE) if node_name(p) == node])
    serving = handle.serving(node)
    return all(serving.get(p["metadata"]["uid"]) == "serving" for p in pods)


def ztunnel_kill(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """SIGKILL the node's ztunnel; the supervisor starts a new one. Ends when the new one serves."""
    node = plan.target_node
    old = handle.ztunnel_pid(node)
    start = now()
    handle.kill("ztunnel", node=node)
    restarted = wait_until(lambda: handle.ztunnel_pid(node) not in (None, old), "a new ztunnel pid", 30)
    end = wait_until(
        lambda: ztunnel_serving(handle, node, old), f"{node}'s new ztunnel to serve", plan.recovery_timeout
    )
    return FaultEvents(
        "ztunnel-kill", node, node, start, end, marks=(("new pid", restarted), ("serving", end))
    )


LOG_STAMP = "%Y-%m-%d %H:%M:%S,%f"


def handover_seconds(log_text: str) -> float | None:
    """From a ztunnel log written during one overlapping restart: seconds from the new ztunnel serving
    its last pod to the old one closing its listeners (its ``listeners closed`` line); None if either is
    absent."""
    served: datetime | None = None
    for line in log_text.splitlines():
        if "ambit.ztunnel.app: serving pod" in line:
            served = _stamp(line) or served
        elif "ambit.ztunnel.manager: listeners closed" in line and served is not None:
            drained = _stamp(line)
            return None if drained is None else (drained - served).total_seconds()
    return None


def _stamp(line: str) -> datetime | None:
    try:
        return datetime.strptime(line[:23], LOG_STAMP)
    except ValueError:
        return None


def connect_prober(handle: ClusterHandle, node: str) -> subprocess.Popen[str]:
    """A 10 ms TCP connect prober in ``node``'s load pod, to another node's echo Service."""
    layout = workload.probe_layout(handle.nodes(), handle.objects(["Pod", "Service"]))
    other = next(n for n in layout.topology.nodes if n != node)
    url = next(t.url for t in layout.targets if t.name == workload.echo(other))
    host = url.removeprefix("http://").rstrip("/")
    proc = handle.popen(
        [sys.executable, "-m", "ambit.apps.load.connect_probe", host, "80", "0.01"],
        pod=layout.load_pods[node],
        namespace=workload.NAMESPACE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready or not proc.stdout.readline().startswith("connect-probe running"):
        stop_prober(proc)
        raise ExperimentError(f"the connect prober on {node} did not start within 30 s")
    return proc


def stop_prober(proc: subprocess.Popen[str]) -> dict[str, object]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=5)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return dict(json.loads(lines[-1])) if lines else {}


def ztunnel_restart(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """``plan.restarts`` graceful overlapping replacements of the node's ztunnel, one after the other
    (each returns once the old one has drained), with a 10 ms connect prober in the node's load pod.
    Measures: refused connects (must be 0) and the handover, from the new ztunnel serving to the old
    one's listeners closing (p50, max; from the ztunnel log)."""
    node = plan.target_node
    episodes: list[tuple[float, float]] = []
    marks: list[tuple[str, float]] = []
    handovers: list[float] = []
    log = handle.layout.log(f"ztunnel-{node}")
    prober = connect_prober(handle, node)
    try:
        for i in range(plan.restarts):
            old = handle.ztunnel_pid(node)
            offset = log.stat().st_size if log.exists() else 0
            start = now()
            handle.restart("ztunnel", node=node)
            end = wait_until(
                lambda old=old: ztunnel_serving(handle, node, old),  # type: ignore[misc]
                f"{node}'s ztunnel to serve after restart {i + 1}",
                plan.recovery_timeout,
            )
            episodes.append((start, end))
            marks.append((f"restart {i + 1}", start))
            with log.open("rb") as f:
                f.seek(offset)
                handover = handover_seconds(f.read().decode(errors="replace"))
            if handover is not None:
                handovers.append(handover)
    finally:
        counts = stop_prober(prober)
    measures: list[tuple[str, float]] = [
        ("connects attempted (10 ms prober)", float(str(counts.get("attempts", 0)))),
        ("connects refused", float(str(counts.get("refused", 0)))),
        (
            "connects failed otherwise",
            float(str(counts.get("timeout", 0))) + float(str(counts.get("other", 0))),
        ),
    ]
    if handovers:
        measures += [
            ("handover p50 ms", round(statistics.median(handovers) * 1000, 1)),
            ("handover max ms", round(max(handovers) * 1000, 1)),
        ]
    return FaultEvents(
        "ztunnel-restart",
        node,
        node,
        episodes[0][0],
        episodes[-1][1],
        episodes=tuple(episodes),
        marks=tuple(marks),
        measures=tuple(measures),
    )


def probe_ready(handle: ClusterHandle) -> bool:
    objects = handle.objects(["Pod", "Service"])
    try:
        workload.probe_layout(handle.nodes(), objects)
    except workload.LayoutError:
        return False
    return True


def node_partition(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Cut the node off the fabric for ``plan.duration`` seconds, heal it, and wait until its probe pods
    are ready again (the node Ready, its endpoints back)."""
    node = plan.target_node
    before = ztunnel_pss(handle)
    start = now()
    handle.cut(node)
    try:
        time.sleep(plan.duration)
    finally:
        handle.heal(node)
    end = now()
    back = wait_until(lambda: probe_ready(handle), "the probe workload to be ready after the heal", 120, 0.5)
    measures: list[tuple[str, float]] = []
    if plan.memory_settle > 0:
        time.sleep(max(0.0, end + plan.memory_settle - now()))
        after = ztunnel_pss(handle)
        measures = [
            (
                f"{n} ztunnel PSS growth MiB ({plan.memory_settle:.0f} s after the heal)",
                round((after[n] - kib) / 1024, 1),
            )
            for n, kib in sorted(before.items())
            if n in after
        ]
    return FaultEvents(
        "node-partition",
        node,
        node,
        start,
        end,
        marks=(("heal", end), ("ready", back)),
        measures=tuple(measures),
    )


def ztunnel_pss(handle: ClusterHandle) -> dict[str, int]:
    """Node -> its ztunnel's PSS in KiB."""
    pids = {n: handle.ztunnel_pid(n) for n in handle.nodes()}
    return {n: procs.pss_kib([pid]) for n, pid in pids.items() if pid is not None}


def waypoint_pods(handle: ClusterHandle) -> list[dict[str, object]]:
    return [
        p
        for p in handle.pods(workload.NAMESPACE)
        if labels(p).get(GATEWAY_NAME_LABEL) == workload.WAYPOINT
        and not p["metadata"].get("deletionTimestamp")
    ]


def _pod_pids(handle: ClusterHandle, name: str) -> set[int]:
    prefix = f"pod-{workload.NAMESPACE}-{name}-"
    keys = [f.stem for f in handle.layout.pids_dir.glob(f"{prefix}*.json")]
    return {pid for key in keys if (pid := handle.pid(key)) is not None}


def _waypoint_ready(handle: ClusterHandle, name: str, old: set[int]) -> bool:
    pids = _pod_pids(handle, name)
    if not pids or pids & old:
        return False
    pod = handle.pod(name, workload.NAMESPACE)
    if not is_ready(pod):
        return False
    status, _ = admin_client.http_get(
        handle.netns(pod=name, namespace=workload.NAMESPACE), "/healthz/ready", port=READY_PORT, timeout=1.0
    )
    return status == 200


def waypoint_replica_kill(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """SIGKILL the waypoint replica on the target node (else one chosen by the seed); the supervisor
    restarts it. Ends when it is ready again."""
    replicas = sorted(waypoint_pods(handle), key=name_of)
    on_node = [p for p in replicas if node_name(p) == plan.target_node]
    if not replicas:
        raise ExperimentError(f"waypoint {workload.WAYPOINT} has no replica")
    victim = on_node[0] if on_node else random.Random(plan.seed).choice(replicas)
    name = name_of(victim)
    old = _pod_pids(handle, name)
    start = now()
    handle.kill("pod", name, namespace=workload.NAMESPACE)
    end = wait_until(
        lambda: _waypoint_ready(handle, name, old), f"waypoint replica {name}", plan.recovery_timeout
    )
    return FaultEvents("waypoint-replica-kill", name, node_name(victim), start, end, marks=(("ready", end),))


def waypoint_down(handle: ClusterHandle, plan: FaultPlan) -> FaultEvents:
    """Stop every replica of the waypoint for ``plan.duration`` s (held down, as a crash that does not
    come back), then start them and wait until one serves."""
    names = sorted(name_of(p) for p in waypoint_pods(handle))
    if not names:
        raise ExperimentError(f"waypoint {workload.WAYPOINT} has no replica")
    old = {n: _pod_pids(handle, n) for n in names}
    start = now()
    try:
        for name in names:
            handle.stop("pod", name, namespace=workload.NAMESPACE)
        down = now()
        time.sleep(plan.duration)
    finally:
        restarting = now()
        failed = []
        for name in names:
            try:
                handle.start("pod", name, namespace=workload.NAMESPACE)
            except ControlError as exc:
                failed.append(f"{name}: {exc}")
        if failed:
            raise ExperimentError("waypoint replicas left held down: " + "; ".join(failed))
    started = now()
    end = wait_until(
        lambda: any(_waypoint_ready(handle, n, old[n]) for n in names),
        "a waypoint replica to serve again",
        plan.recovery_timeout,
    )
    return FaultEvents(
        "waypoint-down",
        workload.WAYPOINT,
        "",
        start,
        end,
        marks=(("down", down), ("restarting", restarting), ("started", started), ("ready", end)),
    )
