"""A waypoint router on loopback for integration tests: one Service (a VIP), one endpoint outside the
mesh (a real loopback HTTP/1.1 upstream, ``serve_http1``, that counts every request and can be told
what to answer), routes and other resources in its :class:`StateStore`, and requests handed to
``router.handle`` as a frontend would, with the access-log line each one wrote."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from ambit.model.identity import Identity
from ambit.model.route import (
    PATH_PREFIX,
    VIRTUAL_SERVICE,
    BackendRef,
    FaultPolicy,
    HttpRoute,
    PathMatch,
    RouteMatch,
    RouteRule,
)
from ambit.model.workload import PortMapping, Service, ServicePort, Workload
from ambit.net.duplex import TcpDuplex
from ambit.net.pool import HbonePool
from ambit.state import Resource, StateStore, resource_name
from ambit.waypoint.exchange import BodyStream, Downstream, Request, Response
from ambit.waypoint.http1_server import serve_http1
from ambit.waypoint.metrics import RequestMetrics
from ambit.waypoint.router import WaypointRouter, WaypointSelf
from ambit.waypoint.telemetry import ACCESS_LOGGER

VIP = "10.96.0.10"
WEB = "default/web.default.svc.cluster.local"
CLIENT = Downstream("spiffe://cluster.local/ns/default/sa/curl", "127.0.0.5", f"{VIP}:80")
EVERYTHING = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))


@dataclass
class App:
    """The upstream: ``/slow`` answers after ``slow`` seconds, anything else at once; every request
    is counted (its path, and its headers in ``heads``). ``script`` queues answers per path: each
    request to a path with a queued ``(status, headers)`` gets the next one (a trailers-only gRPC
    answer is a 200 with ``grpc-status`` in its headers); then ``200 ok``."""

    slow: float = 0.4
    requests: list[str] = field(default_factory=list)
    heads: list[dict[bytes, bytes]] = field(default_factory=list)
    body_sizes: list[int] = field(default_factory=list)  # request body bytes received, per request
    script: dict[str, list[tuple[int, list[tuple[bytes, bytes]]]]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    connections: int = 0  # connections accepted
    server: asyncio.Server | None = None
    port: int = 0

    async def handle(self, request: Request, _downstream: Downstream) -> Response:
        path = request.path.decode()
        self.requests.append(path)
        self.heads.append(dict(request.headers) | {b":authority": request.authority})
        self.body_sizes.append(len(await request.body.read_all(1 << 24)))
        if path == "/slow":
            await asyncio.sleep(self.slow)
        queued = self.script.get(path)
        if queued:
            status, headers = queued.pop(0)
            return Response(status, [*headers, (b"content-length", b"0")], BodyStream.of())
        return Response(200, [(b"content-length", b"2")], BodyStream.of(b"ok"))

    async def start(self) -> App:
        app = self

        class Accepted(TcpDuplex):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                app.connections += 1
                task = asyncio.get_running_loop().create_task(serve_http1(self, CLIENT, app.handle))
                app.tasks.add(task)
                task.add_done_callback(app.tasks.discard)

        self.server = await asyncio.get_running_loop().create_server(Accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


async def _no_hbone(*_args: Any) -> Any:
    raise AssertionError("the endpoint is outside the mesh: no HBONE")


def router_for(
    app: App, rule: RouteRule | None = None, *, extra: tuple[Resource, ...] = (), seed: int = 1
) -> WaypointRouter:
    """A router for the Service ``web`` (VIP:80 → ``app``) with ``rule`` as its one VirtualService
    rule (None: no route) and the ``extra`` resources (policies, more services) in its store."""
    service = Service(
        "web", "default", "web.default.svc.cluster.local", (VIP,), (ServicePort(80, app.port, name="http"),)
    )
    endpoint = Workload(
        uid="default/web-1",
        name="web-1",
        namespace="default",
        service_account="web",
        node="node-1",
        addresses=("127.0.0.1",),
        services=((WEB, (PortMapping(80, app.port),)),),
    )
    values: list[Resource] = [service, endpoint, *extra]
    if rule is not None:
        values.append(HttpRoute(VIRTUAL_SERVICE, "web", "default", "", WEB, None, (rule,)))
    store = StateStore()
    store.apply({resource_name(v): ("1", v) for v in values})
    me = WaypointSelf("default", "waypoint", Identity("cluster.local", "default", "waypoint"), "127.0.0.9")
    return WaypointRouter(
        me=me,
        store=store,
        pool=HbonePool(_no_hbone),
        metrics=RequestMetrics(),
        cluster_cidrs=["10.0.0.0/8"],
        rng=random.Random(seed),
    )


def rule(
    fault: FaultPolicy | None = None, *, backends: tuple[BackendRef, ...] | None = None, **fields: Any
) -> RouteRule:
    """A rule matching everything, to ``web`` (or ``backends``), with ``fault`` and other ``fields``."""
    chosen = (BackendRef(WEB, 80, 1),) if backends is None else backends
    return RouteRule(0, (EVERYTHING,), chosen, fault=fault, **fields)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    trailers: dict[bytes, bytes]
    seconds: float
    log: dict[str, Any]


async def ask(
    router: WaypointRouter,
    caplog: pytest.LogCaptureFixture,
    path: str = "/get",
    *,
    grpc: bool = False,
    client: Downstream = CLIENT,
) -> Answer:
    """One GET through ``router`` as ``client``: the answer, read whole, and its access-log line."""
    headers = [(b"content-type", b"application/grpc")] if grpc else []
    request = Request(b"GET", b"http", b"web", path.encode(), headers, BodyStream.of())
    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = await router.handle(request, client)
        body = await response.body.read_all(1 << 20)
    seconds = time.monotonic() - started
    (line,) = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    return Answer(
        response.status, dict(response.headers), body, dict(response.body.trailers), seconds, json.loads(line)
    )
