"""One Python handle on a running local cluster: :class:`ClusterHandle`.

It reads and writes objects through the cluster's store socket (:class:`ambit.store.StoreClient`),
runs commands in a pod's or a node's network namespace (:mod:`ambit.runtime.nsexec`), acts on
components through the runtime daemon's command socket (:mod:`ambit.runtime.control`), and reads the
daemon's files (pid records, held keys). It never spawns the `ambit` CLI; the CLI, the bench, the e2e
tests and `ambit demo` use it. Bringing a cluster up stays `ambit up` (:mod:`ambit.runtime.cluster`
plus the CLI's wait for ready pods; it detaches the daemon); :meth:`ClusterHandle.down` is `ambit down`.
Blocking: each store call runs its own event loop.
"""

from __future__ import annotations

import asyncio
import functools
import subprocess
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ambit.resources.kinds import is_namespaced
from ambit.resources.objects import DATAPLANE_MODE, DATAPLANE_MODE_AMBIENT
from ambit.runtime import (
    admin_client,
    capture,
    control,
    faults,
    kubeproxy,
    netplan,
    nsexec,
    procs,
    start_order,
)
from ambit.runtime import cluster as rt
from ambit.runtime.controllers.kubelet import is_enrolled
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout, node_index, node_name, read_json
from ambit.runtime.netns import NetRuntime, PodNet
from ambit.store import StoreClient
from ambit.store.labels import set_labels
from ambit.store.types import Op

T = TypeVar("T")
Obj = dict[str, Any]


class HandleError(RuntimeError):
    """The cluster cannot answer what was asked (no such pod, no network yet...)."""


@dataclass(frozen=True)
class NodeStatus:
    name: str
    zone: str
    ztunnel: str  # "running", "stopped" (held down by `ambit stop`) or "not running"


@dataclass(frozen=True)
class PodStatus:
    namespace: str
    name: str
    node: str
    ip: str
    ready: bool
    ambient: bool


@dataclass(frozen=True)
class ClusterStatus:
    """What `ambit status` shows, as data."""

    daemon_running: bool
    nodes: list[NodeStatus]
    pods: list[PodStatus]
    held: set[str]

    @property
    def controlplane(self) -> tuple[int, int]:
        """(ready, total) control-plane replicas."""
        cps = [p for p in self.pods if p.namespace == SYSTEM_NAMESPACE]
        return sum(1 for p in cps if p.ready), len(cps)

    def node(self, name: str) -> NodeStatus:
        return next(n for n in self.nodes if n.name == name)

    def lines(self) -> list[str]:
        """The body of `ambit status` (after its first line)."""
        out = ["NODES"]
        out += [f"  {n.name:<8} zone={n.zone:<6} ztunnel={n.ztunnel}" for n in self.nodes]
        # Columns as wide as their widest cell (kubectl's way), so the table stays within 80 columns
        # whenever the names allow it.
        rows = [("NAMESPACE", "NAME", "NODE", "IP", "READY", "AMBIENT")]
        rows += [
            (p.namespace, p.name, p.node, p.ip, "yes" if p.ready else "no", "yes" if p.ambient else "no")
            for p in self.pods
        ]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        out.append("PODS")
        out += [
            "  " + " ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + " " + row[5]
            for row in rows
        ]
        ready, total = self.controlplane
        out.append(f"CONTROL PLANE: {ready}/{total} replicas ready")
        if self.held:
            out.append(f"STOPPED (held down until `ambit start`): {', '.join(sorted(self.held))}")
        return out

    def ambient(self, namespace: str) -> dict[str, bool]:
        """Pod name → enrolled, for one namespace."""
        return {p.name: p.ambient for p in self.pods if p.namespace == namespace}


