"""The kubelet of one node: the lifecycle of the pods bound to it.

For each pod: its netns (``NetRuntime.add_pod``) and hosts file; for an enrolled pod, capture rules +
the ZDS handoff to the node's ztunnel (:mod:`ambit.runtime.agent`), acked, *before* its processes
start (a pod never runs uncaptured: until then it is held Pending, "WaitingForZtunnel"); the
processes (supervised, restarted with backoff); readiness probes from the node (:mod:`.probes`) →
``status`` in the store; a pod marked for deletion (``deletionTimestamp``) terminated gracefully in a
task of its own (:mod:`.termination`: endpoints out and ACKed, preStop, SIGTERM, SIGKILL at the end
of the grace period), then its network removed and the Pod deleted; a pod gone from the store (a
forced delete, its namespace deleted) stopped at once. :func:`sync_all` runs the kubelets of every
node over the informer's pods.

Every pod gets a pod-bound token before its processes start, named to them in ``AMBIT_TOKEN_FILE``
and renewed while it runs (:mod:`.tokens`).

Each pod start is recorded (:mod:`ambit.runtime.start_order`: when its capture was installed, when the
ztunnel ACKed it, when its app was spawned) in ``<cd>/nodes/<node>/pod-starts.jsonl``. A node reboot
(:mod:`.node_reboot`) pauses the node's kubelet (a pass leaves its pods alone; ``lock`` is held by a
pass's work on one of its pods, so the reboot waits for the one in flight), tears it down, then hands it
a boot: the pods come back through the ordinary path above, in the boot's random order first, each
keeping its address when it is still free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ambit.net.tasks import spawn
from ambit.protocol import zds
from ambit.resources.objects import is_ambient, namespace_or_default
from ambit.runtime import capture, kubeproxy, netplan, replica_sets, scheduler, start_order
from ambit.runtime.agent import AgentError, NodeAgent
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.controllers import termination
from ambit.runtime.controllers.probes import readiness_checks, run_checks
from ambit.runtime.controllers.tokens import TOKEN_FILE_ENV, TRUST_BUNDLE_FILE_ENV, TokenProjector
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout, node_index
from ambit.runtime.netns import ETC_NETNS, NetRuntime, PodNet
from ambit.runtime.supervisor import ProcessSpec, Supervisor
from ambit.store import StoreClient
from ambit.store.types import StoreError

log = logging.getLogger("ambit.runtime.daemon")

PROBE_INTERVAL_READY = 5.0
PROBE_INTERVAL = 0.5


def is_enrolled(pod: dict[str, Any], namespace: dict[str, Any] | None) -> bool:
    """Whether the runtime hands ``pod`` to its node's ztunnel: never in the system namespace (the
    control plane runs outside the mesh); else Istio's enrolment rule, :func:`objects.is_ambient`."""
    if namespace_or_default(pod) == SYSTEM_NAMESPACE:
        return False
    return is_ambient(pod, namespace)


@dataclass
class PodState:
    uid: str
    name: str
    namespace: str
    node: str
    net: PodNet
    keys: list[str] = field(default_factory=list)
    captured: bool = False
    enrolled: bool = False
    started: bool = False
    ready: bool = False
    last_probe: float = 0.0
    held: str = ""
    captured_at: float | None = None  # monotonic: capture installed (this sandbox)
    acked_at: float | None = None  # monotonic: the node's ztunnel ACKed the pod


@dataclass(frozen=True)
class Boot:
    """A node coming back from a reboot: its kill time (the boot's id), the seeded random order its pods
    come up in (uid -> rank), and the address (host number) each had."""

    at: float
    order: Mapping[str, int]
    hosts: Mapping[str, int]


