"""The runtime daemon of one local cluster (``ambit --cluster C runtime-daemon``, detached by `ambit up`).

One asyncio loop runs: the store server; an informer over Nodes, Namespaces, Deployments, Pods and
Services; and a reconcile pass (on every change, at least each second) that does, in order:

1. scheduling: Deployments → Pods, unbound Pods → ``spec.nodeName`` (:mod:`ambit.runtime.scheduler`);
2. the kubelet: a pod's netns (``NetRuntime.add_pod``) and hosts file; for an enrolled pod, capture
   rules + the ZDS handoff to the node's ztunnel (:mod:`ambit.runtime.agent`), acked, *before* its
   processes start; the processes (supervised, restarted with backoff); readiness probes from the
   node (source 169.254.7.127) → ``status`` in the store; deleted pods stopped and removed;
3. kube-proxy: service DNAT tables on every node and the pods' hosts files;
4. the supervisor tick (restarts), and one ztunnel per node once the control-plane pods have IPs.

SIGTERM stops every process it started (the network stays; `ambit down` removes it).

It also serves ``<cd>/daemon.sock`` (:mod:`ambit.runtime.control`): `ambit stop|start|kill|restart`
of a ztunnel, the control plane, the store or a pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import random
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ambit.protocol import zds
from ambit.runtime import capture, control, kubeproxy, netplan, scheduler
from ambit.runtime.agent import AgentError, NodeAgent
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout, node_index, node_name, read_json
from ambit.runtime.netns import ETC_NETNS, NetRuntime, PodNet
from ambit.runtime.supervisor import ProcessSpec, Supervisor, terminate
from ambit.store import AlreadyExists, Informer, StoreClient, StoreError
from ambit.store.server import StoreServer

log = logging.getLogger("ambit.runtime.daemon")

AMBIENT_LABEL = "istio.io/dataplane-mode"
CP_SERVICE_ACCOUNT = "controlplane"
PROBE_INTERVAL_READY = 5.0
PROBE_INTERVAL = 0.5
STOP_GRACE = 5.0  # `ambit stop`: SIGTERM, then SIGKILL after this
ZTUNNEL_CONNECT_TIMEOUT = 20.0  # `ambit restart ztunnel`: the new one connects to the agent within this
ZTUNNEL_DRAIN_GRACE = 30.0  # ... and the old one drains within this (its drain deadline is 25 s)


def ambit_argv() -> list[str]:
    """How to run this same `ambit` (the venv's console script, else through the interpreter)."""
    script = Path(sys.executable).parent / "ambit"
    if script.exists():
        return [str(script)]
    found = shutil.which("ambit")
    return [found] if found else [sys.executable, "-c", "from ambit.cli import main; main()", "--"]


def ztunnel_available() -> bool:
    return importlib.util.find_spec("ambit.cli.ztunnel") is not None


def controlplane_objects(
    replicas: int, nodes: list[str], cluster: str, layout: Layout
) -> list[dict[str, Any]]:
    """ServiceAccount, Service and the control-plane Pods (on different nodes while there are enough)."""
    argv = [
        *ambit_argv(),
        "--cluster",
        cluster,
        "controlplane",
        "--store-socket",
        str(layout.store_socket),
        "--state-dir",
        str(layout.state_dir),
        "--listen",
        "0.0.0.0",
    ]
    meta = {"namespace": SYSTEM_NAMESPACE, "labels": {"app": "controlplane"}}
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": CP_SERVICE_ACCOUNT, "namespace": SYSTEM_NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "controlplane", **meta},
            "spec": {
                "selector": {"app": "controlplane"},
                "ports": [
                    {"name": "grpc-xds", "port": 15012, "targetPort": 15012},
                    {"name": "http-monitoring", "port": 15014, "targetPort": 15014},
                ],
            },
        },
    ]
    for k in range(1, replicas + 1):
        objs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"controlplane-{k}", **meta},
                "spec": {
                    "nodeName": nodes[(k - 1) % len(nodes)],
                    "serviceAccountName": CP_SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "controlplane",
                            "image": "ambit",
                            "command": argv,
                            "ports": [{"containerPort": 15012}, {"containerPort": 15014}],
                        }
                    ],
                },
            }
        )
    return objs


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


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = obj.get("metadata") or {}
    return meta


