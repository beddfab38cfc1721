"""HTTPLocalRateLimitPolicy in the waypoint's router without a cluster: the burst is admitted, the rest
is answered 429 ``local_rate_limited`` with ``retry-after`` and flag ``RL`` and never reaches the
upstream, counted per policy and bucket; a client's override holds its own limit; a denied request takes
no token (policy comes first); without a policy (the control) everything is admitted."""

from __future__ import annotations

import pytest
from router_harness import CLIENT, App, ask, router_for

from ambit.model.policy import (
    SERVICE_TARGET,
    Action,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    MatchKind,
    PolicyTarget,
    StringMatch,
)
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy
from ambit.waypoint.exchange import Downstream

WEB_TARGET = PolicyTarget(SERVICE_TARGET, "default", "web")
SPECIAL = Downstream("spiffe://cluster.local/ns/default/sa/special", "127.0.0.6", CLIENT.target)


def limited(**limits: object) -> RateLimitPolicy:
    return RateLimitPolicy("web-limit", "default", (WEB_TARGET,), **limits)  # type: ignore[arg-type]


async def test_the_burst_is_admitted_and_the_rest_answered_429(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    router = router_for(app, extra=(limited(total=RateLimit(1, 3)),))
    try:
        answers = [await ask(router, caplog) for _ in range(5)]
        exposition = router.metrics.exposition().decode()
    finally:
        await router.close()
    assert [a.status for a in answers] == [200, 200, 200, 429, 429]
    refused = answers[3]
    assert refused.body == b"local_rate_limited" and refused.log["response_flags"] == "RL"
    assert int(refused.headers[b"retry-after"]) >= 1
    assert len(app.requests) == 3, "a refused request never reaches the upstream"
    line = 'ambit_waypoint_rate_limited_requests_total{bucket="total",policy="default/web-limit"} 2.0'
    assert line in exposition


async def test_without_a_policy_everything_is_admitted(app: App, caplog: pytest.LogCaptureFixture) -> None:
    router = router_for(app)
    try:
        answers = [await ask(router, caplog) for _ in range(5)]
    finally:
        await router.close()
    assert [a.status for a in answers] == [200] * 5


async def test_an_override_holds_its_own_limit(app: App, caplog: pytest.LogCaptureFixture) -> None:
    override = ClientOverride(RateLimit(1, 1), ("cluster.local/ns/default/sa/special",))
    router = router_for(app, extra=(limited(identity=RateLimit(1, 3), overrides=(override,)),))
    try:
        special = [await ask(router, caplog, client=SPECIAL) for _ in range(3)]
        others = [await ask(router, caplog) for _ in range(4)]
    finally:
        await router.close()
    assert [a.status for a in special] == [200, 429, 429], "the override: a burst of 1"
    assert [a.status for a in others] == [200, 200, 200, 429], "everyone else: their own burst of 3"
    assert special[1].log["response_flags"] == "RL"


async def test_a_denied_request_takes_no_token(app: App, caplog: pytest.LogCaptureFixture) -> None:
    get = L7Match(methods=(StringMatch(MatchKind.EXACT, "GET"),))
    deny_get = L7Authorization(
        "deny-get", "default", Action.DENY, (WEB_TARGET,), (L7Rule((L7Clause((get,)),)),)
    )
    router = router_for(app, extra=(limited(total=RateLimit(1, 1)), deny_get))
    try:
        answers = [await ask(router, caplog) for _ in range(3)]
    finally:
        await router.close()
    assert [a.status for a in answers] == [403, 403, 403], "denied by policy, never rate limited"
