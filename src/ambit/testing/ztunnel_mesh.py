"""A loopback mesh for ztunnel tests: pods are 127/8 addresses, certificates are real, capture is a table.

Shared by the integration tier (import it by this module name, never as `conftest`).

Each test gets its own random ``127.a.b.0/24`` so listeners on the fixed ports (15001/15006/15008)
never collide with another test or process. Pods served by a :class:`Ztunnel` get their three
listeners on their own address; apps are echo servers that record the peer address of every
connection. Original destinations come from the :class:`LoopbackSocketFactory` table that
:meth:`Mesh.connect` fills (the part the pod's nftables redirect plays in production).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from ambit.identity.certs import WorkloadCert
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity
from ambit.model.policy import Authorization
from ambit.model.workload import HealthStatus, PortMapping, Service, ServicePort, TunnelProtocol, Workload
from ambit.net.duplex import StreamAborted, TcpDuplex
from ambit.proxy.sockets import LoopbackSocketFactory
from ambit.state.snapshot import resource_name
from ambit.state.store import StateStore
from ambit.testing.pki import Pki
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.inputs import PodInfo, open_listeners
from ambit.ztunnel.manager import Ztunnel
from ambit.ztunnel.metrics import Metrics
from ambit.ztunnel.proxy import PodProxy

NS = "default"
VIP = "10.96.0.10"
SERVICE_HOST = "web.default.svc.cluster.local"
SERVICE_KEY = f"{NS}/{SERVICE_HOST}"
APP_PORT = 8080


def resource(
    value: Workload | Service | Authorization,
) -> dict[str, tuple[str, Workload | Service | Authorization]]:
    return {resource_name(value): (str(hash(value)), value)}


class EchoApp(asyncio.Protocol):
    def __init__(self, app: App) -> None:
        self.app = app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.app.peers.append(transport.get_extra_info("peername")[:2])
        self.app.live.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.app.live.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.app.received += len(data)
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write_eof()
        return True


@dataclass
class App:
    """An echo server; remembers who connected."""

    address: tuple[str, int]
    peers: list[tuple[str, int]] = field(default_factory=list)
    live: set[asyncio.Transport] = field(default_factory=set)
    received: int = 0
    server: asyncio.Server | None = None


class Mesh:
    def __init__(self) -> None:
        self.pki = Pki(DEFAULT_TRUST_DOMAIN)
        self.store = StateStore()
        self.sockets = LoopbackSocketFactory()
        self.prefix = f"127.{random.randrange(100, 250)}.{random.randrange(1, 250)}."
        self.ztunnels: list[Ztunnel] = []
        self.apps: list[App] = []
        self.clients: list[TcpDuplex] = []

    def ip(self, n: int) -> str:
        return f"{self.prefix}{n}"

    # -- config ---------------------------------------------------------------------------------

    def workload(
        self,
        uid: str,
        n: int,
        sa: str,
        *,
        node: str,
        service: bool = False,
        policies: tuple[str, ...] = (),
        hbone: bool = True,
    ) -> Workload:
        return Workload(
            uid=uid,
            name=f"{uid}-pod",
            namespace=NS,
            service_account=sa,
            node=node,
            addresses=(self.ip(n),),
            tunnel_protocol=TunnelProtocol.HBONE if hbone else TunnelProtocol.NONE,
            status=HealthStatus.HEALTHY,
            services=((SERVICE_KEY, (PortMapping(80, APP_PORT),)),) if service else (),
            authorization_policies=policies,
            workload_name=uid,
        )

    def service(self) -> Service:
        return Service("web", NS, SERVICE_HOST, (VIP,), (ServicePort(80, APP_PORT),))

    def apply(self, *values: Workload | Service | Authorization) -> None:
        upserts: dict[str, tuple[str, Workload | Service | Authorization]] = {}
        for value in values:
            upserts.update(resource(value))
        self.store.apply(upserts)

    def remove(self, *values: Workload | Service | Authorization) -> None:
        self.store.apply({}, [resource_name(v) for v in values])

    # -- processes ------------------------------------------------------------------------------

    async def issue(self, identity: Identity) -> WorkloadCert:
        return self.pki.issue(identity)

    def ztunnel(
        self,
        node: str,
        *,
        synced: bool = True,
        fetch: Callable[[Identity], Awaitable[WorkloadCert]] | None = None,
        **config: object,
    ) -> Ztunnel:
        zt = Ztunnel(
            ZtunnelConfig(node=node, **config),  # type: ignore[arg-type]
            fetch=fetch or self.issue,
            bundle=self.pki.bundle,
            store=self.store,
            sockets=self.sockets,
        )
        if synced:
            zt.mark_synced()
        self.ztunnels.append(zt)
        return zt

    async def serve(self, zt: Ztunnel, workload: Workload) -> PodProxy:
        listeners = await open_listeners(self.sockets, workload.addresses[0], zt.config)
        pod = PodInfo(
            workload.uid, workload.name, workload.namespace, workload.service_account, DEFAULT_TRUST_DOMAIN
        )
        return await zt.add_pod(pod, listeners)

    async def app(self, n: int, port: int = APP_PORT) -> App:
        app = App((self.ip(n), port))
        app.server = await asyncio.get_running_loop().create_server(
            lambda: EchoApp(app), self.ip(n), port, reuse_address=True
        )
        self.apps.append(app)
        return app

    async def connect(self, n: int, original: tuple[str, int], *, listener_port: int = 15001) -> TcpDuplex:
        """An app at ``ip(n)`` connects to ``original``; capture sends it to its pod's listener."""
        client = await self.sockets.capture_connect(self.ip(n), original, (self.ip(n), listener_port))
        self.clients.append(client)
        return client

    async def connect_to(self, n: int, original: tuple[str, int], listener: tuple[str, int]) -> TcpDuplex:
        """A client at ``ip(n)`` whose connection to ``original`` is captured by ``listener``."""
        client = await self.sockets.capture_connect(self.ip(n), original, listener)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            if not client.closed:
                client.abort()
        for zt in self.ztunnels:
            await zt.close()
        for app in self.apps:
            assert app.server is not None
            app.server.close()
            await app.server.wait_closed()
            for transport in list(app.live):
                transport.abort()
        for _ in range(5):
            await asyncio.sleep(0)


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def client_and_server() -> Mesh:
    """A serving mesh of two ztunnels: pod 1 (client) on node1, pod 2 (echo app, with a service) on node2."""
    mesh = Mesh()
    zt1, zt2 = mesh.ztunnel("node1"), mesh.ztunnel("node2")
    w1 = mesh.workload("client", 1, "sleep", node="node1")
    w2 = mesh.workload("server", 2, "web", node="node2", service=True)
    mesh.apply(w1, w2, mesh.service())
    await mesh.serve(zt1, w1)
    await mesh.serve(zt2, w2)
    await mesh.app(2)
    return mesh


async def echo(client: TcpDuplex, payload: bytes, *, within: float = 10.0) -> bytes:
    """Write ``payload`` and read as many bytes back."""
    client.write(payload)
    return await asyncio.wait_for(client.read_exactly(len(payload)), within)


async def closed_by_peer(client: TcpDuplex, *, within: float = 10.0) -> bool:
    """True when the connection ends (EOF or reset) without delivering data."""
    try:
        data = await asyncio.wait_for(client.read(), within)
    except (StreamAborted, ConnectionError):
        return True
    return data == b""


async def eventually(check: Callable[[], bool], *, within: float = 10.0, interval: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
