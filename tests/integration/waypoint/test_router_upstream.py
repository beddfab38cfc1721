"""Retries and connection reuse in the waypoint's router without a cluster.

Retry conditions Istio always sets, in the waypoint's router without a cluster: a trailers-only gRPC
answer whose ``grpc-status`` is ``unavailable`` (14) or ``cancelled`` (1) is retried under Istio's default
policy (Envoy's ``retriable_grpc_statuses``, read from the response headers), and not with
``attempts: 0`` (the control); an HTTP/2 stream refused unprocessed is marked safe to retry. A
DestinationRule's ``maxRequestsPerConnection`` closes an upstream connection after its share, and its
``maxConnections`` holds HTTP/1.1 requests to that many at once with a bounded pending queue.
"""

from __future__ import annotations

import asyncio
import json
import logging

import h2.config
import h2.connection
import h2.events
import pytest
from h2.errors import ErrorCodes
from router_harness import CLIENT, WEB, App, ask, router_for, rule

from ambit.model.route import RetryPolicy
from ambit.model.traffic_policy import ConnectionPool, TrafficPolicy
from ambit.net.duplex import Duplex, TcpDuplex
from ambit.waypoint.exchange import BodyStream, Request
from ambit.waypoint.h2_client import H2Upstream
from ambit.waypoint.http1_server import serve_http1
from ambit.waypoint.router import WaypointRouter
from ambit.waypoint.telemetry import ACCESS_LOGGER
from ambit.waypoint.upstream_errors import UpstreamError

GRPC = (b"content-type", b"application/grpc")


@pytest.mark.parametrize("code", [b"14", b"1"])
async def test_a_trailers_only_grpc_unavailable_or_cancelled_is_retried_by_default(
    app: App, caplog: pytest.LogCaptureFixture, code: bytes
) -> None:
    app.script["/echo.Echo/Say"] = [(200, [GRPC, (b"grpc-status", code)])]
    router = router_for(app, rule())  # no retry on the rule: Istio's default policy
    try:
        answer = await ask(router, caplog, "/echo.Echo/Say", grpc=True)
    finally:
        await router.close()
    assert answer.status == 200 and b"grpc-status" not in answer.headers, "the retry's answer"
    assert app.requests == ["/echo.Echo/Say", "/echo.Echo/Say"]


async def test_a_grpc_status_outside_the_list_is_not_retried(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    app.script["/echo.Echo/Say"] = [(200, [GRPC, (b"grpc-status", b"5")])]  # NOT_FOUND: the app's answer
    router = router_for(app, rule())
    try:
        answer = await ask(router, caplog, "/echo.Echo/Say", grpc=True)
    finally:
        await router.close()
    assert answer.headers[b"grpc-status"] == b"5"
    assert app.requests == ["/echo.Echo/Say"]


async def test_no_retry_with_zero_attempts(app: App, caplog: pytest.LogCaptureFixture) -> None:
    app.script["/echo.Echo/Say"] = [(200, [GRPC, (b"grpc-status", b"14")])]
    router = router_for(app, rule(retry=RetryPolicy(attempts=0)))
    try:
        answer = await ask(router, caplog, "/echo.Echo/Say", grpc=True)
    finally:
        await router.close()
    assert answer.headers[b"grpc-status"] == b"14", "control: the unavailable answer reaches the client"
    assert app.requests == ["/echo.Echo/Say"]


class RefusingH2:
    """A raw HTTP/2 server that resets every stream with ``code`` (h2, no app behind it)."""

    def __init__(self, code: ErrorCodes) -> None:
        self.code = code
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        while data := await reader.read(65536):
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.RequestReceived):
                    conn.reset_stream(event.stream_id, self.code)
            writer.write(conn.data_to_send())
        writer.close()

    async def start(self) -> RefusingH2:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize(("code", "refused"), [(ErrorCodes.REFUSED_STREAM, True), (ErrorCodes.CANCEL, False)])
async def test_an_h2_refused_stream_is_marked_safe_to_retry(code: ErrorCodes, refused: bool) -> None:
    """REFUSED_STREAM means the upstream never processed the request (RFC 9113 §8.7): the error says so,
    and the router retries it under ``refused-stream``; any other reset (the control) may have been
    processed and is not marked."""
    server = await RefusingH2(code).start()
    pool = H2Upstream()

    async def connect() -> Duplex:
        _transport, duplex = await asyncio.get_running_loop().create_connection(
            TcpDuplex, "127.0.0.1", server.port
        )
        return duplex

    try:
        with pytest.raises(UpstreamError) as caught:
            await pool.send("k", connect, Request(b"GET", b"http", b"x", b"/", [], BodyStream.of()))
        assert (caught.value.flags, caught.value.refused) == ("UR", refused)
    finally:
        await pool.close()
        await server.close()


