"""VirtualService fault injection in the waypoint's router, without a cluster.

A :class:`WaypointRouter` whose :class:`StateStore` holds one Service (a VIP), one endpoint outside the
mesh (a real loopback HTTP/1.1 upstream, ``serve_http1``) and one VirtualService route with a fault;
requests are handed to ``router.handle`` as a frontend would. What Envoy's fault filter does, and ambit
must do too: an injected abort is answered by the waypoint (flag ``FI``) and is never retried; an
injected delay (flag ``DI``) does not count against the route's request timeout; a gRPC abort is a
trailers-only gRPC response.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator
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
    RetryPolicy,
    RouteMatch,
    RouteRule,
)
from ambit.model.workload import PortMapping, Service, ServicePort, Workload
from ambit.net.duplex import TcpDuplex
from ambit.net.pool import HbonePool
from ambit.state import StateStore, resource_name
from ambit.waypoint.exchange import BodyStream, Downstream, Request, Response
from ambit.waypoint.http1_server import serve_http1
from ambit.waypoint.metrics import RequestMetrics
from ambit.waypoint.router import ACCESS_LOGGER, WaypointRouter, WaypointSelf

VIP = "10.96.0.10"
WEB = "default/web.default.svc.cluster.local"
CLIENT = Downstream("spiffe://cluster.local/ns/default/sa/curl", "127.0.0.5", f"{VIP}:80")
EVERYTHING = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))


@dataclass
class App:
    """The upstream: ``/slow`` answers after ``slow`` seconds, anything else at once; every request
    is counted."""

    slow: float = 0.4
    requests: list[str] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    server: asyncio.Server | None = None
    port: int = 0

    async def handle(self, request: Request, _downstream: Downstream) -> Response:
        path = request.path.decode()
        self.requests.append(path)
        if path == "/slow":
            await asyncio.sleep(self.slow)
        return Response(200, [(b"content-length", b"2")], BodyStream.of(b"ok"))

    async def start(self) -> App:
        app = self

        class Accepted(TcpDuplex):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
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


@pytest.fixture
async def app() -> AsyncIterator[App]:
    upstream = await App().start()
    try:
        yield upstream
    finally:
        await upstream.close()


def router_for(app: App, rule: RouteRule, *, seed: int = 1) -> WaypointRouter:
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
    route = HttpRoute(VIRTUAL_SERVICE, "web", "default", "", WEB, None, (rule,))
    store = StateStore()
    store.apply({resource_name(v): ("1", v) for v in (service, endpoint, route)})
    me = WaypointSelf("default", "waypoint", Identity("cluster.local", "default", "waypoint"), "127.0.0.9")
    return WaypointRouter(
        me=me,
        store=store,
        pool=HbonePool(_no_hbone),
        metrics=RequestMetrics(),
        cluster_cidrs=["10.0.0.0/8"],
        rng=random.Random(seed),
    )


def rule(fault: FaultPolicy | None = None, **fields: Any) -> RouteRule:
    return RouteRule(0, (EVERYTHING,), (BackendRef(WEB, 80, 1),), fault=fault, **fields)


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    trailers: dict[bytes, bytes]
    seconds: float
    log: dict[str, Any]


async def ask(
    router: WaypointRouter, caplog: pytest.LogCaptureFixture, path: str = "/get", *, grpc: bool = False
) -> Answer:
    headers = [(b"content-type", b"application/grpc")] if grpc else []
    request = Request(b"GET", b"http", b"web", path.encode(), headers, BodyStream.of())
    caplog.clear()
    started = time.monotonic()
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        response = await router.handle(request, CLIENT)
        body = await response.body.read_all(1 << 20)
    seconds = time.monotonic() - started
    (line,) = [r.getMessage() for r in caplog.records if r.name == ACCESS_LOGGER]
    return Answer(
        response.status, dict(response.headers), body, dict(response.body.trailers), seconds, json.loads(line)
    )


async def test_an_injected_abort_is_answered_by_the_waypoint_and_not_retried(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    retrying = RetryPolicy(attempts=5, codes=(503,))
    router = router_for(app, rule(FaultPolicy(abort_status=503, abort_percent=100.0), retry=retrying))
    try:
        answer = await ask(router, caplog)
    finally:
        await router.close()
    assert (answer.status, answer.body) == (503, b"fault filter abort")
    assert answer.log["response_flags"] == "FI" and answer.log["response_code"] == 503
    assert app.requests == [], "the abort never reaches the upstream, and is not retried"


async def test_a_grpc_abort_is_a_trailers_only_grpc_response(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    router = router_for(app, rule(FaultPolicy(abort_grpc_status=14, abort_percent=100.0)))
    try:
        answer = await ask(router, caplog, grpc=True)
    finally:
        await router.close()
    assert (answer.status, answer.body, answer.trailers) == (200, b"", {})
    assert answer.headers[b"content-type"] == b"application/grpc"
    assert (answer.headers[b"grpc-status"], answer.headers[b"grpc-message"]) == (b"14", b"fault filter abort")
    assert (answer.log["response_flags"], answer.log["grpc_status"]) == ("FI", "14")
    assert app.requests == []


async def test_an_injected_delay_does_not_count_against_the_request_timeout(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    router = router_for(app, rule(FaultPolicy(delay=0.3, delay_percent=100.0), request_timeout=0.2))
    try:
        delayed = await ask(router, caplog)
        # the timeout is real: it starts after the delay, so 0.3 s + 0.2 s later the slow upstream is cut
        timed_out = await ask(router, caplog, "/slow")
    finally:
        await router.close()
    assert (delayed.status, delayed.body, delayed.log["response_flags"]) == (200, b"ok", "DI")
    assert delayed.seconds >= 0.3
    assert (timed_out.status, timed_out.log["response_flags"]) == (504, "UT,DI")
    assert 0.5 <= timed_out.seconds < 0.5 + app.slow
    assert app.requests == ["/get", "/slow"]


async def test_a_delayed_request_may_also_be_aborted(app: App, caplog: pytest.LogCaptureFixture) -> None:
    fault = FaultPolicy(delay=0.1, delay_percent=100.0, abort_status=429, abort_percent=100.0)
    router = router_for(app, rule(fault))
    try:
        answer = await ask(router, caplog)
    finally:
        await router.close()
    assert (answer.status, answer.log["response_flags"]) == (429, "DI,FI")
    assert answer.seconds >= 0.1
    assert app.requests == []


async def test_a_fault_that_is_not_drawn_lets_requests_through(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    fault = FaultPolicy(delay=5.0, delay_percent=0.0, abort_status=500, abort_percent=0.0)
    router = router_for(app, rule(fault))
    try:
        answers = [await ask(router, caplog) for _ in range(5)]
    finally:
        await router.close()
    assert {(a.status, a.log["response_flags"]) for a in answers} == {(200, "-")}
    assert all(a.seconds < 1.0 for a in answers)
    assert len(app.requests) == 5
