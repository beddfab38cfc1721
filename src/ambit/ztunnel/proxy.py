"""One enrolled pod's proxy: its three listeners and the connections they accept.

A :class:`PodProxy` is given the pod's listening sockets (made by its :class:`SocketFactory` inside
the pod's namespace, or on a 127/8 address in tests) and serves:

* 15001 — outbound capture (:class:`~ambit.ztunnel.outbound.OutboundHandler`);
* 15006 — plaintext inbound capture (:class:`~ambit.ztunnel.inbound_plain.PlaintextInboundHandler`);
* 15008 — HBONE inbound (:class:`~ambit.net.hbone.HboneServer` presenting the pod's certificate,
  :class:`~ambit.ztunnel.inbound.InboundHandler`).

**Fail closed at start.** The pod's certificate is fetched before anything listens: if there is none,
:meth:`PodProxy.start` closes the sockets and raises :class:`PodStartError` (the node agent is told,
and the pod never runs uncaptured). The 15008 listener's TLS context swaps in the current certificate
on every handshake, so rotation needs no restart.

**Drain** (:meth:`PodProxy.drain`): stop accepting on all three listeners at once (new connections are
refused by the kernel), GOAWAY every HBONE connection, let in-flight connections finish up to the
deadline, then abort what is left (TCP RST / stream reset). :meth:`PodProxy.close` is the immediate
version (the pod is gone: nothing could be told anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from ambit.identity.secrets import SecretUnavailable
from ambit.net.duplex import TcpDuplex
from ambit.net.hbone import HboneServer, InboundTunnel
from ambit.net.tasks import spawn
from ambit.protocol.hbone import HboneSettings
from ambit.ztunnel.inbound import InboundHandler
from ambit.ztunnel.inbound_plain import PlaintextInboundHandler
from ambit.ztunnel.inputs import PodInfo, PodListeners, ProxyInputs
from ambit.ztunnel.outbound import OutboundHandler
from ambit.ztunnel.sockets import SocketFactory

log = logging.getLogger(__name__)


class PodStartError(Exception):
    """The pod's proxy could not start (no certificate, or a listener failed); nothing listens."""


class _Accepted(TcpDuplex):
    """An accepted TCP connection that starts its handler as soon as it is made."""

    def __init__(self, on_made: Callable[[TcpDuplex], None]) -> None:
        super().__init__()
        self._on_made = on_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._on_made(self)


class PodProxy:
    """The listeners and live connections of one enrolled pod; see the module docstring."""

    def __init__(
        self, inputs: ProxyInputs, pod: PodInfo, listeners: PodListeners, sockets: SocketFactory
    ) -> None:
        self.inputs = inputs
        self.pod = pod
        self.listeners = listeners
        self.sockets = sockets
        self.outbound = OutboundHandler(inputs, pod, sockets)
        self.inbound = InboundHandler(inputs, pod, sockets)
        self.inbound_plaintext = PlaintextInboundHandler(inputs, pod, sockets)
        self.hbone: HboneServer | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.state = "new"  # new → serving → draining → closed

    def __repr__(self) -> str:
        return f"<PodProxy {self.pod.namespace}/{self.pod.name} uid={self.pod.uid} {self.state}>"

    @property
    def active_connections(self) -> int:
        """Connections on 15001 and 15006 still being handled, plus open HBONE connections."""
        hbone = len(self.hbone.connections) if self.hbone is not None else 0
        return len(self._tasks) + hbone

    async def start(self) -> None:
        """Get the pod's certificate, then listen on all three sockets; PodStartError if either fails."""
        if self.state != "new":
            raise PodStartError(f"{self!r} was already started")
        inputs, config = self.inputs, self.inputs.config
        try:
            context = await inputs.credentials.listener_context(self.pod.identity)
        except SecretUnavailable as exc:
            self.listeners.close()
            self.state = "closed"
            raise PodStartError(f"no certificate for {self.pod.identity}: {exc}") from exc
        loop = asyncio.get_running_loop()
        try:
            self.hbone = HboneServer(
                context,
                self._handle_tunnel,
                trust_domain=config.trust_domain,
                settings=HboneSettings.server(),
                timeouts=config.hbone_server_timeouts,
            )
            await self.hbone.start(sock=self.listeners.hbone)
            self._servers.append(
                await loop.create_server(
                    lambda: _Accepted(self._spawner(self.outbound.handle, "outbound")),
                    sock=self.listeners.outbound,
                )
            )
            self._servers.append(
                await loop.create_server(
                    lambda: _Accepted(self._spawner(self.inbound_plaintext.handle, "inbound-plaintext")),
                    sock=self.listeners.inbound_plaintext,
                )
            )
        except Exception as exc:
            await self.close()
            self.listeners.close()
            raise PodStartError(f"cannot start the listeners of {self.pod.uid}: {exc}") from exc
        self.state = "serving"
        log.info(
            "serving pod %s/%s (%s) as %s", self.pod.namespace, self.pod.name, self.pod.uid, self.pod.identity
        )

    async def _handle_tunnel(self, tunnel: InboundTunnel) -> None:
        """The HBONE server's handler, tracked so that close() can wait for it."""
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self.inbound.handle(tunnel)
        finally:
            if task is not None:
                self._tasks.discard(task)

    def _spawner(
        self, handler: Callable[[TcpDuplex], Coroutine[Any, Any, None]], kind: str
    ) -> Callable[[TcpDuplex], None]:
        def start(conn: TcpDuplex) -> None:
            if self.state in ("draining", "closed"):  # accepted just as we stopped listening
                conn.abort()
                return
            task = spawn(handler(conn), name=f"{kind} {self.pod.uid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return start

    async def drain(self, deadline: float | None = None) -> None:
        """Stop accepting, let in-flight connections finish for up to ``deadline`` s, then abort the rest."""
        if self.state in ("draining", "closed"):
            return
        deadline = self.inputs.config.drain_deadline if deadline is None else deadline
        self.state = "draining"
        for server in self._servers:
            server.close()
        hbone_drain = (
            spawn(self.hbone.drain(deadline), name=f"drain hbone {self.pod.uid}") if self.hbone else None
        )
        tasks = set(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=deadline)
            for task in pending:
                task.cancel()
            if pending:
                log.info("drain deadline for %s: aborted %d connections", self.pod.uid, len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        if hbone_drain is not None:
            await hbone_drain
        await self.close()

    async def close(self) -> None:
        """Stop at once: close the listeners and abort every connection."""
        self.state = "closed"
        for server in self._servers:
            server.close()
        if self.hbone is not None:
            await self.hbone.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