@pytest.mark.parametrize(("limit", "connections"), [(2, 3), (None, 1)])
async def test_max_requests_per_connection_closes_a_connection_after_its_share(
    app: App, caplog: pytest.LogCaptureFixture, limit: int | None, connections: int
) -> None:
    """A DestinationRule's ``http.maxRequestsPerConnection: 2``: six sequential requests use three
    upstream connections; without it (the control) one kept-alive connection carries all six."""
    pool = ConnectionPool(max_requests_per_connection=limit) if limit is not None else None
    policy = TrafficPolicy("web", "default", WEB, connection_pool=pool)
    router = router_for(app, extra=(policy,))
    try:
        answers = [await ask(router, caplog) for _ in range(6)]
    finally:
        await router.close()
    assert [a.status for a in answers] == [200] * 6
    assert app.connections == connections


@pytest.mark.parametrize(("pending", "statuses"), [(1, [200, 200, 503, 503]), (None, [200, 200, 200, 200])])
async def test_max_connections_queues_a_pending_request_and_refuses_the_rest(
    app: App, caplog: pytest.LogCaptureFixture, pending: int | None, statuses: list[int]
) -> None:
    """``tcp.maxConnections: 1`` with ``http1MaxPendingRequests: 1``: of four concurrent slow requests one
    holds the connection, one waits for it, two are refused at once (503 ``UO``); with no pending limit
    (the control) all four get through, one at a time."""
    pool = ConnectionPool(max_connections=1, max_pending_requests=pending)
    router = router_for(app, extra=(TrafficPolicy("web", "default", WEB, connection_pool=pool),))
    try:
        answers = await asyncio.gather(*(ask_quietly(router, "/slow") for _ in range(4)))
    finally:
        await router.close()
    assert sorted(status for status, _flags in answers) == statuses
    assert all(flags == "UO" for status, flags in answers if status == 503)
    assert app.connections == 1 and len(app.requests) == statuses.count(200)


async def ask_quietly(router: WaypointRouter, path: str) -> tuple[int, str]:
    """One GET through ``router``, read whole: its status and response flags (concurrent-safe)."""
    request = Request(b"GET", b"http", b"web", path.encode(), [], BodyStream.of())
    response = await router.handle(request, CLIENT)
    await response.body.read_all(1 << 20)
    return response.status, response.flags


async def test_the_request_timeout_covers_the_wait_for_a_connection(app: App) -> None:
    """``maxConnections: 1`` and a 0.45 s request timeout, two concurrent 0.3 s requests: the second
    waits 0.3 s for the connection, then needs 0.3 s more, so its timeout fires (504 ``UT``), as Envoy's
    router timer covers the time a request is pending in the pool. Counting from the slot instead, it
    would have been answered 200."""
    app.slow = 0.3
    pool = ConnectionPool(max_connections=1)
    policy = TrafficPolicy("web", "default", WEB, connection_pool=pool)
    router = router_for(app, rule(request_timeout=0.45), extra=(policy,))
    try:
        answers = await asyncio.gather(*(ask_quietly(router, "/slow") for _ in range(2)))
    finally:
        await router.close()
    assert sorted(answers) == [(200, "-"), (504, "UT")]


async def test_a_head_response_releases_its_slots_and_is_counted(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the HTTP/1.1 frontend: a HEAD's response has no body to send, yet its end must still be
    observed — the access-log line written, the request and connection slots released — or one HEAD
    would hold ``maxConnections: 1`` forever and the next request would wait for good."""
    pool = ConnectionPool(max_connections=1, max_pending_requests=1)
    router = router_for(app, extra=(TrafficPolicy("web", "default", WEB, connection_pool=pool),))

    class Front(TcpDuplex):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            tasks.add(asyncio.get_running_loop().create_task(serve_http1(self, CLIENT, router.handle)))

    tasks: set[asyncio.Task[None]] = set()
    server = await asyncio.get_running_loop().create_server(Front, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
            for method in (b"HEAD", b"HEAD", b"GET"):
                writer.write(method + b" /get HTTP/1.1\r\nhost: web\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200"), head
                if method == b"GET":
                    await asyncio.wait_for(reader.readexactly(2), 5)
        traffic = router.traffic_states.get(router.store.current, router.store.current.services[WEB])
        assert traffic is not None and traffic.connections is not None
        assert (traffic.requests.in_use, traffic.connections.in_use) == (0, 0)
        logged = [r for r in caplog.records if r.name == ACCESS_LOGGER]
        assert [json.loads(r.getMessage())["method"] for r in logged] == ["HEAD", "HEAD", "GET"]
        writer.close()
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await router.close()
