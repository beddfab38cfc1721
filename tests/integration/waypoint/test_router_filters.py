"""Route filters in the waypoint's router without a cluster: a RequestRedirect answers itself with its
Location and sends nothing upstream; a URLRewrite changes the path (the query kept) and the host the
backend sees; a RequestMirror sends a copy to its backend, whose answer the client never sees (a mirror
at 0 % is the control)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from router_harness import CLIENT, WEB, App, ask, router_for, rule

from ambit.model.route import (
    PATH_PREFIX,
    PATH_STRING_PREFIX,
    PREFIX_REWRITE,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    BackendRef,
    MirrorFilter,
    PathMatch,
    PathModifier,
    RedirectFilter,
    RewriteFilter,
    RouteMatch,
    RouteRule,
)
from ambit.model.traffic_policy import ConnectionPool, TrafficPolicy
from ambit.model.workload import PortMapping, Service, ServicePort, Workload
from ambit.waypoint.exchange import BodyStream, Request

SHADOW = "default/shadow.default.svc.cluster.local"


@pytest.fixture
async def shadow_app() -> AsyncIterator[App]:
    upstream = await App().start()
    try:
        yield upstream
    finally:
        await upstream.close()


def shadow_resources(shadow_app: App) -> tuple[Service, Workload]:
    service = Service(
        "shadow",
        "default",
        "shadow.default.svc.cluster.local",
        ("10.96.0.11",),
        (ServicePort(80, shadow_app.port, name="http"),),
    )
    endpoint = Workload(
        uid="default/shadow-1",
        name="shadow-1",
        namespace="default",
        service_account="shadow",
        node="node-1",
        addresses=("127.0.0.1",),  # its own port: the same loopback address as web-1
        services=((SHADOW, (PortMapping(80, shadow_app.port),)),),
    )
    return service, endpoint


async def test_a_redirect_answers_with_its_location(app: App, caplog: pytest.LogCaptureFixture) -> None:
    redirect = RedirectFilter(
        status=301, hostname="example.com", path=PathModifier(REPLACE_FULL_PATH, "/new")
    )
    router = router_for(app, rule(redirect=redirect, backends=()))
    try:
        answer = await ask(router, caplog, "/old?x=1")
    finally:
        await router.close()
    assert (answer.status, answer.headers[b"location"]) == (301, b"http://example.com/new?x=1")
    assert app.requests == [], "a redirect sends nothing upstream"


async def test_a_rewrite_changes_the_path_and_host_the_backend_sees(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    api = RouteMatch(path=PathMatch(PATH_PREFIX, "/api"))
    rewrite = RewriteFilter(hostname="backend.internal", path=PathModifier(REPLACE_PREFIX_MATCH, "/v2"))
    router = router_for(app, RouteRule(0, (api,), (BackendRef(WEB, 80, 1),), rewrite=rewrite))
    try:
        answer = await ask(router, caplog, "/api/items?x=1")
    finally:
        await router.close()
    assert answer.status == 200
    assert app.requests == ["/v2/items?x=1"], "the prefix replaced, the query kept"
    assert app.heads[0][b":authority"] == b"backend.internal"


@pytest.mark.parametrize(("percent", "mirrored"), [(100.0, 3), (0.0, 0)])
async def test_a_mirror_gets_a_copy_and_the_client_only_the_primary(
    app: App, shadow_app: App, caplog: pytest.LogCaptureFixture, percent: float, mirrored: int
) -> None:
    shadow_app.script["/get"] = [(503, [])] * 3  # the mirror fails: the client must not notice
    mirror = MirrorFilter(BackendRef(SHADOW, 80, 1), percent)
    router = router_for(app, rule(mirrors=(mirror,)), extra=shadow_resources(shadow_app))
    try:
        answers = [await ask(router, caplog) for _ in range(3)]
        for _ in range(50):  # fire and forget: wait for the copies to land
            if len(shadow_app.requests) >= mirrored:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        await router.close()
    assert [(a.status, a.body) for a in answers] == [(200, b"ok")] * 3
    assert len(app.requests) == 3
    assert shadow_app.requests == ["/get"] * mirrored


async def test_a_streaming_body_too_large_to_buffer_reaches_the_primary_whole(
    app: App, shadow_app: App
) -> None:
    """A GET with a 100 KB body still arriving, of undeclared length, on a rule that mirrors and retries: it
    cannot be buffered for them (more than 64 KiB), so it is neither mirrored nor retried — and the
    primary gets every byte (found in review: a failed attempt to buffer it used to eat its start)."""
    mirror = MirrorFilter(BackendRef(SHADOW, 80, 1), 100.0)
    router = router_for(app, rule(mirrors=(mirror,)), extra=shadow_resources(shadow_app))
    body = BodyStream()

    async def produce() -> None:
        for _ in range(10):
            await body.feed(b"x" * 10_000)
            await asyncio.sleep(0.01)
        body.finish(())

    producer = asyncio.ensure_future(produce())
    try:
        request = Request(b"GET", b"http", b"web", b"/upload", [], body, version="2")
        response = await router.handle(request, CLIENT)
        await response.body.read_all(1 << 20)
        await producer
    finally:
        await router.close()
    assert response.status == 200
    assert app.body_sizes == [100_000]
    assert shadow_app.requests == [], "not mirrored: the body could not be buffered"


async def test_mirrors_count_against_the_targets_limits(app: App, shadow_app: App) -> None:
    """The mirror target's DestinationRule allows one request at a time: of three concurrent mirrored
    requests one copy is sent and two are dropped (as Envoy's shadow requests count against the target
    cluster's circuit breakers); the primaries are all answered."""
    shadow_service, shadow_endpoint = shadow_resources(shadow_app)
    limit = TrafficPolicy("shadow", "default", SHADOW, connection_pool=ConnectionPool(max_requests=1))
    mirror = MirrorFilter(BackendRef(SHADOW, 80, 1), 100.0)
    router = router_for(app, rule(mirrors=(mirror,)), extra=(shadow_service, shadow_endpoint, limit))

    async def one() -> int:
        request = Request(b"GET", b"http", b"web", b"/slow", [], BodyStream.of())
        response = await router.handle(request, CLIENT)
        await response.body.read_all(1 << 20)
        return response.status

    try:
        statuses = await asyncio.gather(one(), one(), one())
        for _ in range(50):
            if shadow_app.requests:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)  # the one copy sent is slow (0.4 s): let it finish
    finally:
        await router.close()
    assert statuses == [200, 200, 200]
    assert shadow_app.requests == ["/slow"] and router.mirrors_dropped == 2


@pytest.mark.parametrize(("path", "status", "sent"), [("/api../admin", 400, None), ("/apix", 200, "/v1/x")])
async def test_a_prefix_rewrite_that_makes_a_dot_segment_is_refused(
    app: App, caplog: pytest.LogCaptureFixture, path: str, status: int, sent: str | None
) -> None:
    """A VirtualService ``uri.prefix: /api`` rewritten to ``/v1/``: ``/api../admin`` (no dot segment, so
    policy saw it as is) would become ``/v1/../admin``, which the backend resolves to ``/admin`` — a
    path policy never checked. The waypoint refuses it (400) instead of sending it; ``/apix`` (the
    control) becomes ``/v1/x``."""
    api = RouteMatch(path=PathMatch(PATH_STRING_PREFIX, "/api"))
    rewrite = RewriteFilter(path=PathModifier(PREFIX_REWRITE, "/v1/"))
    router = router_for(app, RouteRule(0, (api,), (BackendRef(WEB, 80, 1),), rewrite=rewrite))
    try:
        answer = await ask(router, caplog, path)
    finally:
        await router.close()
    assert answer.status == status
    assert app.requests == ([] if sent is None else [sent])
