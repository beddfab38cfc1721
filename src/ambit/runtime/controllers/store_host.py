"""The embedded store server, in the daemon's own process: started with the daemon, and stopped or
restarted by command (`ambit stop|start|kill|restart store`); while it is stopped, ``held`` is set
and the daemon writes nothing."""

from __future__ import annotations

from ambit.runtime.layout import SYSTEM_NAMESPACE, Layout
from ambit.store.server import StoreServer


class StoreHost:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.server: StoreServer | None = None
        self.held = False

    def _new_server(self) -> StoreServer:
        return StoreServer(
            self.layout.store_data, self.layout.store_socket, ensure_namespaces=("default", SYSTEM_NAMESPACE)
        )

    async def start(self) -> None:
        self.server = self._new_server()
        await self.server.start()

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
            server = self._new_server()
            await server.start()
            self.server = server
            self.held = False
        return "stopped" if self.held else "running"
