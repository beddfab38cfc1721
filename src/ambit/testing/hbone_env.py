"""HBONE test and benchmark support: a CA, certificates, TCP echo/sink upstreams, a forwarding server.

`HboneEnv` issues real certificates from a real CA and starts real servers on loopback; nothing is
mocked. The forwarding handler is the shape of ztunnel's inbound path without policy: connect the
upstream named by `:authority`, answer 200 only once connected (503 when refused), then relay.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import WorkloadCert, issue
from ambit.identity.tls import client_context, server_context
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity, NodeIdentity
from ambit.net.duplex import TcpDuplex, relay
from ambit.net.hbone import HboneServer, InboundTunnel, Timeouts, TunnelHandler
from ambit.net.pool import HbonePool, PoolKey, tls_connector
from ambit.protocol.hbone import HboneSettings


def workload(sa: str, ns: str = "default") -> Identity:
    return Identity(DEFAULT_TRUST_DOMAIN, ns, sa)


async def tcp_connect(host: str, port: int, *, local_addr: tuple[str, int] | None = None) -> TcpDuplex:
    loop = asyncio.get_running_loop()
    _t, proto = await loop.create_connection(TcpDuplex, host, port, local_addr=local_addr)
    return proto


class EchoProtocol(asyncio.Protocol):
    """Echoes every byte; half-closes when the client does."""

    def __init__(self, live: set[asyncio.Transport] | None = None) -> None:
        self.live = live if live is not None else set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.live.add(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write_eof()
        return True


@dataclass
class Upstreams:
    """Counts what reached the upstream side, so tests can prove nothing was forwarded."""

    accepted: int = 0
    servers: list[asyncio.Server] = field(default_factory=list)
    live: set[asyncio.Transport] = field(default_factory=set)


@dataclass
class HboneEnv:
    ca: CertificateAuthority
    upstreams: Upstreams = field(default_factory=Upstreams)
    servers: list[HboneServer] = field(default_factory=list)
    pools: list[HbonePool] = field(default_factory=list)

    @classmethod
    def create(cls) -> HboneEnv:
        return cls(CertificateAuthority.create(DEFAULT_TRUST_DOMAIN))

    def cert(
        self,
        identity: Identity | NodeIdentity,
        *,
        ttl: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> WorkloadCert:
        return issue(self.ca, identity, ttl=ttl, not_before=not_before)

    def server_ctx(self, cert: WorkloadCert) -> ssl.SSLContext:
        return server_context(cert, self.ca.trust_bundle)

    def client_ctx(self, cert: WorkloadCert) -> ssl.SSLContext:
        return client_context(cert, self.ca.trust_bundle)

    async def echo_upstream(self) -> int:
        def factory() -> asyncio.Protocol:
            self.upstreams.accepted += 1
            return EchoProtocol(self.upstreams.live)

        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        self.upstreams.servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def hbone_server(
        self,
        identity: Identity,
        handler: TunnelHandler | None = None,
        *,
        cert: WorkloadCert | None = None,
        settings: HboneSettings | None = None,
        timeouts: Timeouts | None = None,
    ) -> tuple[HboneServer, int]:
        server = HboneServer(
            self.server_ctx(cert or self.cert(identity)),
            handler or forwarding_handler(),
            trust_domain=DEFAULT_TRUST_DOMAIN,
            settings=settings,
            timeouts=timeouts,
        )
        _host, port = await server.start("127.0.0.1", 0)
        self.servers.append(server)
        return server, port

    def pool(
        self,
        certs: dict[Identity, WorkloadCert],
        *,
        settings: HboneSettings | None = None,
        timeouts: Timeouts | None = None,
    ) -> HbonePool:
        contexts = {ident: self.client_ctx(c) for ident, c in certs.items()}
        pool = HbonePool(tls_connector(contexts.__getitem__, settings=settings, timeouts=timeouts))
        self.pools.append(pool)
        return pool

    async def close(self) -> None:
        for pool in self.pools:
            await pool.close()
        for server in self.servers:
            await server.close()
        for s in self.upstreams.servers:
            s.close()
            await s.wait_closed()
        for transport in list(self.upstreams.live):
            transport.abort()
        for _ in range(5):  # let connection_lost callbacks run before the loop closes
            await asyncio.sleep(0)


def forwarding_handler(*, deny: Callable[[InboundTunnel], bool] = lambda _t: False) -> TunnelHandler:
    """Deny → 401; connect the authority → 503 when refused; else 200 and relay."""

    async def handle(tunnel: InboundTunnel) -> None:
        if deny(tunnel):
            tunnel.reject(401)
            return
        try:
            upstream = await tcp_connect(tunnel.request.host, tunnel.request.port)
        except OSError:
            tunnel.reject(503)
            return
        await relay(tunnel.accept(), upstream)

    return handle


def key(source: Identity, destination: Identity, port: int) -> PoolKey:
    return PoolKey(source, destination, ("127.0.0.1", port))