class Kubelet:
    def __init__(
        self,
        node: str,
        layout: Layout,
        *,
        client: StoreClient,
        view: ClusterView,
        net: NetRuntime,
        supervisor: Supervisor,
        agent: NodeAgent,
        tokens: TokenProjector | None = None,
        node_ready: Callable[[str], bool] = lambda _node: True,
    ) -> None:
        self.node = node
        self.node_ready = node_ready
        self.tokens = tokens
        self.layout = layout
        self.client = client
        self.view = view
        self.net = net
        self.supervisor = supervisor
        self.agent = agent
        self.pods: dict[str, PodState] = {}
        self.terminating: dict[str, asyncio.Task[None]] = {}
        self.lock = asyncio.Lock()  # a pass's work on one pod of this node, or a reboot's teardown
        self.paused = False  # a reboot tears the node down: passes leave its pods alone
        self.boot: Boot | None = None
        self._unstarted: dict[str, int] = {}  # this boot's pods not started yet: uid -> rank
        self._hosts: dict[str, int] = {}  # this boot's pods without a sandbox yet: uid -> host to keep
        self.records = start_order.records_path(layout, node)

    def begin_boot(self, boot: Boot) -> None:
        """The node boots: its pods come up first, in ``boot.order``, each asking for its old address."""
        self.boot = boot
        self._unstarted = dict(boot.order)
        self._hosts = dict(boot.hosts)

    def boot_rank(self, uid: str) -> int | None:
        """The pod's place in the current boot's order while it has not started; None otherwise."""
        return self._unstarted.get(uid)

    async def remove_gone(self, live: Mapping[str, Any]) -> None:
        """Stop and remove the pods whose uid is no longer in ``live`` (at once: no grace is left)."""
        for uid in [u for u in self.pods if u not in live]:
            if self.paused:
                return
            async with self.lock:
                state = self.pods.pop(uid, None)
                if state is None:
                    continue
                task = self.terminating.pop(uid, None)
                if task is not None:
                    task.cancel()
                await self._remove_pod(state)

    async def cancel_terminations(self) -> None:
        """Stop every running termination (the daemon is shutting down and stops every process)."""
        tasks = list(self.terminating.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def begin_termination(self, uid: str, pod: dict[str, Any]) -> None:
        """Start terminating a pod marked for deletion (once; :mod:`.termination`)."""
        if uid not in self.terminating:
            self.terminating[uid] = spawn(
                self._terminate(uid, pod), name=f"terminate-{meta(pod).get('name')}"
            )

    def _control_planes(self) -> list[tuple[str, str]]:
        """(pod IP, the namespace of the node it runs on) of each control-plane replica."""
        return [
            (str(p["status"]["podIP"]), self.net.node_netns(node_index(str(p["spec"]["nodeName"]))))
            for p in self.view.objects("Pod")
            if meta(p).get("namespace") == SYSTEM_NAMESPACE
            and (meta(p).get("labels") or {}).get("app") == "controlplane"
            and (p.get("status") or {}).get("podIP")
            and (p.get("spec") or {}).get("nodeName")
        ]

    def _grace_now(self, uid: str, name: str, namespace: str, grace: float) -> float:
        """The grace period, shortened if the pod was deleted again with a shorter one since."""
        current = self.view.get("Pod", name, namespace)
        if current is None or meta(current).get("uid") != uid:
            return grace
        return min(grace, termination.grace_of(current))

    async def _terminate(self, uid: str, pod: dict[str, Any]) -> None:
        name, ns = str(meta(pod).get("name")), str(meta(pod).get("namespace") or "default")
        grace = termination.grace_of(pod)
        started = time.monotonic()
        try:
            state = self.pods.get(uid)
            if state is not None:
                node_netns = self.net.node_netns(node_index(self.node))
                within = min(termination.ENDPOINT_ACK_CAP, grace / 2)
                _, synced = await termination.wait_endpoints_removed(self._control_planes, uid, within)
                steps = [f"endpoints: {synced}"]

                def grace_left() -> float:
                    return self._grace_now(uid, name, ns, grace) - (time.monotonic() - started)

                for container, handler, named in termination.pre_stop_handlers(pod):
                    done = await termination.run_pre_stop(
                        handler,
                        pod_ip=state.net.ip,
                        pod_netns=state.net.netns,
                        node_netns=node_netns,
                        within=grace_left(),
                        named_ports=named,
                    )
                    steps.append(f"preStop of {container}: {done}")
                sigterm_at = time.monotonic()

                def kill_at() -> float:
                    return max(sigterm_at + termination.MIN_SIGTERM_GRACE, time.monotonic() + grace_left())

                steps.append(await termination.stop_processes(self.supervisor, state.keys, kill_at))
                await self._remove_pod(state)
                self.pods.pop(uid, None)
                log.info("terminated pod %s/%s (grace %gs): %s", ns, name, grace, "; ".join(steps))
            elif self.net.pod(uid) is not None:  # left from before a daemon restart
                await asyncio.to_thread(self.net.remove_pod, uid)
            try:
                await self.client.delete("Pod", name, ns, uid=uid, grace_period=0)
            except StoreError as exc:
                log.info("deleting terminated pod %s/%s: %s", ns, name, exc)
        finally:
            self.terminating.pop(uid, None)

    def _enrolled(self, pod: dict[str, Any]) -> bool:
        return is_enrolled(pod, self.view.get("Namespace", meta(pod).get("namespace") or "default"))

    async def sync_pod(self, uid: str, pod: dict[str, Any], services: list[dict[str, Any]]) -> None:
        m = meta(pod)
        name, ns = str(m["name"]), str(m.get("namespace") or "default")
        state = self.pods.get(uid)
        if state is None:
            existing = self.net.pod(uid)
            net = (
                existing
                if existing is not None
                else await asyncio.to_thread(
                    self.net.add_pod, node_index(self.node), uid, host=self._hosts.pop(uid, None)
                )
            )
            state = PodState(uid, name, ns, self.node, net)
            self.pods[uid] = state
            self.write_hosts(state, services)
        want = self._enrolled(pod)
        sa = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
        if want and not state.enrolled:
            if not state.captured:
                await asyncio.to_thread(capture.apply, state.net.netns)
                state.captured = True
                state.captured_at = time.monotonic()
            info = zds.WorkloadInfo(name, ns, sa, (state.net.ip,), self.node)
            if (pod.get("status") or {}).get("podIP") != state.net.ip:
                # Publish the IP first: ztunnel takes a pod only once the control plane has pushed its
                # workload, and the workload needs the IP. (Without this, every new pod waited out
                # ztunnel's 5 s and came in on the retry.)
                state.held = state.held or "waiting for ztunnel"
                pod = await self._write_status(pod, state, held=True)
            try:
                await self.agent.add(uid, info, state.net.netns)
                state.enrolled, state.held = True, ""
                state.acked_at = time.monotonic()
            except AgentError as exc:
                state.held = str(exc)
        elif not want and state.enrolled:
            await self.agent.delete(uid)
            state.enrolled = False
            if state.captured:
                await asyncio.to_thread(capture.remove, state.net.netns)
                state.captured = False
        elif not want and state.captured and not state.started:
            await asyncio.to_thread(capture.remove, state.net.netns)
            state.captured = False
        if want and not state.enrolled:
            await self._write_status(pod, state, held=True)
            return  # a pod never runs uncaptured
        if self.tokens is not None:
            self.tokens.project(uid=state.uid, namespace=state.namespace, name=state.name, service_account=sa)
        if not state.started:
            spawned = time.monotonic()
            self._start_containers(pod, state, services)
            state.started = True
            self._record_start(state, spawned)
        now = time.monotonic()
        interval = PROBE_INTERVAL_READY if state.ready else PROBE_INTERVAL
        if now - state.last_probe >= interval:
            state.last_probe = now
            state.ready = await self._probe(pod, state)
        await self._write_status(pod, state)

    def _start_containers(self, pod: dict[str, Any], state: PodState, services: list[dict[str, Any]]) -> None:
        tcp = kubeproxy.tcp_ports(pod, services)
        env = {
            "POD_NAME": state.name,
            "POD_NAMESPACE": state.namespace,
            "NODE_NAME": state.node,
            "POD_IP": state.net.ip,
        }
        if self.tokens is not None:
            env[TOKEN_FILE_ENV] = str(self.tokens.path(state.uid))
            if self.tokens.trust_bundle:
                env[TRUST_BUNDLE_FILE_ENV] = str(self.tokens.bundle_path(state.uid))
        for container in pod["spec"].get("containers") or ():
            ports = [int(p["containerPort"]) for p in container.get("ports") or ()]
            if container.get("command"):
                argv = [*container["command"], *(container.get("args") or [])]
                if argv[0] == "ambit":  # ambit's own images (the waypoint): this runtime's ambit
                    argv = [*ambit_argv(), *argv[1:]]
            else:
                argv = [sys.executable, "-m", "ambit.apps.sample", "--pod", state.name, "--node", state.node]
                argv += ["--namespace", state.namespace]
                version = (meta(pod).get("labels") or {}).get("version")
                if version:
                    argv += ["--version", version]
                for port in ports:
                    argv += ["--tcp-port" if port in tcp else "--http-port", str(port)]
            key = f"pod-{state.namespace}-{state.name}-{container['name']}"
            cenv = dict(env)
            for item in container.get("env") or ():
                if "value" in item:
                    cenv[str(item["name"])] = str(item["value"])
            spec = ProcessSpec(key, argv, self.layout.log(key), netns=state.net.netns, env=cenv)
            self.supervisor.start(spec)
            state.keys.append(key)

    def _record_start(self, state: PodState, spawned: float) -> None:
        """One line in the node's start record (:mod:`ambit.runtime.start_order`)."""
        rank = self._unstarted.pop(state.uid, None)
        record = start_order.StartRecord(
            node=self.node,
            namespace=state.namespace,
            name=state.name,
            uid=state.uid,
            ip=state.net.ip,
            enrolled=state.enrolled,
            capture=state.captured_at if state.captured else None,
            ack=state.acked_at if state.enrolled else None,
            app=spawned,
            boot=self.boot.at if self.boot is not None and rank is not None else None,
            rank=rank,
        )
        try:
            self.records.parent.mkdir(parents=True, exist_ok=True)
            with open(self.records, "a") as f:
                f.write(start_order.line(record))
        except OSError as exc:
            log.warning("recording the start of %s/%s: %s", state.namespace, state.name, exc)

    async def _probe(self, pod: dict[str, Any], state: PodState) -> bool:
        if not all(self.supervisor.running(k) for k in state.keys):
            return False
        return await run_checks(self.net, node_index(state.node), state.net.ip, readiness_checks(pod))

    async def _write_status(self, pod: dict[str, Any], state: PodState, held: bool = False) -> dict[str, Any]:
        """Write the pod's status if it changed; returns the pod as stored now."""
        old = pod.get("status") or {}
        ready = state.ready and not held and self.node_ready(self.node)  # NotReady node: no ready pods
        ready_condition = {"type": "Ready", "status": "True" if ready else "False"}
        previous = next((c for c in old.get("conditions") or () if c.get("type") == "Ready"), None)
        if previous is not None and previous.get("status") == ready_condition["status"]:
            since = previous.get("lastTransitionTime") or replica_sets.rfc3339(time.time())
        else:
            since = replica_sets.rfc3339(time.time())  # minReadySeconds counts from here
        if since:
            ready_condition["lastTransitionTime"] = since
        status: dict[str, Any] = {
            "phase": "Pending" if held else "Running",
            "podIP": state.net.ip,
            "podIPs": [{"ip": state.net.ip}],
            "hostIP": netplan.underlay_ip(node_index(state.node)),
            "startTime": old.get("startTime") or replica_sets.rfc3339(time.time()),
            "conditions": [ready_condition],
        }
        if held:
            status["reason"] = "WaitingForZtunnel"
            status["message"] = state.held
        restarts = sum(self.supervisor.restarts(k) for k in state.keys)
        status["containerStatuses"] = [{"name": "all", "ready": ready, "restartCount": restarts}]
        if all(old.get(k) == v for k, v in status.items()) and set(old) == set(status):
            return pod
        try:
            return await self.client.update({**pod, "status": status})
        except StoreError as exc:
            log.debug("status of %s: %s", state.name, exc)
            return pod

    async def _remove_pod(self, state: PodState) -> None:
        for key in state.keys:
            await asyncio.to_thread(self.supervisor.stop, key)
        if state.enrolled:
            await self.agent.delete(state.uid)
        await asyncio.to_thread(self.net.remove_pod, state.uid)
        if self.tokens is not None:
            self.tokens.remove(state.uid)
        log.info("removed pod %s/%s", state.namespace, state.name)

    def write_hosts(self, state: PodState, services: list[dict[str, Any]]) -> None:
        path = ETC_NETNS / state.net.netns / "hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = kubeproxy.hosts_file(state.name, state.namespace, state.net.ip, services)
        with open(path, "w") as f:  # in place: running processes see the bind-mounted inode change
            f.write(text)

    def rewrite_hosts(self, services: list[dict[str, Any]]) -> None:
        """Every pod's hosts file again (the Services changed)."""
        for state in self.pods.values():
            self.write_hosts(state, services)


async def sync_all(kubelets: Mapping[str, Kubelet], view: ClusterView) -> None:
    """One kubelet pass over every node: first remove the pods gone from the store (their process keys
    are free again), then sync each active bound pod on its node's kubelet, in the informer's order."""
    pods = {
        str(meta(p).get("uid") or ""): p
        for p in view.objects("Pod")
        if (p.get("spec") or {}).get("nodeName") in kubelets
    }
    for kubelet in kubelets.values():
        await kubelet.remove_gone(pods)
    services = view.objects("Service")
    for uid, pod in pass_order(pods, kubelets):
        kubelet = kubelets[str(pod["spec"]["nodeName"])]
        if kubelet.paused:  # rebooting: its pods come back once it boots
            continue
        if uid and meta(pod).get("deletionTimestamp"):
            kubelet.begin_termination(uid, pod)
            continue
        if not uid or not scheduler.is_active(pod):
            continue
        try:
            async with kubelet.lock:
                if not kubelet.paused:
                    await kubelet.sync_pod(str(uid), pod, services)
        except Exception:
            log.exception("pod %s/%s", meta(pod).get("namespace"), meta(pod).get("name"))


def pass_order(pods: Mapping[str, dict[str, Any]], kubelets: Mapping[str, Kubelet]) -> list[tuple[str, Any]]:
    """The pass's order: the pods of a booting node not started yet first, in their boot's random order;
    then every other pod in the informer's order."""
    booting: list[tuple[int, str, Any]] = []
    others: list[tuple[str, Any]] = []
    for uid, pod in pods.items():
        rank = kubelets[str(pod["spec"]["nodeName"])].boot_rank(uid)
        if rank is None:
            others.append((uid, pod))
        else:
            booting.append((rank, uid, pod))
    return [(uid, pod) for _, uid, pod in sorted(booting, key=lambda b: b[0])] + others
