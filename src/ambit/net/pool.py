"""The HBONE connection pool: reuse mTLS connections, never across source identities.

Key = (source identity, destination identity, destination address, source IP), as ztunnel's
pool (the source IP is in the key because ztunnel spoofs it). A key holds several connections;
a stream goes on the first usable one with a free slot (at most `HboneSettings.max_concurrent_streams`
per connection, also capped by the server's advertised limit), otherwise a new connection is
opened. Concurrent requests that find no room wait for one shared connect instead of each
opening their own. A stream the server never processed (GOAWAY / REFUSED_STREAM) is retried once
on a new connection. Idle connections close themselves (`Timeouts.idle`), and closed ones leave
the pool through their close callback.

**The dialer travels with the request** (as httpcore passes per-request extensions): `open_stream(key,
..., dial=)` hands the request's `Dial` to the `Connector` when a new connection is needed, e.g. one
that makes the TCP socket inside the source pod's network namespace. The pool keeps no map from keys
to dialers: a connection made for a key was dialled by the request that needed it (concurrent
requests for the key share that one connect).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import cast

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
from ambit.net.tls import open_tls
from ambit.protocol.hbone import HboneSettings


@dataclass(frozen=True, slots=True)
class PoolKey:
    source: Identity
    destination: Identity | NodeIdentity
    address: tuple[str, int]
    source_ip: str | None = None


Dial = Callable[[PoolKey], Awaitable[socket.socket]]
"""Makes the connected, non-blocking TCP socket a new connection for the key runs over."""

OnClosed = Callable[[HboneConnectionProtocol], None]

Connector = Callable[[PoolKey, OnClosed, Dial | None], Awaitable[HboneClientConnection]]
"""Opens a client connection for the key (TCP via the request's `Dial`, or the connector's own
way when there is none; then TLS and the HTTP/2 preface); `on_closed` is called when it closes."""


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
        self,
        key: PoolKey,
        authority: str,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        dial: Dial | None = None,
    ) -> HboneStream:
        """A CONNECT stream to `authority` over a pooled connection for `key`; 200 or an exception.

        `dial` makes the TCP socket if a new connection is opened for this request."""
        try:
            return await finish_open(await self._reserve(key, authority, headers, dial))
        except StreamRefused:
            conn = await self._connect(key, dial)
            return await finish_open(conn.reserve(authority, headers))

    async def _reserve(
        self, key: PoolKey, authority: str, headers: tuple[tuple[str, str], ...], dial: Dial | None
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
            conn = await self._connect(key, dial)
            if conn.is_usable:
                return conn.reserve(authority, headers)

    def _find(self, key: PoolKey) -> HboneClientConnection | None:
        for conn in self._conns.get(key, ()):
            if conn.is_usable:
                return conn
        return None

    async def _connect(self, key: PoolKey, dial: Dial | None) -> HboneClientConnection:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[HboneClientConnection] = loop.create_future()
        self._connecting[key] = fut
        try:
            conn = await self._connector(key, lambda proto: self._on_closed(key, proto), dial)
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


async def handshake(
    sock: socket.socket,
    context: ssl.SSLContext,
    key: PoolKey,
    on_closed: OnClosed,
    *,
    settings: HboneSettings | None = None,
    timeouts: Timeouts | None = None,
) -> HboneClientConnection:
    """TLS and the HTTP/2 preface on a dialled socket; the server must present exactly `key.destination`
    (checked before any byte is sent)."""
    t = timeouts or Timeouts()

    def factory() -> HboneConnectionProtocol:
        return HboneConnectionProtocol(
            client_side=True,
            settings=settings,
            timeouts=t,
            expected_peer=key.destination,
            on_closed=on_closed,
        )

    _transport, protocol = await open_tls(sock, context, factory, handshake_timeout=t.handshake)
    proto = cast(HboneConnectionProtocol, protocol)
    await proto.ready
    return HboneClientConnection(proto)


def tls_connector(
    client_context: Callable[[Identity], ssl.SSLContext],
    *,
    settings: HboneSettings | None = None,
    timeouts: Timeouts | None = None,
) -> Connector:
    """A Connector that dials `key.address` with the *source* identity's certificate, binds the
    source IP when the key has one (or uses the request's `Dial`), and requires the server to present
    exactly `key.destination`."""

    async def connect(key: PoolKey, on_closed: OnClosed, dial: Dial | None) -> HboneClientConnection:
        context = client_context(key.source)
        if dial is not None:
            sock = await dial(key)
            return await handshake(sock, context, key, on_closed, settings=settings, timeouts=timeouts)
        return await connect_hbone(
            key.address[0],
            key.address[1],
            context,
            key.destination,
            settings=settings,
            timeouts=timeouts,
            local_addr=(key.source_ip, 0) if key.source_ip else None,
            on_closed=on_closed,
        )

    return connect
