"""The control plane's HTTP port (15014): readiness, debug views and metrics.

* `GET /healthz/ready`: 200 once the informer has synced and the first snapshot is published;
* `GET /debug/config[?proxy=ID]`: exactly what this replica would send a proxy (every proxy gets the
  same resources: ztunnel subscribes to all addresses and policies), with versions;
* `GET /debug/syncz`: connected proxies and push/NACK counters;
* `GET /debug/workload_sync?uid=U`: whether this replica's snapshot still serves pod ``U`` as an
  endpoint, and how many of its connected proxies have ACKed that state (the kubelet waits on it
  before it stops a deleted pod's processes);
* `GET /metrics`: Prometheus (rendered in a thread: exposition must not block the loop);
* **only in a replica started with `--test-fault-endpoints` (chaos tests)**:
  `GET /debug/fault/ca` reads the CA fault switch, `POST /debug/fault/ca` with `state=refuse|serve`
  (query string, form body or JSON body) sets it. While it says "refuse", every certificate request
  is answered `UNAVAILABLE` (`ambit.control.ca_server.CA_REFUSING`) and xDS serves on. Without the
  flag the route is not registered at all (404), so a production replica cannot be switched off by
  anyone who reaches its 15014.

It reads the replica through the :class:`ServedPlane` protocol, so it does not import the app.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol
from urllib.parse import parse_qs

from aiohttp import web

from ambit.control.ca_server import CertificateServer
from ambit.control.cache import SnapshotCache
from ambit.control.metrics import ControlPlaneMetrics
from ambit.control.translate import TranslationResult
from ambit.control.xds_server import XdsServer
from ambit.model.jsonable import jsonable
from ambit.model.workload import HealthStatus, Workload
from ambit.state.snapshot import WORKLOAD_PREFIX

log = logging.getLogger(__name__)

FAULT_CA_PATH = "/debug/fault/ca"
CA_STATES = ("serve", "refuse")


class ServedPlane(Protocol):
    """What the HTTP port reads from a replica (``ambit.control.app.ControlPlane`` is one)."""

    @property
    def ready(self) -> bool: ...
    @property
    def cache(self) -> SnapshotCache: ...
    @property
    def xds(self) -> XdsServer: ...
    @property
    def ca_service(self) -> CertificateServer: ...
    @property
    def metrics(self) -> ControlPlaneMetrics: ...
    @property
    def last_translation(self) -> TranslationResult | None: ...


class ControlPlaneHttp:
    def __init__(self, plane: ServedPlane, *, host: str, port: int, fault_endpoints: bool = False) -> None:
        """``fault_endpoints``: serve ``/debug/fault/ca`` (chaos tests only; read by ``start``)."""
        self.plane = plane
        self.host = host
        self.port = port
        self.fault_endpoints = fault_endpoints
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] = (host, port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz/ready", self.ready)
        app.router.add_get("/debug/config", self.config)
        app.router.add_get("/debug/syncz", self.syncz)
        app.router.add_get("/debug/workload_sync", self.workload_sync)
        app.router.add_get("/metrics", self.metrics)
        if self.fault_endpoints:
            app.router.add_get(FAULT_CA_PATH, self.fault_ca)
            app.router.add_post(FAULT_CA_PATH, self.set_fault_ca)
            log.warning(
                "test fault endpoints are on: POST %s can make this replica's CA refuse", FAULT_CA_PATH
            )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            name = sockets[0].getsockname()
            self.address = (name[0], name[1])

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def ready(self, _request: web.Request) -> web.Response:
        if self.plane.ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="not ready: store not synced or no snapshot yet\n")

    async def config(self, request: web.Request) -> web.Response:
        snapshot = self.plane.cache.current
        from ambit.xds import codec

        body: dict[str, Any] = {
            "proxy": request.query.get("proxy", "*"),
            "snapshot_version": snapshot.version,
            "resources": {},
        }
        for type_url in codec.TYPE_URLS:
            body["resources"][type_url] = {
                name: {"version": res.version, "value": jsonable(res.value)}
                for name, res in sorted(snapshot.resources(type_url).items())
            }
        translation = self.plane.last_translation
        body["warnings"] = list(translation.warnings) if translation is not None else []
        return web.json_response(body)

    async def syncz(self, _request: web.Request) -> web.Response:
        stats = self.plane.xds.stats
        return web.json_response(
            {
                "connected": stats.streams_active,
                "responses": stats.responses,
                "acks": stats.acks,
                "nacks": stats.nacks,
                "recent_nacks": [jsonable(n) for n in stats.recent_nacks],
                "certificates_issued": self.plane.ca_service.stats.issued,
                "certificates_denied": self.plane.ca_service.stats.denied,
                "certificates_refused_by_fault": self.plane.ca_service.stats.fault_refused,
            }
        )

    def _fault_state(self) -> dict[str, Any]:
        ca = self.plane.ca_service
        return {"state": "refuse" if ca.refusing else "serve", "refused": ca.stats.fault_refused}

    async def fault_ca(self, _request: web.Request) -> web.Response:
        return web.json_response(self._fault_state())

    async def set_fault_ca(self, request: web.Request) -> web.Response:
        state = request.query.get("state") or await _state_from_body(request)
        if state not in CA_STATES:
            return web.json_response(
                {"error": f"state must be one of {', '.join(CA_STATES)}, got {state!r}"}, status=400
            )
        ca = self.plane.ca_service
        previous = "refuse" if ca.refusing else "serve"
        ca.refusing = state == "refuse"
        log.warning("CA fault switch: %s -> %s (POST %s)", previous, state, FAULT_CA_PATH)
        return web.json_response({**self._fault_state(), "previous": previous})

    async def workload_sync(self, request: web.Request) -> web.Response:
        from ambit.xds import codec

        uid = request.query.get("uid", "")
        if not uid:
            return web.json_response({"error": "the uid query parameter is required"}, status=400)
        name = f"{WORKLOAD_PREFIX}{uid}"
        found = self.plane.cache.current.resources(codec.ADDRESS_TYPE_URL).get(name)
        proxies, synced = self.plane.xds.resource_sync(codec.ADDRESS_TYPE_URL, name)
        workload = found.value if found is not None else None
        serving = isinstance(workload, Workload) and workload.status == HealthStatus.HEALTHY
        return web.json_response(
            {
                "resource": name,
                "present": found is not None,
                "serving": serving,
                "ready": self.plane.ready,
                "proxies": proxies,
                "synced": synced,
            }
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        text = await asyncio.get_running_loop().run_in_executor(None, self.plane.metrics.exposition)
        return web.Response(body=text, content_type="text/plain", charset="utf-8")


async def _state_from_body(request: web.Request) -> str | None:
    """``state`` from a JSON object or a form-encoded body; None if there is none."""
    if not request.can_read_body:
        return None
    text = await request.text()
    if request.content_type == "application/json" or text.lstrip().startswith("{"):
        try:
            body = json.loads(text)
        except ValueError:
            return None
        value = body.get("state") if isinstance(body, dict) else None
        return value if isinstance(value, str) else None
    values = parse_qs(text.strip()).get("state")  # a form body, or plain ``state=refuse``
    return values[-1] if values else None
