"""The server side of HBONE: accept TLS connections, hand each well-formed CONNECT to a handler.

`HboneServer` serves on a `TlsServer` with a handshake timeout and runs one handler task per CONNECT
while it is set up; the handler decides with `InboundTunnel.reject(status)` or `.accept()` (an
unanswered or failed handler gets 503) and relays. `drain` sends GOAWAY and waits up to a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ambit.net.hbone_connection import HboneConnectionProtocol, HboneStream, PeerId, Timeouts
from ambit.net.tasks import spawn
from ambit.net.tls import TlsServer
from ambit.protocol import hbone as core

_log = logging.getLogger("ambit.net.hbone")


@dataclass(slots=True)
class InboundTunnel:
    """A well-formed CONNECT waiting for a decision."""

    conn: HboneConnectionProtocol
    request: core.TunnelRequested
    stream: HboneStream
    answered: bool = field(default=False)

    @property
    def peer_identity(self) -> PeerId | None:
        return self.conn.peer_identity

    @property
    def peer_address(self) -> tuple[str, int] | None:
        if self.conn.transport is None:
            return None
        addr = self.conn.transport.get_extra_info("peername")
        return (addr[0], addr[1]) if addr else None

    def reject(self, status: int) -> None:
        if not self.answered:
            self.answered = True
            self.conn.respond(self.request.stream_id, status)
            self.stream._finish(None)

    def accept(self) -> HboneStream:
        """Answer 200 (only once the upstream is connected) and return the stream to relay."""
        if self.answered:
            raise core.HboneProtocolError("tunnel already answered")
        self.answered = True
        self.conn.respond(self.request.stream_id, 200)
        return self.stream


TunnelHandler = Callable[[InboundTunnel], Awaitable[None]]


class HboneServer:
    """Accepts HBONE connections and runs `handler` for each CONNECT; drains gracefully."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        handler: TunnelHandler,
        *,
        trust_domain: str | None = None,
        settings: core.HboneSettings | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.ssl_context = ssl_context
        self.handler = handler
        self.trust_domain = trust_domain
        self.settings = settings
        self.timeouts = timeouts or Timeouts(idle=None)
        self.connections: set[HboneConnectionProtocol] = set()
        self._server: TlsServer | None = None
        self._handler_tasks: set[asyncio.Task[None]] = set()

    async def start(
        self,
        host: str | None = None,
        port: int = 0,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
    ) -> tuple[str, int]:
        if sock is None:
            sock = socket.create_server(
                (host or "", port),
                family=socket.AF_INET6 if host and ":" in host else socket.AF_INET,
                backlog=4096,
                reuse_port=reuse_port,
            )
        self._server = TlsServer(
            sock, self.ssl_context, self._make_protocol, handshake_timeout=self.timeouts.handshake
        )
        addr = sock.getsockname()
        return addr[0], addr[1]

    def _make_protocol(self) -> HboneConnectionProtocol:
        proto = HboneConnectionProtocol(
            client_side=False,
            settings=self.settings,
            timeouts=self.timeouts,
            trust_domain=self.trust_domain,
            on_request=self._on_request,
            on_closed=self.connections.discard,
        )
        self.connections.add(proto)
        return proto

    def _on_request(self, conn: HboneConnectionProtocol, req: core.TunnelRequested) -> None:
        tunnel = InboundTunnel(conn, req, conn.add_stream(req.stream_id, opened_here=False))
        task = spawn(self._run_handler(tunnel), name=f"hbone-inbound-{req.authority}")
        self._handler_tasks.add(task)
        task.add_done_callback(self._handler_tasks.discard)

    async def _run_handler(self, tunnel: InboundTunnel) -> None:
        try:
            await self.handler(tunnel)
        except Exception:
            _log.exception("HBONE handler failed for %s", tunnel.request.authority)
            tunnel.reject(503)
            tunnel.stream.abort()
        else:
            if not tunnel.answered:
                tunnel.reject(503)

    async def drain(self, deadline: float) -> None:
        """Stop accepting, GOAWAY every connection, wait for streams up to `deadline` s, then abort."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.drain()
        waiters = [conn.closed for conn in list(self.connections)]
        if waiters:
            _done, pending = await asyncio.wait(waiters, timeout=deadline)
            if pending:
                for conn in list(self.connections):
                    conn.abort("drain deadline")
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server.abort_handshakes()
            for conn in list(self.connections):
                conn.abort("server closed")
            await self._server.wait_closed()
            self._server = None
        tasks = list(self._handler_tasks)
        for task in tasks:
            task.cancel()
        # Let each handler's cleanup (aborting its upstream) finish before close() returns.
        await asyncio.gather(*tasks, return_exceptions=True)
