"""The node agent side of each node: its ZDS server (:class:`ambit.runtime.agent.NodeAgent`) and its
ztunnel process: started once the control-plane pods have IPs, and replaced on `ambit restart
ztunnel` with an overlap (the new one takes the node's pods before the old one drains)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ambit.runtime import control, netplan
from ambit.runtime.agent import NodeAgent
from ambit.runtime.ambit_command import ambit_argv
from ambit.runtime.controllers.view import ClusterView, meta, poll
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout, node_index
from ambit.runtime.supervisor import ProcessSpec, Supervisor, terminate

ZTUNNEL_CONNECT_TIMEOUT = 20.0  # `ambit restart ztunnel`: the new one connects to the agent within this
ZTUNNEL_DRAIN_GRACE = 30.0  # ... and the old one drains within this (its drain deadline is 25 s)


class ZtunnelController:
    def __init__(
        self,
        cluster: str,
        layout: Layout,
        nodes: list[str],
        view: ClusterView,
        supervisor: Supervisor,
        *,
        enabled: bool,
        on_change: Callable[[], None],
    ) -> None:
        self.cluster = cluster
        self.layout = layout
        self.nodes = nodes
        self.view = view
        self.supervisor = supervisor
        self.enabled = enabled
        self.agents = {n: NodeAgent(n, layout.ztunnel_socket(n), on_change=on_change) for n in nodes}
        self._started: set[str] = set()

    async def start(self) -> None:
        for agent in self.agents.values():
            await agent.start()

    async def close(self) -> None:
        for agent in self.agents.values():
            await agent.close()

    def sync(self) -> None:
        """Start the ztunnel of every node that has none yet, once every control-plane pod has an IP."""
        if not self.enabled or len(self._started) == len(self.nodes):
            return
        cp_ips = [
            (p.get("status") or {}).get("podIP")
            for p in self.view.objects("Pod")
            if meta(p).get("namespace") == SYSTEM_NAMESPACE
            and (meta(p).get("labels") or {}).get("app") == "controlplane"
        ]
        if not cp_ips or not all(cp_ips):
            return
        for node in self.nodes:
            if node in self._started:
                continue
            argv = [*ambit_argv(), "--cluster", self.cluster, "ztunnel", "--node", node]
            for ip in cp_ips:
                argv += ["--xds", f"{ip}:15012"]
            key = control.ztunnel_key(node)
            netns = netplan.node_netns(self.cluster, node_index(node))
            self.supervisor.start(ProcessSpec(key, argv, self.layout.log(key), netns=netns))
            self._started.add(node)

    async def replace(self, node: str) -> str:
        """Start a new ztunnel, wait until the agent replayed the node's pods to it (its listeners
        bind beside the old ones with SO_REUSEPORT; new pods go to it), then SIGTERM the old one,
        which drains."""
        key = control.ztunnel_key(node)
        agent = self.agents[node]
        before = agent.ready_connections()
        old = self.supervisor.replace(key)
        new_pid = self.supervisor.pid(key)
        connected = await poll(
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
