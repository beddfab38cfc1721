"""The ztunnel process of one node (``ambit ztunnel --node N``): everything wired together.

:class:`ZtunnelApp` owns, for one node:

* the link to the control plane (:class:`~ambit.proxy.control_plane.ControlPlaneLink`): the node
  credential (``<node dir>/node-cert.pem``, ``node-key.pem``, ``trust-bundle.pem``, written by the
  runtime when the node joins), the :class:`~ambit.state.store.StateStore` fed by xDS, the CA client
  the workload certificates are fetched with, and the cache (``<node dir>/ztunnel-cache``): loaded
  **before** xDS connects, so a restarted ztunnel serves its pods from the last good state and
  certificates while the control plane is away (the ztunnel is marked synced from the cache);
* the :class:`~ambit.ztunnel.manager.Ztunnel` (the proxies) and the node agent client
  (:class:`~ambit.ztunnel.agent_client.AgentClient`): this class is its handler. An ``AddWorkload``
  waits (bounded by ``pod_wait``) for the pod's Workload to be in the state, opens the pod's three
  listeners inside its netns (:class:`~ambit.proxy.netns_sockets.NetnsSocketFactory` on the fd the
  agent passed) and starts the pod's proxy; the fd stays open while the pod is served;
* the admin, metrics and readiness ports (:mod:`ambit.proxy.admin`): ready when the config has
  synced (from xDS or the cache) **and** the agent's ``SnapshotSent`` has been processed.

:meth:`ZtunnelApp.drain` is SIGTERM: the agent connection is closed (no new pods), every pod stops
accepting and its connections finish within the drain deadline (HBONE GOAWAY, TLS close_notify),
then everything is closed and the cache written a last time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ambit.identity.secrets import SecretUnavailable
from ambit.net.tasks import spawn
from ambit.protocol import zds
from ambit.proxy.admin import AdminServers
from ambit.proxy.cache import ProxyCache
from ambit.proxy.config_dump import (
    AgentView,
    ConfigDump,
    HeapView,
    XdsView,
)
from ambit.proxy.control_plane import Address, ControlPlaneLink, NodeCredentialFiles
from ambit.proxy.heap import HeapTrimmer
from ambit.proxy.netns_sockets import NetnsSocketFactory
from ambit.proxy.sockets import SocketFactory
from ambit.state.store import StateStore
from ambit.xds.ca_client import CaClient
from ambit.xds.client import XdsClient
from ambit.ztunnel.agent_client import AgentClient
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.inputs import PodInfo, open_listeners
from ambit.ztunnel.manager import PodStartError, Ztunnel

log = logging.getLogger(__name__)


def node_dir(cluster_dir: Path, node: str) -> Path:
    """``<cluster dir>/nodes/<node>``: the agent socket, node credential and cache of one node."""
    if not node or "/" in node or node in {".", ".."}:
        raise ValueError(f"{node!r} is not a node name")
    return cluster_dir / "nodes" / node


@dataclass(frozen=True, slots=True)
class AppConfig:
    """What the ztunnel process needs besides :class:`ZtunnelConfig`."""

    ztunnel: ZtunnelConfig
    node_dir: Path
    bootstrap: tuple[Address, ...] = ()
    admin_host: str = "127.0.0.1"
    public_host: str = "0.0.0.0"  # metrics and readiness
    # The address the pod's listeners bind inside its netns.
    listen_ip: str = "0.0.0.0"
    # How long an AddWorkload waits for the pod's Workload to arrive over xDS.
    pod_wait: float = 5.0
    cache_interval: float = 0.5
    agent_backoff_max: float = 5.0
    heap_trim_interval: float = 10.0  # see ambit.proxy.heap
    # netns fd -> the pod's socket factory (tests on loopback inject their own).
    sockets_for: Callable[[int], SocketFactory] = field(default=NetnsSocketFactory)

    @property
    def agent_socket(self) -> Path:
        return self.node_dir / "ztunnel.sock"

    @property
    def cache_dir(self) -> Path:
        return self.node_dir / "ztunnel-cache"

    @property
    def credential(self) -> NodeCredentialFiles:
        return NodeCredentialFiles.in_dir(self.node_dir)


class ZtunnelApp:
    """One node's ztunnel process; see the module docstring."""

    def __init__(self, config: AppConfig, *, on_quit: Callable[[], None] | None = None) -> None:
        self.config = config
        self._on_quit = on_quit
        self.link = ControlPlaneLink(
            credential=config.credential,
            cache=ProxyCache(config.cache_dir, interval=config.cache_interval),
            bootstrap=config.bootstrap,
            node_id=config.ztunnel.node,
        )
        self.fds: dict[str, int] = {}
        self.agent_synced = False
        self._replayed: set[str] = set()
        self._started = False
        self._closed = False
        self.ztunnel: Ztunnel | None = None
        self.agent: AgentClient | None = None
        self.admin: AdminServers | None = None
        self.heap = HeapTrimmer(interval=config.heap_trim_interval)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        link = self.link
        ca = await link.open()
        self.ztunnel = Ztunnel(cfg.ztunnel, fetch=ca.fetch, bundle=link.bundle, store=self.store)
        await link.restore_certificates(self.ztunnel.credentials.secrets)
        if link.synced_from_cache:
            self.ztunnel.mark_synced()
            log.info("serving from the cache (%d resources) until xDS reconnects", len(self.store.current))
        link.connect(self.ztunnel.credentials.secrets.snapshot)
        spawn(self._mark_synced_when_xds_syncs(), name="ztunnel-xds-sync")
        z = cfg.ztunnel
        self.admin = AdminServers(
            config_dump=lambda: self.config_dump().to_json(),
            metrics=self.ztunnel.metrics.exposition_async,
            ready=self.ready,
            quit=self._on_quit,
            admin=(cfg.admin_host, z.admin_port),
            metrics_address=(cfg.public_host, z.metrics_port),
            readiness=(cfg.public_host, z.readiness_port),
        )
        await self.admin.start()
        self.agent = AgentClient(cfg.agent_socket, self, backoff_max=cfg.agent_backoff_max)
        self.agent.start()
        self.heap.start()
        self._started = True
        log.info("ztunnel for node %s started (agent socket %s)", z.node, cfg.agent_socket)

    @property
    def store(self) -> StateStore:
        return self.link.store

    @property
    def synced_from_cache(self) -> bool:
        return self.link.synced_from_cache

    @property
    def xds(self) -> XdsClient | None:
        return self.link.xds

    @property
    def ca(self) -> CaClient | None:
        return self.link.ca

    async def _mark_synced_when_xds_syncs(self) -> None:
        assert self.xds is not None and self.ztunnel is not None
        await self.xds.synced.wait()
        self.ztunnel.mark_synced()
        log.info("xDS synced: %d resources", len(self.store.current))

    async def drain(self, deadline: float | None = None) -> None:
        """Graceful stop (SIGTERM); see the module docstring."""
        await self._stop(drain=True, deadline=deadline)

    async def close(self) -> None:
        """Stop at once (tests)."""
        await self._stop(drain=False)

    async def _stop(self, *, drain: bool, deadline: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        if self.agent is not None:
            await self.agent.close()
        if self._started:  # before the pods go: stopping them forgets their certificates
            await self.link.close_cache()
        if self.ztunnel is not None:
            await (self.ztunnel.drain(deadline) if drain else self.ztunnel.close())
        await self._close_rest()

    async def _close_rest(self) -> None:
        await self.heap.close()
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds.clear()
        await self.link.close()
        if self.admin is not None:
            await self.admin.close()

    # -- readiness and introspection -------------------------------------------------------------

    def ready(self) -> bool:
        return self.ztunnel is not None and self.ztunnel.ready() and self.agent_synced and not self._closed

    def config_dump(self) -> ConfigDump:
        """What this ztunnel believes (``/config_dump``, ``ambit ztunnel-config``)."""
        z = self.ztunnel
        assert z is not None
        xds = self.xds
        return dataclasses.replace(
            z.config_dump(),
            synced_from_cache=self.synced_from_cache,
            heap=HeapView(self.heap.free_bytes(), self.heap.trims),
            agent=AgentView(
                socket=str(self.config.agent_socket),
                connected=self.agent is not None and self.agent.connected.is_set(),
                snapshot_processed=self.agent_synced,
            ),
            xds=None if xds is None else XdsView(xds.address, xds.synced.is_set(), xds.last_error),
        )

    # -- the node agent (AgentHandler) -----------------------------------------------------------

    def connected(self) -> None:
        self._replayed = set()

    async def add_workload(self, uid: str, workload: zds.WorkloadInfo, netns_fd: int) -> None:
        z = self.ztunnel
        if z is None or self._closed:
            raise PodStartError("ztunnel is shutting down")
        snapshot = await z.state.wait_ready(uid, self.config.pod_wait)
        if snapshot is None:
            why = "no config yet" if not z.state.synced else "not in the config"
            name = f"{workload.namespace}/{workload.name}"
            raise PodStartError(f"workload {uid} ({name}): {why} after {self.config.pod_wait:g} s")
        known = snapshot.workloads[uid]
        if (known.namespace, known.service_account) != (workload.namespace, workload.service_account):
            log.warning(
                "pod %s: the agent says %s/sa %s, the config says %s/sa %s; using the config",
                uid,
                workload.namespace,
                workload.service_account,
                known.namespace,
                known.service_account,
            )
        pod = PodInfo(uid, known.name, known.namespace, known.service_account, known.trust_domain)
        # The certificate first: the listeners join the pod's SO_REUSEPORT groups as soon as they are
        # bound, and during an overlapping restart the kernel hands them a share of new connections at
        # once; fetched after binding, those connections would wait in the accept queue for the CA
        # (measured: a request timed out after 3 s during `ambit chaos run ztunnel-restart`).
        try:
            await z.inputs.credentials.listener_context(pod.identity)
        except SecretUnavailable as exc:
            raise PodStartError(f"no certificate for {pod.identity}: {exc}") from exc
        sockets = self.config.sockets_for(netns_fd)
        listeners = await open_listeners(sockets, self.config.listen_ip, z.config)
        await z.add_pod(pod, listeners, sockets=sockets)
        old = self.fds.pop(uid, None)
        if old is not None and old != netns_fd:
            with contextlib.suppress(OSError):
                os.close(old)
        self.fds[uid] = netns_fd
        self._replayed.add(uid)
        log.info("serving pod %s/%s (%s)", pod.namespace, pod.name, uid)

    async def del_workload(self, uid: str) -> None:
        if self.ztunnel is not None:
            await self.ztunnel.remove_pod(uid)
        self._replayed.discard(uid)
        fd = self.fds.pop(uid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        log.info("stopped serving pod %s", uid)

    async def snapshot_sent(self) -> None:
        if self.ztunnel is not None:
            stale = [uid for uid in self.ztunnel.pods if uid not in self._replayed]
            for uid in stale:
                log.info("pod %s was not replayed by the agent: dropping it", uid)
                await self.del_workload(uid)
        self.agent_synced = True
