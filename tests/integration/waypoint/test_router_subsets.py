"""DestinationRule subsets in the waypoint's router without a cluster: a VirtualService destination with a
``subset`` goes only to that subset's workloads; a subset no rule defines is 503 ``NC``; a defined subset
with no endpoint is 503 ``UH``; without a subset (the control) both endpoints get requests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from router_harness import WEB, App, ask, router_for, rule

from ambit.model.route import BackendRef
from ambit.model.traffic_policy import Subset, TrafficPolicy
from ambit.model.workload import PortMapping, Workload


@pytest.fixture
async def second() -> AsyncIterator[App]:
    upstream = await App().start()
    try:
        yield upstream
    finally:
        await upstream.close()


def web_2(second: App) -> Workload:
    return Workload(
        uid="default/web-2",
        name="web-2",
        namespace="default",
        service_account="web",
        node="node-1",
        addresses=("127.0.0.1",),
        services=((WEB, (PortMapping(80, second.port),)),),
    )


# subset on the backend → the statuses and flag every answer has, and (web-1, web-2) request counts
CASES = {
    "subset v2": ("v2", 200, "-", (0, 20)),
    "no subset (control)": (None, 200, "-", None),
    "undefined subset: NC": ("v3", 503, "NC", (0, 0)),
    "subset without endpoints: UH": ("empty", 503, "UH", (0, 0)),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_subset_narrows_the_backend(
    app: App, second: App, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    subset, status, flags, counts = CASES[case]
    policy = TrafficPolicy(
        "web", "default", WEB, subsets=(Subset("empty", ()), Subset("v2", ("default/web-2",)))
    )
    routed = rule(backends=(BackendRef(WEB, 80, 1, subset=subset),))
    router = router_for(app, routed, extra=(web_2(second), policy), seed=3)
    try:
        answers = [await ask(router, caplog) for _ in range(20)]
    finally:
        await router.close()
    assert {(a.status, a.log["response_flags"]) for a in answers} == {(status, flags)}
    if counts is None:  # the control: both endpoints serve
        assert app.requests and second.requests and len(app.requests) + len(second.requests) == 20
    else:
        assert (len(app.requests), len(second.requests)) == counts