class ClusterHandle:
    """A running cluster named ``name`` (its files under ``Layout(name).root``)."""

    def __init__(self, name: str, *, timeout: float = 30.0) -> None:
        self.name = name
        self.layout = Layout(name)
        self.timeout = timeout

    # -- the cluster ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return rt.exists(self.name)

    def daemon_alive(self) -> bool:
        return rt.daemon_alive(self.name)

    def down(self) -> rt.DownReport:
        """Take the cluster down, as `ambit down` (in this process: nothing to detach)."""
        return rt.down(self.name)

    def nodes(self) -> list[str]:
        config = read_json(self.layout.config)
        return [node_name(i) for i in range(1, int(config["nodes"]) + 1)]

    def _store(self, work: Callable[[StoreClient], Awaitable[T]]) -> T:
        async def run() -> T:
            async with StoreClient(self.layout.store_socket, timeout=self.timeout) as client:
                return await work(client)

        return asyncio.run(run())

    # -- objects ----------------------------------------------------------------------------------

    def objects(self, kinds: Sequence[str]) -> list[Obj]:
        """Every stored object of these kinds."""
        return self._store(lambda c: _items(c, kinds))

    def pods(self, namespace: str | None = "default") -> list[Obj]:
        """The pods of ``namespace`` (every namespace for None)."""
        return [
            p
            for p in self.objects(["Pod"])
            if namespace is None or p["metadata"].get("namespace") == namespace
        ]

    def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        """One stored object (:class:`ambit.store.NotFound` if absent)."""
        return self._store(lambda c: c.get(kind, name, namespace))

    def pod(self, name: str, namespace: str = "default") -> Obj:
        return self.get("Pod", name, namespace)

    def apply(self, objects: str | Iterable[Obj], *, namespace: str | None = None) -> None:
        """Apply manifest text (YAML/JSON, several documents) or objects, all or nothing; ``namespace``
        fills in objects that name none."""
        if isinstance(objects, str):
            # Imported here: manifest validation loads pydantic and yaml, which every `ambit` process
            # (the ztunnel's too) would otherwise pay for in memory at start.
            from ambit.resources.manifest import parse_manifests

            items = parse_manifests(objects, "handle")
        else:
            items = list(objects)
        if namespace is not None:
            items = [_in_namespace(obj, namespace) for obj in items]
        self._store(lambda c: c.transaction([Op("apply", obj) for obj in items]))

    def delete(self, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete one object (and what it owns), as `ambit delete --ignore-not-found`; whether it existed."""
        ref: Obj = {"kind": kind, "metadata": {"name": name}}
        if namespace is not None:
            ref["metadata"]["namespace"] = namespace
        result = self._store(lambda c: c.transaction([Op("delete", ref, missing_ok=True)]))
        return result.results[0].result != "notfound"

    def label(
        self, kind: str, name: str, labels: Mapping[str, str | None], namespace: str | None = None
    ) -> None:
        """Set (value) or remove (None) labels of one object, retrying on a concurrent write."""
        self._store(lambda c: set_labels(c, kind, name, labels, namespace))

    def set_ambient(self, namespace: str, enrolled: bool) -> None:
        """Label the namespace ``istio.io/dataplane-mode=ambient``, or remove the label."""
        self.label("Namespace", namespace, {DATAPLANE_MODE: DATAPLANE_MODE_AMBIENT if enrolled else None})

    # -- network namespaces and exec --------------------------------------------------------------

    def pod_net(self, name: str, namespace: str = "default") -> PodNet:
        """The pod's network (its netns, its node's netns, its IP)."""
        uid = self.pod(name, namespace)["metadata"]["uid"]
        net = NetRuntime(self.name, self.layout.state_dir).pod(uid)
        if net is None:
            raise HandleError(f"pod {namespace}/{name} has no network yet")
        return net

    def node_netns(self, node: str) -> str:
        return netplan.node_netns(self.name, node_index(node))

    def netns(self, *, pod: str | None = None, namespace: str = "default", node: str | None = None) -> str:
        """A node's network namespace (``node``), else a pod's."""
        if node is not None:
            return self.node_netns(node)
        if pod is None:
            raise HandleError("give a pod or a node")
        return self.pod_net(pod, namespace).netns

    def exec(
        self,
        argv: Sequence[str],
        *,
        pod: str | None = None,
        namespace: str = "default",
        node: str | None = None,
        check: bool = True,
        timeout: float = 60.0,
        input_text: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` to completion in a pod's (or, with ``node``, a node's) network namespace, as
        `ambit exec` does; with ``check``, a non-zero exit raises :class:`ambit.runtime.nsexec.NetnsError`."""
        netns = self.netns(pod=pod, namespace=namespace, node=node)
        return nsexec.run(netns, argv, input_text=input_text, check=check, timeout=timeout)

    def popen(
        self,
        argv: Sequence[str],
        *,
        pod: str | None = None,
        namespace: str = "default",
        node: str | None = None,
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        """Start ``argv`` in a pod's (or a node's) network namespace; the pid is the command's own."""
        return nsexec.popen(self.netns(pod=pod, namespace=namespace, node=node), argv, **kwargs)

    # -- components -------------------------------------------------------------------------------

    def command(
        self,
        op: str,
        component: str,
        name: str | None = None,
        *,
        node: str | None = None,
        namespace: str | None = None,
    ) -> str:
        """Send one command to the runtime daemon; its message. Raises :class:`control.ControlError`."""
        cmd = control.Command(op, component, node, name, namespace)
        reply = control.request(control.socket_path(self.layout), cmd)
        return str(reply.get("message") or "ok")

    # ``handle.stop(component, name, node=..., namespace=...)``: :meth:`command` with its op.
    stop = functools.partialmethod(command, "stop")
    start = functools.partialmethod(command, "start")
    kill = functools.partialmethod(command, "kill")
    restart = functools.partialmethod(command, "restart")

    def pid(self, key: str) -> int | None:
        """The recorded pid of a supervised process (``ztunnel-node1``, ``pod-NS-NAME-CONTAINER``)."""
        entry = procs.read(self.layout.pid_file(key))
        return None if entry is None else entry[0]

    def ztunnel_pid(self, node: str) -> int | None:
        return self.pid(control.ztunnel_key(node))

    def ztunnel_pids(self) -> dict[str, int]:
        """``ztunnel-node1`` → pid, for every node with a recorded ztunnel."""
        pids = {control.ztunnel_key(n): self.ztunnel_pid(n) for n in self.nodes()}
        return {k: p for k, p in pids.items() if p is not None}

    def ztunnel_config(self, node: str) -> dict[str, Any]:
        """``node``'s ztunnel ``/config_dump`` (``admin_client.AdminError`` if unreadable)."""
        return admin_client.node_config_dump(self.name, node)

    def serving(self, node: str) -> dict[str, str]:
        """Pod uid → its state in ``node``'s ztunnel ("serving" once it took the pod); {} if unreadable."""
        try:
            pods = self.ztunnel_config(node).get("pods") or {}
        except admin_client.AdminError:
            return {}
        return {str(uid): str(p.get("state")) for uid, p in pods.items()}

    def meshed(self, namespace: str) -> dict[str, bool | None]:
        """Pod name → True when its traffic is captured and its node's ztunnel serves it, False when
        neither, None in between (the kubelet is enrolling or releasing it). The label (``status``) is
        seen at once; this is the data plane's own state."""
        pods = self.pods(namespace)
        serving: dict[str, str] = {}
        for node in sorted({str(p["spec"]["nodeName"]) for p in pods if p["spec"].get("nodeName")}):
            serving.update(self.serving(node))
        net = NetRuntime(self.name, self.layout.state_dir)
        state: dict[str, bool | None] = {}
        for pod in pods:
            uid = pod["metadata"]["uid"]
            pod_net = net.pod(uid)
            captured = pod_net is not None and capture.is_applied(pod_net.netns)
            served = serving.get(uid) == "serving"
            state[pod["metadata"]["name"]] = captured if captured == served else None
        return state

    def held(self) -> set[str]:
        """The keys held down by `ambit stop` (and "store")."""
        return control.read_held(self.layout)

    def reboot(self, node: str, *, seed: int | None = None) -> control.RebootReply:
        """Reboot ``node`` (`ambit fault reboot`): every process of it SIGKILLed, its pods' network
        namespaces deleted, then it boots: its ztunnel and its pods (in an order from ``seed``, else a
        drawn one) come back, racing (:mod:`ambit.runtime.controllers.node_reboot`). Returns once the
        node boots, not once its pods are ready. Raises :class:`HandleError` for an unknown node and
        :class:`control.ControlError` when the daemon refuses."""
        nodes = self.nodes()
        if node not in nodes:
            raise HandleError(f"cluster {self.name} has no node {node!r} (nodes: {', '.join(nodes)})")
        cmd = control.Command("reboot", "node", node, seed=seed)
        return control.RebootReply.from_reply(node, control.request(control.socket_path(self.layout), cmd))

    def pod_start_order(self, node: str, boot: float | None = None) -> list[start_order.StartRecord]:
        """The pod starts the kubelet of ``node`` recorded for one reboot (``boot``: its id, the
        :class:`control.RebootReply`'s; default: the latest), in the order the apps started: when each
        pod's capture was installed, when the node's ztunnel ACKed it, when its app was spawned
        (:mod:`ambit.runtime.start_order`). Empty when the node never rebooted."""
        path = start_order.records_path(self.layout, node)
        try:
            records = start_order.parse(path.read_text())
        except FileNotFoundError:
            return []
        chosen = start_order.last_boot(records) if boot is None else boot
        return [] if chosen is None else start_order.of_boot(records, chosen)

    # -- network faults ---------------------------------------------------------------------------

    def cut(self, node: str) -> bool:
        """Cut ``node`` off the fabric: every packet between it and the other nodes or the fabric
        bridge (the store's heartbeat listener) is dropped silently, both ways (:mod:`ambit.runtime.faults`
        says what a cut severs and what it does not). Idempotent; True when the node was not cut before.
        Raises :class:`HandleError` for an unknown node or a cluster that is not up."""
        index = self._fault_node(node)
        try:
            return faults.cut(self.name, index)
        except faults.FaultError as exc:
            raise HandleError(f"cutting {node}: {exc}") from exc

    def heal(self, node: str) -> bool:
        """Remove ``node``'s cut (exactly the table :meth:`cut` added). Idempotent; True when it was cut."""
        index = self._fault_node(node)
        try:
            return faults.heal(self.name, index)
        except faults.FaultError as exc:
            raise HandleError(f"healing {node}: {exc}") from exc

    def cuts(self) -> set[str]:
        """The nodes cut off the fabric now (read from the kernel, not from a file)."""
        self._fault_nodes()
        try:
            return {node_name(i) for i in faults.cuts(self.name)}
        except faults.FaultError as exc:
            raise HandleError(str(exc)) from exc

    def _fault_nodes(self) -> list[str]:
        """The cluster's nodes, or :class:`HandleError` when the cluster is not up."""
        if not faults.fabric_up(self.name):
            raise HandleError(f"cluster {self.name} is not up (no fabric namespace)")
        try:
            return self.nodes()
        except (OSError, ValueError, KeyError) as exc:
            raise HandleError(f"cluster {self.name} is not up (no config: {exc})") from exc

    def _fault_node(self, node: str) -> int:
        nodes = self._fault_nodes()
        if node not in nodes:
            raise HandleError(f"cluster {self.name} has no node {node!r} (nodes: {', '.join(nodes)})")
        return node_index(node)

    # -- status -----------------------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Nodes (zone, ztunnel state), pods (node, IP, ready, enrolled), held keys."""
        items = self.objects(["Node", "Pod", "Namespace"])
        held = self.held()
        namespaces = {o["metadata"]["name"]: o for o in items if o["kind"] == "Namespace"}
        nodes = []
        for node in (o for o in items if o["kind"] == "Node"):
            name = node["metadata"]["name"]
            key = control.ztunnel_key(name)
            entry = procs.read(self.layout.pid_file(key))
            state = "running" if entry is not None and procs.matches(*entry) else "not running"
            if state != "running" and key in held:
                state = "stopped"
            zone = (node["metadata"].get("labels") or {}).get("topology.kubernetes.io/zone", "-")
            nodes.append(NodeStatus(name, zone, state))
        pods = []
        for pod in sorted(
            (o for o in items if o["kind"] == "Pod"),
            key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"]),
        ):
            meta, st = pod["metadata"], pod.get("status") or {}
            ambient = is_enrolled(pod, namespaces.get(meta["namespace"]))
            pods.append(
                PodStatus(
                    meta["namespace"],
                    meta["name"],
                    pod["spec"].get("nodeName") or "-",
                    st.get("podIP") or "-",
                    kubeproxy.pod_ready(pod),
                    ambient,
                )
            )
        return ClusterStatus(self.daemon_alive(), nodes, pods, held)


async def _items(client: StoreClient, kinds: Sequence[str]) -> list[Obj]:
    listed = await client.list(list(kinds))
    return [dict(o) for o in listed.items]


def _in_namespace(obj: Obj, namespace: str) -> Obj:
    """As `ambit apply -n`: a namespaced object naming no namespace (parsing defaults it to "default")
    goes to ``namespace``; one naming another namespace is an error."""
    meta = obj.get("metadata") or {}
    current = meta.get("namespace")
    if not is_namespaced(str(obj.get("kind"))) or current == namespace:
        return obj
    if current not in (None, "", "default"):
        raise HandleError(f"{obj.get('kind')} {meta.get('name')} is in namespace {current}, not {namespace}")
    return {**obj, "metadata": {**meta, "namespace": namespace}}
