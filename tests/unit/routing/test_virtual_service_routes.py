"""VirtualService routes at the waypoint: ordered rules before every Gateway API entry, and fault
injection drawn per request (ambit.routing.http_routes: route_table, fault_action)."""

from __future__ import annotations

import math
import random

import pytest

from ambit.model.route import (
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    VIRTUAL_SERVICE,
    FaultPolicy,
    HttpRoute,
    PathMatch,
    RouteMatch,
    RouteRule,
)
from ambit.routing.http_routes import RouteRequest, RouteTable, fault_action, route_table

SVC = "default/web.default.svc.cluster.local"
T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-02T00:00:00Z"
EVERYTHING = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))


def vs(name: str, *rules: RouteRule, created: str = T0, port: int | None = None) -> HttpRoute:
    return HttpRoute(VIRTUAL_SERVICE, name, "default", created, SVC, port, rules)


def rule(index: int, *matches: RouteMatch) -> RouteRule:
    return RouteRule(index, matches, ())


def path(kind: str, value: str) -> RouteMatch:
    return RouteMatch(path=PathMatch(kind, value))


def chosen(table: RouteTable, path_: str) -> tuple[str, str, int] | None:
    selected = table.select(RouteRequest("GET", path_))
    return None if selected is None else (selected.route.kind, selected.route.name, selected.rule.index)


# --- order ----------------------------------------------------------------------------------------


def test_rules_keep_their_order_whatever_their_specificity() -> None:
    """Istio's http[] is ordered: a catch-all first shadows an exact path after it (no precedence)."""
    table = route_table([vs("v", rule(0, EVERYTHING), rule(1, path(PATH_EXACT, "/a")))], 80)
    assert chosen(table, "/a") == (VIRTUAL_SERVICE, "v", 0)
    reordered = route_table([vs("v", rule(0, path(PATH_EXACT, "/a")), rule(1, EVERYTHING))], 80)
    assert chosen(reordered, "/a") == (VIRTUAL_SERVICE, "v", 0)
    assert chosen(reordered, "/b") == (VIRTUAL_SERVICE, "v", 1)


def test_matches_keep_their_order_within_a_rule() -> None:
    r = rule(0, path(PATH_REGEX, "/a.*"), path(PATH_EXACT, "/a"))
    entries = route_table([vs("v", r)], 80).entries
    assert [e.position for e in entries] == [0, 1]


def test_every_virtual_service_entry_ranks_before_every_gateway_api_entry() -> None:
    gateway = HttpRoute(HTTP_ROUTE, "h", "default", "", SVC, None, (rule(0, path(PATH_EXACT, "/a")),))
    virtual = vs("v", rule(0, path(PATH_PREFIX, "/")), created=T1)
    table = route_table([gateway, virtual], 80)
    assert chosen(table, "/a") == (VIRTUAL_SERVICE, "v", 0), "a newer catch-all VirtualService still wins"
    assert [e.route.kind for e in table.entries] == [VIRTUAL_SERVICE, HTTP_ROUTE]


def test_several_virtual_services_apply_oldest_first_then_by_name() -> None:
    newer = vs("a-newer", rule(0, EVERYTHING), created=T1)
    older = vs("z-older", rule(0, EVERYTHING), created=T0)
    assert chosen(route_table([newer, older], 80), "/x") == (VIRTUAL_SERVICE, "z-older", 0)
    same_time = [vs("b", rule(0, EVERYTHING)), vs("a", rule(0, EVERYTHING))]
    assert chosen(route_table(same_time, 80), "/x") == (VIRTUAL_SERVICE, "a", 0)


def test_port_specific_virtual_service_values_apply_to_their_port_only() -> None:
    table = route_table([vs("v", rule(0, EVERYTHING), port=9090)], 80)
    assert not table
    assert chosen(route_table([vs("v", rule(0, EVERYTHING), port=9090)], 9090), "/") is not None


# --- faults ---------------------------------------------------------------------------------------


def binomial_bounds(n: int, p: float, z: float = 3.89) -> tuple[float, float]:
    """The 99.99 % interval (normal approximation) of a Binomial(n, p) count."""
    spread = z * math.sqrt(n * p * (1 - p))
    return n * p - spread, n * p + spread


