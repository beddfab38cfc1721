"""The client side of HBONE: dial (TCP, TLS, exact peer identity, preface) and open CONNECT streams."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from typing import cast

from ambit.net.connect import connect_numeric
from ambit.net.hbone_connection import HboneConnectionProtocol, HboneStream, PeerId, Timeouts
from ambit.net.tls import open_tls
from ambit.protocol import hbone as core


class TunnelRejected(ConnectionError):
    """The server answered the CONNECT with a non-200 status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HBONE CONNECT answered {status}")
        self.status = status


class HboneClientConnection:
    """A client-side HBONE connection: open streams on it."""

    def __init__(self, proto: HboneConnectionProtocol) -> None:
        self.proto = proto

    @property
    def peer_identity(self) -> PeerId | None:
        return self.proto.peer_identity

    @property
    def is_usable(self) -> bool:
        return self.proto.is_usable

    @property
    def open_streams(self) -> int:
        return len(self.proto.streams)

    def capacity(self) -> int:
        return self.proto.core.stream_capacity()

    def reserve(self, authority: str, headers: tuple[tuple[str, str], ...] = ()) -> HboneStream:
        """Send CONNECT now (synchronously claims a stream slot)."""
        sid = self.proto.core.open_tunnel(authority, headers)
        stream = self.proto.add_stream(sid, opened_here=True)
        self.proto._flush()
        return stream

    async def open_stream(self, authority: str, headers: tuple[tuple[str, str], ...] = ()) -> HboneStream:
        """CONNECT and wait for 200; raises TunnelRejected, StreamRefused or StreamAborted."""
        stream = self.reserve(authority, headers)
        return await finish_open(stream)

    def drain(self) -> None:
        self.proto.drain()

    async def wait_closed(self) -> None:
        await asyncio.shield(self.proto.closed)

    def abort(self, reason: str = "aborted") -> None:
        self.proto.abort(reason)


async def finish_open(stream: HboneStream) -> HboneStream:
    """Wait for the answer to a reserved stream's CONNECT; cancelling resets the stream."""
    if stream.response is None:
        raise core.HboneProtocolError(f"stream {stream.stream_id} was opened by the peer: no response comes")
    try:
        response = await stream.response
    except asyncio.CancelledError:
        stream.abort()  # never leave a reserved stream open behind a cancelled caller
        raise
    if response.status != 200:
        stream._finish(None) if stream.eof_in else stream.abort(TunnelRejected(response.status))
        raise TunnelRejected(response.status)
    return stream


async def connect_hbone(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext,
    expected_peer: PeerId,
    *,
    settings: core.HboneSettings | None = None,
    timeouts: Timeouts | None = None,
    local_addr: tuple[str, int] | None = None,
    on_closed: Callable[[HboneConnectionProtocol], None] | None = None,
) -> HboneClientConnection:
    """TCP + TLS + identity check + HTTP/2 preface; the server must present exactly `expected_peer`."""
    t = timeouts or Timeouts()
    loop = asyncio.get_running_loop()

    def factory() -> HboneConnectionProtocol:
        return HboneConnectionProtocol(
            client_side=True, settings=settings, timeouts=t, expected_peer=expected_peer, on_closed=on_closed
        )

    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _type, ip_proto, _name, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, ip_proto)
    try:
        sock.setblocking(False)
        if local_addr is not None:
            sock.bind(local_addr)
        async with asyncio.timeout(t.connect):
            await connect_numeric(sock, (str(address[0]), int(address[1])))
    except BaseException:
        sock.close()
        raise
    _transport, protocol = await open_tls(sock, ssl_context, factory, handshake_timeout=t.handshake)
    proto = cast(HboneConnectionProtocol, protocol)
    await proto.ready
    return HboneClientConnection(proto)
