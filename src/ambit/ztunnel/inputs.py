"""What the per-pod proxies share and what each one is given (ztunnel's ``ProxyInputs``).

* :class:`PodInfo`: a pod as the node agent announces it (ZDS ``AddWorkload``: uid, name, namespace,
  service account). Its identity is known before any config arrives, so its certificate can be
  fetched, and its listeners opened, while the config is still on its way.
* :class:`PodListeners`: the three listening sockets the caller created for the pod (in the pod's
  network namespace in production, on a 127/8 address in tests).
* :class:`ProxyInputs`: the ztunnel-wide parts every handler uses.
"""

from __future__ import annotations

import contextlib
import random
import socket
from dataclasses import dataclass, field

from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity
from ambit.net.pool import HbonePool
from ambit.proxy.certs import WorkloadCredentials
from ambit.proxy.sockets import SocketFactory
from ambit.proxy.state_waiter import StateWaiter
from ambit.routing.ejection import Ejections
from ambit.state.store import StateStore
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.connections import ConnectionRegistry
from ambit.ztunnel.metrics import Metrics


@dataclass(frozen=True, slots=True)
class PodInfo:
    """An enrolled pod on this node, as the node agent describes it."""

    uid: str
    name: str
    namespace: str
    service_account: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # Made once: every connection record of the pod refers to this one value (an idle connection
    # would otherwise keep its own copy alive).
    identity: Identity = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "identity", Identity(self.trust_domain, self.namespace, self.service_account)
        )


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
    # waypoint replicas that refused or timed out, tried last for a while (ambit.routing.ejection)
    ejections: Ejections = field(default_factory=Ejections)
