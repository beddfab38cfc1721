"""The runtime daemon of one local cluster (``ambit --cluster C runtime-daemon``, detached by `ambit up`).

One asyncio loop runs the embedded store (:mod:`.controllers.store_host`), an informer over Nodes,
Namespaces, Deployments, Pods and Services, the command server on ``<cd>/daemon.sock``
(:mod:`.controllers.commands`), and a reconcile pass (on every change, at least each second) over the
controllers, in order:

0. node liveness (:mod:`.controllers.node_lifecycle`): Ready or NotReady from each node's Lease,
   which the node renews over the fabric;
1. the workload controllers and the scheduler (:mod:`.controllers.scheduling`): Deployments →
   ReplicaSets → Pods, unbound Pods → ``spec.nodeName``;
2. the kubelet of each node (:mod:`.controllers.kubelet`): pod network, capture + ZDS handoff before
   the processes start, processes, readiness probes, status, hosts files;
3. kube-proxy (:mod:`.controllers.service_proxy`): service DNAT tables on every node, hosts files;
4. every 5 s, the autoscalers and the PodDisruptionBudget status (:mod:`.controllers.autoscaling`);
5. the supervisor tick (restarts), and one ztunnel per node once the control-plane pods have IPs
   (:mod:`.controllers.ztunnels`).

While the store is stopped by command, a pass only ticks the supervisor. SIGTERM stops every process
the daemon started (the network stays; `ambit down` removes it). The objects it writes at start are
in :mod:`.bootstrap`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import signal
from typing import Any

from ambit.identity.ca import TRUST_BUNDLE_FILE
from ambit.identity.tokens import load_signer
from ambit.runtime import control, netplan
from ambit.runtime.ambit_command import ztunnel_available
from ambit.runtime.bootstrap import bootstrap
from ambit.runtime.controllers import kubelet
from ambit.runtime.controllers.autoscaling import AutoscalingController
from ambit.runtime.controllers.commands import CommandServer
from ambit.runtime.controllers.kubelet import Kubelet
from ambit.runtime.controllers.node_lifecycle import NodeLifecycle
from ambit.runtime.controllers.scheduling import SchedulerController
from ambit.runtime.controllers.service_proxy import ServiceProxy
from ambit.runtime.controllers.store_host import StoreHost
from ambit.runtime.controllers.tokens import TokenProjector
from ambit.runtime.controllers.view import ClusterView
from ambit.runtime.controllers.ztunnels import ZtunnelController
from ambit.runtime.fabric_pki import FabricPki
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout, node_index, node_name, read_json
from ambit.runtime.netns import NetRuntime
from ambit.runtime.supervisor import Supervisor
from ambit.store import Informer, StoreClient

log = logging.getLogger("ambit.runtime.daemon")

WATCHED = [
    "Node",
    "Namespace",
    "Deployment",
    "ReplicaSet",
    "Pod",
    "Service",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "VerticalPodAutoscaler",
    "Lease",
]
RESYNC = 1.0  # a reconcile pass at least this often
COALESCE = 0.05  # after a pass: let a burst of changes arrive before the next


class Daemon:
    def __init__(self, cluster: str) -> None:
        self.cluster = cluster
        self.layout = Layout(cluster)
        self.config: dict[str, Any] = read_json(self.layout.config)
        self.nodes = [node_name(i) for i in range(1, int(self.config["nodes"]) + 1)]
        self.wake = asyncio.Event()
        self._store_was_held = False
        self.view = ClusterView()
        self.store = StoreHost(self.layout)
        self.client = StoreClient(self.layout.store_socket)
        self.supervisor = Supervisor(self.layout.pids_dir)
        net = NetRuntime(cluster, self.layout.state_dir)
        use_ztunnel = bool(self.config.get("ztunnel", True)) and ztunnel_available()
        self.ztunnels = ZtunnelController(
            cluster,
            self.layout,
            self.nodes,
            self.view,
            self.supervisor,
            enabled=use_ztunnel,
            on_change=self.wake.set,
        )
        tokens = (
            TokenProjector(
                load_signer(self.layout.tokens_dir),
                self.layout.pods_dir,
                trust_bundle=(self.layout.ca_dir / TRUST_BUNDLE_FILE).read_bytes(),
            )
            if self.layout.tokens_dir.exists()
            else None
        )
        self.lifecycle = NodeLifecycle(
            self.nodes,
            client=self.client,
            view=self.view,
            pki=FabricPki(self.layout.fabric_pki_dir),
            node_netns={n: netplan.node_netns(cluster, node_index(n)) for n in self.nodes},
            grace=float(self.config.get("node_grace", 8.0)),
        )
        self.kubelets = {
            n: Kubelet(
                n,
                self.layout,
                client=self.client,
                view=self.view,
                net=net,
                supervisor=self.supervisor,
                agent=self.ztunnels.agents[n],
                tokens=tokens,
                node_ready=self.lifecycle.node_ready if self.store.pki is not None else lambda _n: True,
            )
            for n in self.nodes
        }
        self.scheduler = SchedulerController(self.client, self.view, random.Random())
        self.service_proxy = ServiceProxy(net, self.view, self.kubelets)
        self.autoscaling = AutoscalingController(self.client, self.view, net, self._pod_pids)
        self.commands = CommandServer(
            self.layout,
            self.nodes,
            supervisor=self.supervisor,
            ztunnels=self.ztunnels,
            store=self.store,
            pods=self._pod_refs,
            wake=self.wake,
            kubelets=self.kubelets,
        )

    def _pod_pids(self) -> dict[str, list[int]]:
        """Each running pod's container pids (what the autoscalers measure)."""
        pids: dict[str, list[int]] = {}
        for k in self.kubelets.values():
            for uid, state in k.pods.items():
                found = [pid for key in state.keys if (pid := self.supervisor.pid(key)) is not None]
                if found:
                    pids[uid] = found
        return pids

    def _pod_refs(self) -> list[control.PodRef]:
        return [
            control.PodRef(s.namespace, s.name, s.node, tuple(s.keys), s.namespace == SYSTEM_NAMESPACE)
            for k in self.kubelets.values()
            for s in k.pods.values()
        ]

    async def run(self, stop: asyncio.Event) -> None:
        await self.store.start()
        informer: Informer | None = None
        try:
            await bootstrap(self.client, self.config, self.nodes, self.cluster, self.layout)
            await self.ztunnels.start()
            await self.commands.start()
            informer = Informer(self.client, WATCHED, name="runtime")
            self.view.informer = informer
            informer.subscribe(lambda _t, _o: self.wake.set())
            informer.start()
            await informer.wait_synced()
            if self.store.pki is not None:
                self.lifecycle.start()
            log.info("runtime daemon of %s ready (ztunnel: %s)", self.cluster, self.ztunnels.enabled)
            while not stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("reconcile failed")
                self.wake.clear()
                await _wait_any(self.wake, stop, RESYNC)
                await asyncio.sleep(COALESCE)
        finally:
            log.info("stopping every process")
            await self.lifecycle.close()
            for k in self.kubelets.values():
                await k.cancel_terminations()
            await self.commands.close()
            await asyncio.to_thread(self.supervisor.stop_all)
            await self.ztunnels.close()
            if informer is not None:
                await informer.close()
            await self.client.close()
            await self.store.close()

    async def reconcile(self) -> None:
        if self.store.held:  # `ambit stop store`: keep supervising, write nothing
            self.supervisor.tick()
            self._store_was_held = True
            return
        if self._store_was_held:  # no node could renew its Lease meanwhile: a fresh grace period each
            self.lifecycle.restart_clock()
            self._store_was_held = False
        if self.store.pki is not None:
            await self.lifecycle.sync()
        await self.scheduler.sync()
        await kubelet.sync_all(self.kubelets, self.view)
        await self.service_proxy.sync()
        await self.autoscaling.sync()
        self.supervisor.tick()
        self.ztunnels.sync()


async def _wait_any(a: asyncio.Event, b: asyncio.Event, within: float) -> None:
    """Until either event is set, or ``within`` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            waiter = asyncio.ensure_future(a.wait())
            stopper = asyncio.ensure_future(b.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()


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
