"""The command server: `ambit stop|start|kill|restart` of a ztunnel, the control plane, the store or a
pod, and `ambit fault reboot` of a node, received on ``<cd>/daemon.sock`` (:mod:`ambit.runtime.control`:
protocol, key resolution) and applied through the supervisor (hold, release, kill), the ztunnel
controller (overlapping restart), the store host or a node's kubelet (:mod:`.node_reboot`); after each
command the held keys go to ``held.json`` and the daemon is woken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from ambit.runtime import control
from ambit.runtime.controllers import node_reboot
from ambit.runtime.controllers.kubelet import Kubelet
from ambit.runtime.controllers.store_host import StoreHost
from ambit.runtime.controllers.view import poll
from ambit.runtime.controllers.ztunnels import ZtunnelController
from ambit.runtime.layout import Layout
from ambit.runtime.supervisor import Supervisor

STOP_GRACE = 5.0  # `ambit stop`: SIGTERM, then SIGKILL after this


class CommandServer:
    def __init__(
        self,
        layout: Layout,
        nodes: list[str],
        *,
        supervisor: Supervisor,
        ztunnels: ZtunnelController,
        store: StoreHost,
        pods: Callable[[], list[control.PodRef]],
        wake: asyncio.Event,
        kubelets: Mapping[str, Kubelet] | None = None,
    ) -> None:
        self.layout = layout
        self.nodes = nodes
        self.supervisor = supervisor
        self.ztunnels = ztunnels
        self.store = store
        self.pods = pods
        self.wake = wake
        self.kubelets = dict(kubelets or {})
        self.server = control.ControlServer(control.socket_path(layout), self.command)

    async def start(self) -> None:
        control.write_held(self.layout, ())
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()

    async def command(self, cmd: control.Command) -> dict[str, Any]:
        if cmd.component == "store":
            state = await self.store.command(cmd.op)
            self._write_held()
            return {"message": f"store {cmd.op}: {state}", "keys": ["store"]}
        if cmd.component == "node":
            return await self._reboot(cmd)
        keys = control.resolve(cmd, self.nodes, self.pods(), self.supervisor.keys())
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
                message = await self.ztunnels.replace(cmd.node)
            else:
                await self._stop_keys(keys)
                message = self._start_keys(keys)
        finally:
            self._write_held()
        return {"message": message, "keys": keys}

    async def _reboot(self, cmd: control.Command) -> dict[str, Any]:
        kubelet = self.kubelets.get(cmd.node or "")
        if kubelet is None:
            raise control.ControlError(f"no node {cmd.node}")
        try:
            return (await node_reboot.reboot(kubelet, self.supervisor, seed=cmd.seed)).reply()
        finally:
            self._write_held()

    def _write_held(self) -> None:
        held = self.supervisor.held_keys() + (["store"] if self.store.held else [])
        control.write_held(self.layout, held)
        self.wake.set()

    async def _stop_keys(self, keys: list[str]) -> str:
        for key in keys:
            self.supervisor.hold(key)
        await poll(lambda: not any(self.supervisor.running(k) for k in keys), STOP_GRACE)
        for key in keys:
            self.supervisor.kill(key)  # still running after the grace period
        await poll(lambda: not any(self.supervisor.running(k) for k in keys), 2.0)
        self.supervisor.tick()  # reap: records removed
        return f"stopped {', '.join(keys)}"

    def _start_keys(self, keys: list[str]) -> str:
        started = [f"{k} (pid {self.supervisor.release(k)})" for k in keys]
        return f"started {', '.join(started)}"
