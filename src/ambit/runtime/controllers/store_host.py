"""The embedded store server, in the daemon's own process: started with the daemon, and stopped or
restarted by command (`ambit stop|start|kill|restart store`); while it is stopped, ``held`` is set
and the daemon writes nothing. Besides its Unix socket, the store listens on the fabric
(``172.30.0.1:6443``, TLS with node client certificates) for the nodes' heartbeats only
(:mod:`.node_lifecycle`)."""

from __future__ import annotations

import asyncio

from ambit.runtime import netplan
from ambit.runtime.controllers.node_lifecycle import listening_socket
from ambit.runtime.fabric_pki import FabricPki, node_of_peer
from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout
from ambit.store.server import NODE_LEASE_NAMESPACE, StoreServer


class StoreHost:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.server: StoreServer | None = None
        self.held = False
        pki = FabricPki(layout.fabric_pki_dir)
        self.pki = pki if pki.ca.exists() else None  # a cluster made before node liveness has none

    def _new_server(self) -> StoreServer:
        return StoreServer(
            self.layout.store_data,
            self.layout.store_socket,
            ensure_namespaces=("default", SYSTEM_NAMESPACE, NODE_LEASE_NAMESPACE),
        )

    async def _open(self) -> StoreServer:
        """A started server, also listening on the fabric for the nodes' heartbeats (TLS, node certs)."""
        server = self._new_server()
        await server.start()
        if self.pki is not None:
            try:
                sock = await asyncio.to_thread(listening_socket, netplan.fabric_netns(self.layout.cluster))
                await server.listen_for_nodes(sock, self.pki.server_context(), node_of_peer)
            except BaseException:
                await server.close()
                raise
        return server

    async def start(self) -> None:
        self.server = await self._open()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

    async def command(self, op: str) -> str:
        """Apply ``op`` (stop, kill, restart close the server; start, kill, restart open it again);
        returns "running" or "stopped"."""
        if op in ("stop", "kill", "restart") and self.server is not None:
            server, self.server = self.server, None
            self.held = True
            await server.close()
        if op in ("start", "kill", "restart") and self.server is None:
            self.server = await self._open()
            self.held = False
        return "stopped" if self.held else "running"