@pytest.mark.parametrize("percent", [0.1, 10.0, 33.3, 50.0, 97.5])
def test_delays_follow_their_percentage(percent: float) -> None:
    rng, n = random.Random(int(percent * 10)), 20_000
    fault = FaultPolicy(delay=0.5, delay_percent=percent)
    delays = [fault_action(fault, rng)[0] for _ in range(n)]
    assert set(delays) <= {0.0, 0.5}
    low, high = binomial_bounds(n, percent / 100)
    assert low <= delays.count(0.5) <= high


@pytest.mark.parametrize("percent", [0.1, 25.0, 50.0, 90.0])
def test_aborts_follow_their_percentage(percent: float) -> None:
    rng, n = random.Random(int(percent * 100)), 20_000
    fault = FaultPolicy(abort_status=503, abort_percent=percent)
    statuses = [fault_action(fault, rng)[1] for _ in range(n)]
    assert set(statuses) <= {None, 503}
    low, high = binomial_bounds(n, percent / 100)
    assert low <= statuses.count(503) <= high


def test_delay_and_abort_are_drawn_independently() -> None:
    """Both at 50 %: each of the four outcomes about a quarter of the time (not correlated)."""
    rng, n = random.Random(5), 40_000
    fault = FaultPolicy(delay=1.0, delay_percent=50.0, abort_status=500, abort_percent=50.0)
    outcomes = [fault_action(fault, rng) for _ in range(n)]
    low, high = binomial_bounds(n, 0.25)
    for outcome in [(1.0, 500), (1.0, None), (0.0, 500), (0.0, None)]:
        assert low <= outcomes.count(outcome) <= high, outcome


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (FaultPolicy(delay=2.0, delay_percent=100.0), (2.0, None)),
        (FaultPolicy(delay=2.0, delay_percent=0.0), (0.0, None)),
        (FaultPolicy(abort_status=418, abort_percent=100.0), (0.0, 418)),
        (FaultPolicy(abort_status=418, abort_percent=0.0), (0.0, None)),
        (FaultPolicy(abort_grpc_status=14, abort_percent=100.0), (0.0, 14)),
        (FaultPolicy(abort_grpc_status=0, abort_percent=100.0), (0.0, 0)),  # OK is a status too
        (FaultPolicy(delay=0.1, delay_percent=100.0, abort_status=503, abort_percent=100.0), (0.1, 503)),
        (FaultPolicy(delay_percent=100.0, abort_percent=100.0), (0.0, None)),  # nothing to inject
    ],
)
def test_zero_and_one_hundred_percent_are_exact(
    fault: FaultPolicy, expected: tuple[float, int | None]
) -> None:
    for seed in range(20):
        rng = random.Random(seed)
        assert {fault_action(fault, rng) for _ in range(500)} == {expected}


class _Extremes(random.Random):
    """An rng that yields the smallest and the largest values ``random()`` can give."""

    def __init__(self) -> None:
        super().__init__(0)
        self.values = [0.0, 1.0 - 2**-53]

    def random(self) -> float:
        self.values.append(self.values.pop(0))
        return self.values[-1]


def test_the_edges_of_the_rng_respect_zero_and_one_hundred() -> None:
    rng = _Extremes()
    never = FaultPolicy(delay=1.0, delay_percent=0.0, abort_status=503, abort_percent=0.0)
    always = FaultPolicy(delay=1.0, delay_percent=100.0, abort_status=503, abort_percent=100.0)
    assert {fault_action(never, rng) for _ in range(8)} == {(0.0, None)}
    assert {fault_action(always, rng) for _ in range(8)} == {(1.0, 503)}


def test_fault_action_is_reproducible_with_a_seed() -> None:
    fault = FaultPolicy(delay=0.2, delay_percent=30.0, abort_status=500, abort_percent=30.0)
    first = [fault_action(fault, random.Random(9)) for _ in range(3)]
    assert first == [fault_action(fault, random.Random(9)) for _ in range(3)]
