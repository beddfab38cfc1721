"""A proxy's HTTP ports (aiohttp): admin 15000, metrics 15020, readiness 15021 (ztunnel: node netns).

The server knows no proxy: it is given callables, one per thing it serves.

* admin (``127.0.0.1:15000``): ``/config_dump``, the JSON of ``config_dump()`` (ztunnel's is a
  :class:`~ambit.proxy.config_dump.ConfigDump`: workloads, services, policies, certificates with their
  expiry, pods served, live inbound ``connections``, sync state; read by ``ambit ztunnel-config``) and
  ``POST /quitquitquit`` (asks the process to drain and exit, when a ``quit`` callback is given);
* metrics (``0.0.0.0:15020``): ``/metrics`` and ``/stats/prometheus``, the Prometheus text ``metrics()``
  returns;
* readiness (``0.0.0.0:15021``): ``/healthz/ready`` is 200 only when ``ready()`` is true.

Each port gets its own socket with SO_REUSEADDR and SO_REUSEPORT, so an overlapping new ztunnel can
bind the same ports while the old one drains. Port 0 picks a free port (tests); :attr:`AdminServers.ports`
says which.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ambit.model.jsonable import jsonable

# What the admin port serves as /config_dump: a JSON object (model values are made plain by jsonable).
ConfigDumpSource = Callable[[], Mapping[str, object]]
# The Prometheus text exposition; awaited, so a slow registry walk can run off the event loop.
Exposition = Callable[[], Awaitable[bytes]]


def _listen_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class AdminServers:
    """The three HTTP servers; see the module docstring."""

    def __init__(
        self,
        *,
        config_dump: ConfigDumpSource,
        metrics: Exposition,
        ready: Callable[[], bool],
        quit: Callable[[], None] | None = None,
        admin: tuple[str, int] = ("127.0.0.1", 15000),
        metrics_address: tuple[str, int] = ("0.0.0.0", 15020),
        readiness: tuple[str, int] = ("0.0.0.0", 15021),
    ) -> None:
        self._config_dump = config_dump
        self._metrics = metrics
        self._ready = ready
        self._quit = quit
        self._addresses = {"admin": admin, "metrics": metrics_address, "readiness": readiness}
        self._runners: list[web.AppRunner] = []
        self.ports: dict[str, int] = {}

    async def start(self) -> None:
        apps = {
            "admin": self._admin_app(),
            "metrics": self._metrics_app(),
            "readiness": self._readiness_app(),
        }
        try:
            for name, app in apps.items():
                host, port = self._addresses[name]
                sock = _listen_socket(host, port)
                self.ports[name] = sock.getsockname()[1]
                runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
                self._runners.append(runner)
                try:
                    await runner.setup()
                    await web.SockSite(runner, sock).start()
                except BaseException:
                    sock.close()
                    raise
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        runners, self._runners = self._runners, []
        for runner in runners:
            await runner.cleanup()

    # -- apps -----------------------------------------------------------------------------------

    def _admin_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/config_dump", self._handle_config_dump)
        app.router.add_post("/quitquitquit", self._handle_quit)
        return app

    def _metrics_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._handle_metrics)
        app.router.add_get("/stats/prometheus", self._handle_metrics)
        return app

    def _readiness_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz/ready", self._handle_ready)
        return app

    async def _handle_config_dump(self, _request: web.Request) -> web.Response:
        body = json.dumps(jsonable(self._config_dump()), indent=1, sort_keys=True)
        return web.Response(text=body, content_type="application/json")

    async def _handle_quit(self, _request: web.Request) -> web.Response:
        if self._quit is None:
            return web.Response(status=404, text="not enabled\n")
        self._quit()
        return web.Response(text="OK\n")

    async def _handle_metrics(self, _request: web.Request) -> web.Response:
        body = await self._metrics()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _handle_ready(self, _request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready\n")