class Daemon:
    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.layout = Layout(cluster)
        self.config: dict[str, Any] = read_json(self.layout.config)
        self.nodes = [node_name(i) for i in range(1, int(self.config["nodes"]) + 1)]
        self.net = NetRuntime(cluster, self.layout.state_dir)
        self.supervisor = Supervisor(self.layout.pids_dir)
        self.wake = asyncio.Event()
        self.agents = {
            n: NodeAgent(n, self.layout.ztunnel_socket(n), on_change=self.wake.set) for n in self.nodes
        }
        self.pods: dict[str, PodState] = {}
        self.rng = random.Random()
        self.server: StoreServer | None = None
        self.client: StoreClient | None = None
        self.informer: Informer | None = None
        self._services_applied: list[Any] | None = None
        self._hosts_services: Any = None
        self._ztunnels: set[str] = set()
        # writes the informer may not have seen yet: (ns, name) → (object, monotonic time)
        self._created: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._deleted: dict[tuple[str, str], float] = {}
        self.use_ztunnel = bool(self.config.get("ztunnel", True)) and ztunnel_available()
        self.control = control.ControlServer(control.socket_path(self.layout), self.command)
        self.store_held = False

    # --- lifecycle -----------------------------------------------------------------------------------

    def _store_server(self) -> StoreServer:
        return StoreServer(
            self.layout.store_data, self.layout.store_socket, ensure_namespaces=("default", SYSTEM_NAMESPACE)
        )

    async def run(self, stop: asyncio.Event) -> None:
        self.server = self._store_server()
        await self.server.start()
        self.client = StoreClient(self.layout.store_socket)
        try:
            await self._bootstrap()
            for agent in self.agents.values():
                await agent.start()
            control.write_held(self.layout, ())
            await self.control.start()
            self.informer = Informer(
                self.client, ["Node", "Namespace", "Deployment", "Pod", "Service"], name="runtime"
            )
            self.informer.subscribe(lambda _t, _o: self.wake.set())
            self.informer.start()
            await self.informer.wait_synced()
            log.info("runtime daemon of %s ready (ztunnel: %s)", self.cluster, self.use_ztunnel)
            while not stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile failed")
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        waiter = asyncio.ensure_future(self.wake.wait())
                        stopper = asyncio.ensure_future(stop.wait())
                        try:
                            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                        finally:
                            waiter.cancel()
                            stopper.cancel()
                await asyncio.sleep(0.05)  # coalesce bursts
        finally:
            log.info("stopping every process")
            await self.control.close()
            await asyncio.to_thread(self.supervisor.stop_all)
            for agent in self.agents.values():
                await agent.close()
            if self.informer is not None:
                await self.informer.close()
            await self.client.close()
            if self.server is not None:
                await self.server.close()

    async def _bootstrap(self) -> None:
        assert self.client is not None
        zones: list[str] = list(self.config.get("zones") or [])
        for i, name in enumerate(self.nodes):
            labels = {scheduler.HOSTNAME_KEY: name}
            if zones:
                labels[scheduler.ZONE_KEY] = zones[i % len(zones)]
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels},
                "status": {"addresses": [{"type": "InternalIP", "address": netplan.underlay_ip(i + 1)}]},
            }
            await self.client.apply(node)
        replicas = int(self.config.get("controlplane_replicas", 2))
        for obj in controlplane_objects(replicas, self.nodes, self.cluster, self.layout):
            with contextlib.suppress(AlreadyExists):
                await self.client.create(obj)

    # --- reconcile -----------------------------------------------------------------------------------

    def _objects(self, kind: str) -> list[dict[str, Any]]:
        assert self.informer is not None
        return [dict(o) for (k, _ns, _n), o in self.informer.cache.items() if k == kind]

    async def reconcile(self) -> None:
        if self.store_held:  # `ambit stop store`: keep supervising, write nothing
            self.supervisor.tick()
            return
        await self._schedule()
        await self._kubelet()
        await self._kubeproxy()
        self.supervisor.tick()
        self._start_ztunnels()

    async def _schedule(self) -> None:
        assert self.client is not None
        pods = self._pods_view()
        nodes = [
            scheduler.NodeInfo(_meta(n)["name"], dict(_meta(n).get("labels") or {}))
            for n in self._objects("Node")
        ]
        for deployment in self._objects("Deployment"):
            plan = scheduler.pods_for_deployment(deployment, pods, self.rng)
            ns = _meta(deployment).get("namespace") or "default"
            for name in plan.delete:
                with contextlib.suppress(StoreError):
                    await self.client.delete("Pod", name, ns)
                self._deleted[(ns, name)] = time.monotonic()
                pods = [p for p in pods if (_meta(p).get("namespace"), _meta(p).get("name")) != (ns, name)]
            for pod in plan.create:
                try:
                    created = await self.client.create(pod)
                except StoreError as exc:
                    log.warning("creating a pod of %s/%s: %s", ns, _meta(deployment).get("name"), exc)
                    continue
                pods.append(created)
                self._created[(ns, _meta(created)["name"])] = (created, time.monotonic())
        placed = [
            scheduler.PlacedPod(
                _meta(p).get("namespace") or "default", _meta(p).get("labels") or {}, p["spec"]["nodeName"]
            )
            for p in pods
            if (p.get("spec") or {}).get("nodeName") and scheduler.is_active(p)
        ]
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") or not scheduler.is_active(pod):
                continue
            node = scheduler.place(pod, nodes, placed)
            if node is None:
                await self._mark_unschedulable(pod)
                continue
            bound = {**pod, "spec": {**pod["spec"], "nodeName": node}}
            try:
                await self.client.update(bound)
            except StoreError as exc:
                log.info("binding %s: %s", _meta(pod).get("name"), exc)
                continue
            placed.append(
                scheduler.PlacedPod(
                    _meta(pod).get("namespace") or "default", _meta(pod).get("labels") or {}, node
                )
            )

    async def _mark_unschedulable(self, pod: dict[str, Any]) -> None:
        """A pod no node fits stays Pending, saying why (as the Kubernetes scheduler does)."""
        assert self.client is not None
        status = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                {"type": "Ready", "status": "False"},
            ],
        }
        if pod.get("status") == status:
            return
        try:
            await self.client.update({**pod, "status": status})
        except StoreError as exc:
            log.debug("status of unschedulable %s: %s", _meta(pod).get("name"), exc)

    def _pods_view(self) -> list[dict[str, Any]]:
        """The cached pods, plus those just created and minus those just deleted (for 10 s at most)."""
        now = time.monotonic()
        cached = self._objects("Pod")
        keys = {(_meta(p).get("namespace"), _meta(p).get("name")) for p in cached}
        for key, (_, at) in list(self._created.items()):
            if key in keys or now - at > 10:
                del self._created[key]
        for key, at in list(self._deleted.items()):
            if key not in keys or now - at > 10:
                del self._deleted[key]
        view = [p for p in cached if (_meta(p).get("namespace"), _meta(p).get("name")) not in self._deleted]
        return view + [obj for obj, _ in self._created.values()]

    def _enrolled(self, pod: dict[str, Any]) -> bool:
        ns = _meta(pod).get("namespace") or "default"
        if ns == SYSTEM_NAMESPACE:
            return False
        value = (_meta(pod).get("labels") or {}).get(AMBIENT_LABEL)
        if value is not None:
            return bool(value == "ambient")
        assert self.informer is not None
        namespace = self.informer.get("Namespace", ns) or {}
        return (_meta(namespace).get("labels") or {}).get(AMBIENT_LABEL) == "ambient"

    async def _kubelet(self) -> None:
        pods = {
            str(_meta(p).get("uid") or ""): p
            for p in self._objects("Pod")
            if (p.get("spec") or {}).get("nodeName") in self.nodes
        }
        for uid in [u for u in self.pods if u not in pods]:
            await self._remove_pod(self.pods.pop(uid))
        services = self._objects("Service")
        for uid, pod in pods.items():
            if not uid or not scheduler.is_active(pod):
                continue
            try:
                await self._sync_pod(str(uid), pod, services)
            except Exception:
                log.exception("pod %s/%s", _meta(pod).get("namespace"), _meta(pod).get("name"))

    async def _sync_pod(self, uid: str, pod: dict[str, Any], services: list[dict[str, Any]]) -> None:
        meta = _meta(pod)
        name, ns, node = (
            str(meta["name"]),
            str(meta.get("namespace") or "default"),
            str(pod["spec"]["nodeName"]),
        )
        state = self.pods.get(uid)
        if state is None:
            existing = self.net.pod(uid)
            net = (
                existing
                if existing is not None
                else await asyncio.to_thread(self.net.add_pod, node_index(node), uid)
            )
            state = PodState(uid, name, ns, node, net)
            self.pods[uid] = state
            self._write_hosts(state, services)
        agent = self.agents[node]
        want = self._enrolled(pod)
        if want and not state.enrolled:
            if not state.captured:
                await asyncio.to_thread(capture.apply, state.net.netns)
                state.captured = True
            sa = pod["spec"].get("serviceAccountName") or pod["spec"].get("serviceAccount") or "default"
            info = zds.WorkloadInfo(name, ns, sa, (state.net.ip,), node)
            if (pod.get("status") or {}).get("podIP") != state.net.ip:
                # Publish the IP first: ztunnel takes a pod only once the control plane has pushed its
                # workload, and the workload needs the IP. (Without this, every new pod waited out
                # ztunnel's 5 s and came in on the retry.)
                state.held = state.held or "waiting for ztunnel"
                pod = await self._write_status(pod, state, held=True)
            try:
                await agent.add(uid, info, state.net.netns)
                state.enrolled, state.held = True, ""
            except AgentError as exc:
                state.held = str(exc)
        elif not want and state.enrolled:
            await agent.delete(uid)
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
        if not state.started:
            self._start_containers(pod, state, services)
            state.started = True
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
        for container in pod["spec"].get("containers") or ():
            ports = [int(p["containerPort"]) for p in container.get("ports") or ()]
            if container.get("command"):
                argv = [*container["command"], *(container.get("args") or [])]
            else:
                argv = [sys.executable, "-m", "ambit.apps.sample", "--pod", state.name, "--node", state.node]
                argv += ["--namespace", state.namespace]
                version = (_meta(pod).get("labels") or {}).get("version")
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

    async def _probe(self, pod: dict[str, Any], state: PodState) -> bool:
        if not all(self.supervisor.running(k) for k in state.keys):
            return False
        checks: list[tuple[int, str | None]] = []  # (port, httpGet path or None for a TCP connect)
        for container in pod["spec"].get("containers") or ():
            named = {
                p.get("name"): int(p["containerPort"]) for p in container.get("ports") or () if p.get("name")
            }
            probe = container.get("readinessProbe") or {}
            http = probe.get("httpGet")
            action = probe.get("tcpSocket") or http
            if action is not None:
                port = action.get("port")
                number = named[port] if isinstance(port, str) and port in named else int(port)
                path: str | None = None  # a TCP connect (tcpSocket, or httpGet over HTTPS)
                if http is not None and str(http.get("scheme") or "HTTP").upper() == "HTTP":
                    path = str(http.get("path") or "/")
                checks.append((number, path))
            else:
                checks += [(int(p["containerPort"]), None) for p in container.get("ports") or ()]
        index = node_index(state.node)
        results = await asyncio.gather(
            *(
                asyncio.to_thread(self.net.probe_tcp, index, state.net.ip, port, 0.5)
                if path is None
                else asyncio.to_thread(self.net.probe_http, index, state.net.ip, port, path, 0.5)
                for port, path in checks
            )
        )
        return all(results)

    async def _write_status(self, pod: dict[str, Any], state: PodState, held: bool = False) -> dict[str, Any]:
        """Write the pod's status if it changed; returns the pod as stored now."""
        assert self.client is not None
        old = pod.get("status") or {}
        ready = state.ready and not held
        status: dict[str, Any] = {
            "phase": "Pending" if held else "Running",
            "podIP": state.net.ip,
            "podIPs": [{"ip": state.net.ip}],
            "hostIP": netplan.underlay_ip(node_index(state.node)),
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
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
            await self.agents[state.node].delete(state.uid)
        await asyncio.to_thread(self.net.remove_pod, state.uid)
        log.info("removed pod %s/%s", state.namespace, state.name)

    def _write_hosts(self, state: PodState, services: list[dict[str, Any]]) -> None:
        path = ETC_NETNS / state.net.netns / "hosts"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = kubeproxy.hosts_file(state.name, state.namespace, state.net.ip, services)
        with open(path, "w") as f:  # in place: running processes see the bind-mounted inode change
            f.write(text)

    async def _kubeproxy(self) -> None:
        services = self._objects("Service")
        ports = kubeproxy.service_ports(services, self._objects("Pod"))
        if ports != self._services_applied:
            for i in range(1, len(self.nodes) + 1):
                await asyncio.to_thread(self.net.set_services, i, ports)
            self._services_applied = ports
        names = sorted(
            (_meta(s).get("namespace"), _meta(s).get("name"), kubeproxy.cluster_ip(s)) for s in services
        )
        if names != self._hosts_services:
            for state in self.pods.values():
                self._write_hosts(state, services)
            self._hosts_services = names

    def _start_ztunnels(self) -> None:
        if not self.use_ztunnel or len(self._ztunnels) == len(self.nodes):
            return
        cp_ips = [
            (p.get("status") or {}).get("podIP")
            for p in self._objects("Pod")
            if _meta(p).get("namespace") == SYSTEM_NAMESPACE
            and (_meta(p).get("labels") or {}).get("app") == "controlplane"
        ]
        if not cp_ips or not all(cp_ips):
            return
        for node in self.nodes:
            if node in self._ztunnels:
                continue
            argv = [*ambit_argv(), "--cluster", self.cluster, "ztunnel", "--node", node]
            for ip in cp_ips:
                argv += ["--xds", f"{ip}:15012"]
            key = f"ztunnel-{node}"
            netns = netplan.node_netns(self.cluster, node_index(node))
            self.supervisor.start(ProcessSpec(key, argv, self.layout.log(key), netns=netns))
            self._ztunnels.add(node)

    # --- component control (`ambit stop|start|kill|restart`) ----------------------------------------

    def _pod_refs(self) -> list[control.PodRef]:
        return [
            control.PodRef(s.namespace, s.name, s.node, tuple(s.keys), s.namespace == SYSTEM_NAMESPACE)
            for s in self.pods.values()
        ]

    async def command(self, cmd: control.Command) -> dict[str, Any]:
        if cmd.component == "store":
            return await self._store_command(cmd.op)
        keys = control.resolve(cmd, self.nodes, self._pod_refs(), self.supervisor.keys())
        try:
            if cmd.op == "stop":
                message = await self._stop_keys(keys)
            elif cmd.op == "start":
                message = self._start_keys(keys)
            elif cmd.op == "kill":
                killed = {k: self.supervisor.kill(k) for k in keys}
                if not any(killed.values()):
                    raise control.ControlError(f"not running: {', '.join(keys)}")
                message = ", ".join(f"{k} (pid {p}) killed" for k, p in killed.items() if p)
            elif cmd.component == "ztunnel":
                assert cmd.node is not None
                message = await self._replace_ztunnel(cmd.node)
            else:
                await self._stop_keys(keys)
                message = self._start_keys(keys)
        finally:
            self._write_held()
        return {"message": message, "keys": keys}

    def _write_held(self) -> None:
        held = self.supervisor.held_keys() + (["store"] if self.store_held else [])
        control.write_held(self.layout, held)
        self.wake.set()

    async def _stop_keys(self, keys: list[str]) -> str:
        for key in keys:
            self.supervisor.hold(key)
        await _poll(lambda: not any(self.supervisor.running(k) for k in keys), STOP_GRACE)
        for key in keys:
            self.supervisor.kill(key)  # still running after the grace period
        await _poll(lambda: not any(self.supervisor.running(k) for k in keys), 2.0)
        self.supervisor.tick()  # reap: records removed
        return f"stopped {', '.join(keys)}"

    def _start_keys(self, keys: list[str]) -> str:
        started = [f"{k} (pid {self.supervisor.release(k)})" for k in keys]
        return f"started {', '.join(started)}"

    async def _replace_ztunnel(self, node: str) -> str:
        """Start a new ztunnel, wait until the agent replayed the node's pods to it (its listeners
        bind beside the old ones with SO_REUSEPORT; new pods go to it), then SIGTERM the old one,
        which drains."""
        key = control.ztunnel_key(node)
        agent = self.agents[node]
        before = agent.ready_connections()
        old = self.supervisor.replace(key)
        new_pid = self.supervisor.pid(key)
        connected = await _poll(
            lambda: any(c not in before for c in agent.ready_connections()), ZTUNNEL_CONNECT_TIMEOUT
        )
        if not connected:
            kept = f"; the old one (pid {old.pid}) keeps running" if old is not None else ""
            raise control.ControlError(f"the new {key} (pid {new_pid}) did not connect{kept}")
        if old is None:
            return f"started {key} (pid {new_pid}); no old one ran"
        new = next(c for c in reversed(agent.ready_connections()) if c not in before)
        refused = await agent.retry_refused(new, ZTUNNEL_CONNECT_TIMEOUT)
        if refused:
            # The old ztunnel keeps serving: draining it would leave these pods with no listener.
            pods = ", ".join(f"{uid} ({why})" for uid, why in refused.items())
            raise control.ControlError(
                f"the new {key} (pid {new_pid}) refused {pods}; the old one (pid {old.pid}) keeps serving"
            )
        await asyncio.to_thread(terminate, old, ZTUNNEL_DRAIN_GRACE)
        self.supervisor.drained(key)
        return f"replaced {key}: pid {old.pid} drained (exit {old.returncode}), pid {new_pid} serves"

    async def _store_command(self, op: str) -> dict[str, Any]:
        if op in ("stop", "kill", "restart") and self.server is not None:
            server, self.server = self.server, None
            self.store_held = True
            await server.close()
        if op in ("start", "kill", "restart") and self.server is None:
            server = self._store_server()
            await server.start()
            self.server = server
            self.store_held = False
        self._write_held()
        state = "stopped" if self.store_held else "running"
        return {"message": f"store {op}: {state}", "keys": ["store"]}


async def _poll(predicate: Callable[[], bool], within: float, interval: float = 0.1) -> bool:
    """Wait until ``predicate()`` holds (True) or ``within`` seconds pass (False)."""
    deadline = time.monotonic() + within
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval)


def main(cluster: str) -> None:
    layout = Layout(cluster)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Daemon(cluster).run(stop)

    log.info("runtime daemon for %s starting (files in %s)", cluster, layout.root)
    asyncio.run(run())
