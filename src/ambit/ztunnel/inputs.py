"""What the per-pod proxies share and what each one is given (ztunnel's ``ProxyInputs``).

* :class:`PodInfo`: a pod as the node agent announces it (ZDS ``AddWorkload``: uid, name, namespace,
  service account). Its identity is known before any config arrives, so its certificate can be
  fetched, and its listeners opened, while the config is still on its way.
* :class:`PodListeners`: the three listening sockets the caller created for the pod (in the pod's
  network namespace in production, on a 127/8 address in tests).
* :class:`StateWaiter`: "has the first config synced, and is this pod in it?" — and a way to wait
  for that with a timeout (connections are held, then refused: DESIGN §5, facts §1.10).
* :class:`ProxyInputs`: the ztunnel-wide parts every handler uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass, field

from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity
from ambit.net.pool import HbonePool
from ambit.state.snapshot import Snapshot
from ambit.state.store import StateStore
from ambit.ztunnel.certs import WorkloadCredentials
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.connections import ConnectionRegistry
from ambit.ztunnel.metrics import Metrics
from ambit.ztunnel.sockets import SocketFactory


@dataclass(frozen=True, slots=True)
class PodInfo:
    """An enrolled pod on this node, as the node agent describes it."""

    uid: str
    name: str
    namespace: str
    service_account: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)


@dataclass(slots=True)
class PodListeners:
    """The pod's listening sockets: 15001 (outbound), 15006 (plaintext inbound), 15008 (HBONE)."""

    outbound: socket.socket
    inbound_plaintext: socket.socket
    hbone: socket.socket

    def close(self) -> None:
        for sock in (self.outbound, self.inbound_plaintext, self.hbone):
            with contextlib.suppress(OSError):
                sock.close()


async def open_listeners(sockets: SocketFactory, ip: str, config: ZtunnelConfig) -> PodListeners:
    """The pod's three listeners on ``ip`` at the configured ports, made by ``sockets``."""
    made: list[socket.socket] = []
    try:
        for port in (config.outbound_port, config.inbound_plaintext_port, config.hbone_port):
            made.append(await sockets.listen((ip, port)))
    except BaseException:
        for sock in made:
            sock.close()
        raise
    return PodListeners(made[0], made[1], made[2])


class StateWaiter:
    """Whether the config has synced and holds a given pod; wakes waiters on every change."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._synced = False
        self._wake: asyncio.Future[None] | None = None
        self._unsubscribe = store.subscribe(self._changed)

    @property
    def synced(self) -> bool:
        return self._synced

    def mark_synced(self) -> None:
        """The first config is in the store (the xDS client's ``synced``); never unset."""
        self._synced = True
        self._pulse()

    def ready(self, uid: str) -> Snapshot | None:
        """The current snapshot if it is synced and holds workload ``uid``, else None."""
        snapshot = self.store.current
        if self._synced and uid in snapshot.workloads:
            return snapshot
        return None

    async def wait_ready(self, uid: str, wait_seconds: float) -> Snapshot | None:
        """:meth:`ready`, waiting up to ``wait_seconds`` for it; None when it did not happen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while (snapshot := self.ready(uid)) is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            if self._wake is None or self._wake.done():
                self._wake = loop.create_future()
            await asyncio.wait([self._wake], timeout=remaining)
        return snapshot

    def close(self) -> None:
        self._unsubscribe()
        self._pulse()

    def _changed(self, _snapshot: Snapshot) -> None:
        self._pulse()

    def _pulse(self) -> None:
        wake, self._wake = self._wake, None
        if wake is not None and not wake.done():
            wake.set_result(None)


@dataclass(slots=True)
class ProxyInputs:
    """The ztunnel-wide parts every per-pod proxy and handler uses."""

    config: ZtunnelConfig
    store: StateStore
    state: StateWaiter
    credentials: WorkloadCredentials
    pool: HbonePool
    connections: ConnectionRegistry
    metrics: Metrics
    rng: random.Random = field(default_factory=random.Random)
