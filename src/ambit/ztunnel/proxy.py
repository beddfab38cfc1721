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

**Drain** (:meth:`PodProxy.drain`): stop accepting on all three listeners at once (closing a listener
hands its accept queue to a replacement ztunnel's listener in the same SO_REUSEPORT group, with
``tcp_migrate_req=1``; without one the kernel refuses new connections), GOAWAY every HBONE connection,
let in-flight connections finish up to the deadline, then abort what is left (TCP RST / stream
reset). A connection the event loop had already accepted when the listener closed (its protocol made,
``connection_made`` still queued) is in flight too: it is served and waited for like the others, never
reset — the client's handshake completed, and no other ztunnel can take it over. :meth:`PodProxy.close`
is the immediate version (the pod is gone: nothing could be told anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from ambit.identity.secrets import SecretUnavailable
from ambit.net.duplex import RelayGroup, TcpDuplex
from ambit.net.hbone import HboneServer, InboundTunnel
from ambit.net.tasks import spawn
from ambit.protocol.hbone import HboneSettings
from ambit.proxy.sockets import SocketFactory
from ambit.ztunnel.inbound import InboundHandler
from ambit.ztunnel.inbound_plain import PlaintextInboundHandler
from ambit.ztunnel.inputs import PodInfo, PodListeners, ProxyInputs
from ambit.ztunnel.outbound import OutboundHandler

log = logging.getLogger(__name__)


class PodStartError(Exception):
    """The pod's proxy could not start (no certificate, or a listener failed); nothing listens."""


class _Accepted(TcpDuplex):
    """An accepted TCP connection that starts its handler as soon as it is made.

    The event loop makes the protocol when it accepts the connection and calls ``connection_made``
    a loop iteration or two later; ``pending`` holds it in between, so that a drain starting in that
    gap knows the connection exists (see :meth:`PodProxy.drain`)."""

    __slots__ = ("__weakref__", "_on_made", "_pending")

    def __init__(self, on_made: Callable[[TcpDuplex], None], pending: weakref.WeakSet[_Accepted]) -> None:
        super().__init__()
        self._on_made: Callable[[TcpDuplex], None] | None = on_made
        self._pending: weakref.WeakSet[_Accepted] | None = pending
        pending.add(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        on_made, pending = self._on_made, self._pending
        self._on_made = self._pending = None  # held for the connection's life otherwise
        if pending is not None:
            pending.discard(self)
        super().connection_made(transport)
        if on_made is not None:
            on_made(self)


class PodProxy:
    """The listeners and live connections of one enrolled pod; see the module docstring."""

    def __init__(
        self, inputs: ProxyInputs, pod: PodInfo, listeners: PodListeners, sockets: SocketFactory
    ) -> None:
        self.inputs = inputs
        self.pod = pod
        self.listeners = listeners
        self.sockets = sockets
        # Connections being set up run as tasks; once both ends are joined the task ends and the
        # relay (bytes moving in callbacks) is tracked here instead.
        self.relays = RelayGroup()
        self.outbound = OutboundHandler(inputs, pod, sockets, self.relays)
        self.inbound = InboundHandler(inputs, pod, sockets, self.relays)
        self.inbound_plaintext = PlaintextInboundHandler(inputs, pod, sockets, self.relays)
        self.hbone: HboneServer | None = None
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        # Accepted by the loop, connection_made not yet run (weak: a transport that failed to be made
        # never calls it, and must not hold a drain until its deadline).
        self._accepted: weakref.WeakSet[_Accepted] = weakref.WeakSet()
        self.state = "new"  # new → serving → draining → closed

    def __repr__(self) -> str:
        return f"<PodProxy {self.pod.namespace}/{self.pod.name} uid={self.pod.uid} {self.state}>"

    @property
    def active_connections(self) -> int:
        """Connections being set up or relayed (15001, 15006, 15008 streams), plus open HBONE connections."""
        hbone = len(self.hbone.connections) if self.hbone is not None else 0
        return len(self._tasks) + len(self.relays) + hbone

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
            outbound = self._spawner(self.outbound.handle, "outbound")
            self._servers.append(
                await loop.create_server(
                    lambda: _Accepted(outbound, self._accepted), sock=self.listeners.outbound
                )
            )
            inbound_plaintext = self._spawner(self.inbound_plaintext.handle, "inbound-plaintext")
            self._servers.append(
                await loop.create_server(
                    lambda: _Accepted(inbound_plaintext, self._accepted),
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
            # Draining: accepted just before the listener closed. The client is connected and nobody
            # else can take it over, so it is served (drain waits for it); only after close() is it reset.
            if self.state == "closed":
                conn.abort()
                return
            task = spawn(handler(conn), name=f"{kind} {self.pod.uid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return start

    def stop_accepting(self) -> None:
        """Close the listeners (idempotent): connections already accepted carry on."""
        for server in self._servers:
            server.close()

    async def drain(self, deadline: float | None = None) -> None:
        """Stop accepting, let in-flight connections finish for up to ``deadline`` s, then abort the rest."""
        if self.state in ("draining", "closed"):
            return
        deadline = self.inputs.config.drain_deadline if deadline is None else deadline
        self.state = "draining"
        self.stop_accepting()
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        # One loop iteration: asyncio makes the protocol of a connection it accepted just before the
        # close in a task of its own (uvloop does it at once), and it must be in _accepted by now.
        await asyncio.sleep(0)
        hbone_drain = (
            spawn(self.hbone.drain(deadline), name=f"drain hbone {self.pod.uid}") if self.hbone else None
        )
        await self._finish_connections(end)
        if hbone_drain is not None:
            await hbone_drain
        await self._finish_connections(end)  # connections made while the HBONE side drained
        aborted = await self._abort_connections()
        if aborted:
            log.info("drain deadline for %s: aborted %d connections", self.pod.uid, aborted)
        await self.close()

    async def _finish_connections(self, end: float) -> None:
        """Wait until no connection is set up, relayed or still being accepted, or until ``end``."""
        loop = asyncio.get_running_loop()
        while (self._tasks or self.relays or self._accepted) and (remaining := end - loop.time()) > 0:
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=remaining)
            elif self.relays:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self.relays.wait_empty()
            else:  # accepted, connection_made is queued: its handler task is a loop iteration away
                await asyncio.sleep(min(0.005, remaining))

    async def _abort_connections(self) -> int:
        """Reset every connection still set up or relayed, and wait until each has written its record."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        aborted = len(tasks) + self.relays.abort_all("cancelled (drain deadline or shutdown)")
        # An aborted TCP end reports its close on the next loop iteration; the relay's record then.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.relays.wait_empty()
        return aborted

    async def close(self) -> None:
        """Stop at once: close the listeners and abort every connection."""
        self.state = "closed"
        for server in self._servers:
            server.close()
        if self.hbone is not None:
            await self.hbone.close()
        await self._abort_connections()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
