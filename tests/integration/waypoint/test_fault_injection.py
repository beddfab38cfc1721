"""VirtualService fault injection in the waypoint's router, without a cluster.

A :class:`WaypointRouter` whose :class:`StateStore` holds one Service (a VIP), one endpoint outside the
mesh (a real loopback HTTP/1.1 upstream, ``serve_http1``) and one VirtualService route with a fault;
requests are handed to ``router.handle`` as a frontend would. What Envoy's fault filter does, and ambit
must do too: an injected abort is answered by the waypoint (flag ``FI``) and is never retried; an
injected delay (flag ``DI``) does not count against the route's request timeout; a gRPC abort is a
trailers-only gRPC response.
"""

from __future__ import annotations

import pytest
from router_harness import App, ask, router_for, rule

from ambit.model.route import FaultPolicy, RetryPolicy


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
