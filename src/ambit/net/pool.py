"""The HBONE connection pool: reuse mTLS connections, never across source identities.

Key = (source identity, destination identity, destination address, source IP), as ztunnel's
pool (the source IP is in the key because ztunnel spoofs it). A key holds several connections;
a stream goes on the first usable one with a free slot (at most `HboneSettings.max_concurrent_streams`
per connection, also capped by the server's advertised limit), otherwise a new connection is
opened. Concurrent requests that find no room wait for one shared connect instead of each
opening their own. A stream the server never processed (GOAWAY / REFUSED_STREAM) is retried once
on a new connection. Idle connections close themselves (`Timeouts.idle`), and closed ones leave
the pool through their close callback.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ambit.model.identity import Identity, NodeIdentity
from ambit.net.hbone import (
    HboneClientConnection,
    HboneConnectionProtocol,
    HboneStream,
    StreamRefused,
    Timeouts,
    connect_hbone,
    finish_open,
)
from ambit.protocol.hbone import HboneSettings


@dataclass(frozen=True, slots=True)
class PoolKey:
    source: Identity
    destination: Identity | NodeIdentity
    address: tuple[str, int]
    source_ip: str | None = None


Connector = Callable[[PoolKey, Callable[[HboneConnectionProtocol], None]], Awaitable[HboneClientConnection]]


class HbonePool:
    """Pooled HBONE client connections; see the module docstring."""

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._conns: dict[PoolKey, list[HboneClientConnection]] = {}
        self._connecting: dict[PoolKey, asyncio.Future[HboneClientConnection]] = {}
        self.connections_opened = 0

    def __repr__(self) -> str:
        streams = sum(c.open_streams for conns in self._conns.values() for c in conns)
        return f"<HbonePool keys={len(self._conns)} connections={self.connection_count} streams={streams}>"

    @property
    def connection_count(self) -> int:
        return sum(len(v) for v in self._conns.values())

    def connections(self, key: PoolKey) -> list[HboneClientConnection]:
        return list(self._conns.get(key, ()))

    async def open_stream(
        self, key: PoolKey, authority: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> HboneStream:
        """A CONNECT stream to `authority` over a pooled connection for `key`; 200 or an exception."""
        try:
            return await finish_open(await self._reserve(key, authority, headers))
        except StreamRefused:
            conn = await self._connect(key)
            return await finish_open(conn.reserve(authority, headers))

    async def _reserve(
        self, key: PoolKey, authority: str, headers: tuple[tuple[str, str], ...]
    ) -> HboneStream:
        while True:
            conn = self._find(key)
            if conn is not None:
                return conn.reserve(authority, headers)
            pending = self._connecting.get(key)
            if pending is not None:
                # Someone is connecting for this key: wait and try to fit on it (or the next one).
                await asyncio.shield(pending)
                continue
            conn = await self._connect(key)
            if conn.is_usable:
                return conn.reserve(authority, headers)

    def _find(self, key: PoolKey) -> HboneClientConnection | None:
        for conn in self._conns.get(key, ()):
            if conn.is_usable:
                return conn
        return None

    async def _connect(self, key: PoolKey) -> HboneClientConnection:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[HboneClientConnection] = loop.create_future()
        self._connecting[key] = fut
        try:
            conn = await self._connector(key, lambda proto: self._on_closed(key, proto))
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()
            raise
        finally:
            if self._connecting.get(key) is fut:
                del self._connecting[key]
        self.connections_opened += 1
        if conn.proto.closed.done():
            fut.set_result(conn)
            return conn
        self._conns.setdefault(key, []).append(conn)
        fut.set_result(conn)
        return conn

    def _on_closed(self, key: PoolKey, proto: HboneConnectionProtocol) -> None:
        conns = self._conns.get(key)
        if not conns:
            return
        conns[:] = [c for c in conns if c.proto is not proto]
        if not conns:
            del self._conns[key]

    def drain(self) -> None:
        """GOAWAY every pooled connection; streams in flight finish."""
        for conns in list(self._conns.values()):
            for conn in list(conns):
                conn.drain()

    async def close(self) -> None:
        conns = [c for cs in self._conns.values() for c in cs]
        for conn in conns:
            conn.abort("pool closed")
        for conn in conns:
            await conn.wait_closed()
        self._conns.clear()


def tls_connector(
    client_context: Callable[[Identity], ssl.SSLContext],
    *,
    settings: HboneSettings | None = None,
    timeouts: Timeouts | None = None,
) -> Connector:
    """A Connector that dials `key.address` with the *source* identity's certificate, binds the
    source IP when the key has one, and requires the server to present exactly `key.destination`."""

    async def connect(
        key: PoolKey, on_closed: Callable[[HboneConnectionProtocol], None]
    ) -> HboneClientConnection:
        return await connect_hbone(
            key.address[0],
            key.address[1],
            client_context(key.source),
            key.destination,
            settings=settings,
            timeouts=timeouts,
            local_addr=(key.source_ip, 0) if key.source_ip else None,
            on_closed=on_closed,
        )

    return connect
