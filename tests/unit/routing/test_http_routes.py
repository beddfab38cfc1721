"""Gateway API route selection: the precedence order case by case, matching edge cases, weighted
backends and the retry policy (ambit.routing.http_routes)."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from ambit.model.route import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    VALUE_EXACT,
    VALUE_REGEX,
    BackendRef,
    HeaderMatch,
    HttpRoute,
    PathMatch,
    QueryMatch,
    RetryPolicy,
    RouteMatch,
    RouteRule,
)
from ambit.routing.http_routes import (
    DEFAULT_BACKOFF_BASE,
    ISTIO_DEFAULT_RETRY,
    RouteRequest,
    RouteTable,
    is_retriable,
    pick_backend,
    retry_backoff,
    retry_policy,
    route_table,
)

SVC = "default/web.default.svc.cluster.local"
T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-02T00:00:00Z"


def prefix(value: str) -> PathMatch:
    return PathMatch(PATH_PREFIX, value)


def exact(value: str) -> PathMatch:
    return PathMatch(PATH_EXACT, value)


def regex(value: str) -> PathMatch:
    return PathMatch(PATH_REGEX, value)


def hdr(name: str, value: str, kind: str = VALUE_EXACT) -> HeaderMatch:
    return HeaderMatch(name, kind, value)


def qp(name: str, value: str, kind: str = VALUE_EXACT) -> QueryMatch:
    return QueryMatch(name, kind, value)


def rule(index: int, *matches: RouteMatch, backends: tuple[BackendRef, ...] = ()) -> RouteRule:
    return RouteRule(index, matches, backends)


def route(
    name: str,
    *rules: RouteRule,
    created: str = T0,
    ns: str = "default",
    port: int | None = None,
    kind: str = HTTP_ROUTE,
) -> HttpRoute:
    return HttpRoute(kind, name, ns, created, SVC, port, rules)


def one(
    name: str,
    match: RouteMatch,
    *,
    created: str = T0,
    ns: str = "default",
    port: int | None = None,
    kind: str = HTTP_ROUTE,
) -> HttpRoute:
    """A route with one rule of one match."""
    return route(name, rule(0, match), created=created, ns=ns, port=port, kind=kind)


def get(path: str, query: str = "", method: str = "GET", **headers: str) -> RouteRequest:
    return RouteRequest(method, path, query, tuple((k.replace("_", "-"), v) for k, v in headers.items()))


def chosen(table: RouteTable, request: RouteRequest) -> tuple[str, int] | None:
    """(route name, rule index) selected, or None."""
    selected = table.select(request)
    return None if selected is None else (selected.route.name, selected.rule.index)


# --- precedence, one criterion at a time --------------------------------------------------------


def test_exact_beats_prefix() -> None:
    # the prefix route is older and comes first in the input: only the path kind decides
    table = route_table(
        [
            one("pre", RouteMatch(prefix("/foo")), created=T0),
            one("ex", RouteMatch(exact("/foo")), created=T1),
        ],
        80,
    )
    assert chosen(table, get("/foo")) == ("ex", 0)
    assert chosen(table, get("/foo/bar")) == ("pre", 0)


def test_exact_beats_a_longer_prefix() -> None:
    table = route_table(
        [one("pre", RouteMatch(prefix("/foo/bar"))), one("ex", RouteMatch(exact("/foo/bar")))], 80
    )
    assert chosen(table, get("/foo/bar")) == ("ex", 0)


def test_longer_prefix_wins() -> None:
    table = route_table(
        [
            one("a", RouteMatch(prefix("/"))),
            one("b", RouteMatch(prefix("/foo"))),
            one("c", RouteMatch(prefix("/foo/bar"))),
        ],
        80,
    )
    assert chosen(table, get("/foo/bar/baz")) == ("c", 0)
    assert chosen(table, get("/foo/baz")) == ("b", 0)
    assert chosen(table, get("/other")) == ("a", 0)


def test_prefix_length_counts_characters() -> None:
    # /abcdefgh (9 characters, one segment) before /a/b/c (6 characters, three segments)
    table = route_table(
        [one("segments", RouteMatch(prefix("/a/b/c"))), one("long", RouteMatch(prefix("/abcdefgh")))], 80
    )
    assert [e.route.name for e in table.entries] == ["long", "segments"]


def test_method_beats_no_method() -> None:
    table = route_table(
        [
            one("any", RouteMatch(prefix("/")), created=T0),
            one("get", RouteMatch(prefix("/"), method="GET"), created=T1),
        ],
        80,
    )
    assert chosen(table, get("/x")) == ("get", 0)
    assert chosen(table, get("/x", method="POST")) == ("any", 0)


def test_path_comes_before_method() -> None:
    table = route_table(
        [one("get", RouteMatch(prefix("/"), method="GET")), one("foo", RouteMatch(prefix("/foo")))], 80
    )
    assert chosen(table, get("/foo")) == ("foo", 0)


def test_more_headers_win() -> None:
    one_header = RouteMatch(prefix("/"), headers=(hdr("x-a", "1"),))
    two_headers = RouteMatch(prefix("/"), headers=(hdr("x-a", "1"), hdr("x-b", "2")))
    table = route_table([one("one", one_header, created=T0), one("two", two_headers, created=T1)], 80)
    assert chosen(table, get("/", x_a="1", x_b="2")) == ("two", 0)
    assert chosen(table, get("/", x_a="1")) == ("one", 0)


def test_method_comes_before_headers() -> None:
    headers = RouteMatch(prefix("/"), headers=(hdr("x-a", "1"), hdr("x-b", "2"), hdr("x-c", "3")))
    table = route_table([one("headers", headers), one("get", RouteMatch(prefix("/"), method="GET"))], 80)
    assert chosen(table, get("/", x_a="1", x_b="2", x_c="3")) == ("get", 0)


def test_more_query_params_win() -> None:
    one_param = RouteMatch(prefix("/"), query=(qp("a", "1"),))
    two_params = RouteMatch(prefix("/"), query=(qp("a", "1"), qp("b", "2")))
    table = route_table([one("one", one_param, created=T0), one("two", two_params, created=T1)], 80)
    assert chosen(table, get("/", "a=1&b=2")) == ("two", 0)
    assert chosen(table, get("/", "a=1")) == ("one", 0)


def test_headers_come_before_query_params() -> None:
    header = RouteMatch(prefix("/"), headers=(hdr("x-a", "1"),))
    params = RouteMatch(prefix("/"), query=(qp("a", "1"), qp("b", "2")))
    table = route_table([one("params", params), one("header", header)], 80)
    assert chosen(table, get("/", "a=1&b=2", x_a="1")) == ("header", 0)


def test_oldest_route_wins_a_tie() -> None:
    same = RouteMatch(prefix("/"))
    table = route_table([one("a-new", same, created=T1), one("z-old", same, created=T0)], 80)
    assert chosen(table, get("/")) == ("z-old", 0), "age before name"


def test_creation_time_is_compared_as_time() -> None:
    same = RouteMatch(prefix("/"))
    # the same instant written two ways, then an older one with an offset
    later = one("later", same, created="2025-01-01T10:00:00+02:00")  # 08:00Z
    earlier = one("earlier", same, created="2025-01-01T09:00:00Z")
    assert chosen(route_table([earlier, later], 80), get("/")) == ("later", 0)


def test_unknown_creation_time_counts_as_oldest() -> None:
    same = RouteMatch(prefix("/"))
    table = route_table([one("a", same, created=T0), one("z", same, created="")], 80)
    assert chosen(table, get("/")) == ("z", 0)
    table = route_table([one("a", same, created=T0), one("z", same, created="not a time")], 80)
    assert chosen(table, get("/")) == ("z", 0)


def test_name_order_breaks_a_tie() -> None:
    same = RouteMatch(prefix("/"))
    table = route_table([one("b", same), one("a", same), one("c", same)], 80)
    assert chosen(table, get("/")) == ("a", 0)
    assert [e.route.name for e in table.entries] == ["a", "b", "c"]


def test_namespace_comes_before_name_in_the_tie_break() -> None:
    same = RouteMatch(prefix("/"))
    table = route_table([one("a", same, ns="zz"), one("z", same, ns="aa")], 80)
    assert [e.route.route_key for e in table.entries] == ["aa/z", "zz/a"]


def test_rule_order_breaks_a_tie_within_a_route() -> None:
    same = RouteMatch(prefix("/"))
    table = route_table([route("r", rule(0, same), rule(1, same))], 80)
    assert chosen(table, get("/")) == ("r", 0)
    # rule order does not beat precedence: a later rule with an exact path still wins
    table = route_table([route("r", rule(0, RouteMatch(prefix("/"))), rule(1, RouteMatch(exact("/x"))))], 80)
    assert chosen(table, get("/x")) == ("r", 1)
    assert chosen(table, get("/y")) == ("r", 0)


def test_match_order_within_a_rule() -> None:
    first, second = RouteMatch(prefix("/"), method="GET"), RouteMatch(prefix("/"), method="PUT")
    table = route_table([route("r", rule(0, first, second))], 80)
    assert [(e.rule.index, e.position, e.match) for e in table.entries] == [(0, 0, first), (0, 1, second)]


def test_precedence_is_independent_of_input_order() -> None:
    routes = [
        one("a", RouteMatch(prefix("/"))),
        one("b", RouteMatch(exact("/x"))),
        one("c", RouteMatch(prefix("/x"), method="GET")),
        one("d", RouteMatch(regex("/x.*"))),
        one("e", RouteMatch(prefix("/x"), headers=(hdr("h", "1"),)), created=T1),
    ]
    orders = {tuple(e.route.name for e in route_table(p, 80).entries) for p in (routes, routes[::-1])}
    assert orders == {("b", "c", "e", "a", "d")}


# --- where a RegularExpression path ranks (Istio: Exact > Prefix > Regex > no path) ------------


def test_regex_ranks_below_every_prefix() -> None:
    table = route_table([one("re", RouteMatch(regex("/foo/.*"))), one("root", RouteMatch(prefix("/")))], 80)
    assert chosen(table, get("/foo/bar")) == ("root", 0)


def test_regex_ranks_below_exact() -> None:
    table = route_table([one("re", RouteMatch(regex("/foo"))), one("ex", RouteMatch(exact("/foo")))], 80)
    assert chosen(table, get("/foo")) == ("ex", 0)


def test_regex_ranks_above_no_path() -> None:
    grpc_any = one("grpc", RouteMatch(headers=(hdr("x-a", "1"),)), kind=GRPC_ROUTE)
    table = route_table([grpc_any, one("re", RouteMatch(regex("/.*")))], 80)
    assert chosen(table, get("/svc/M", x_a="1")) == ("re", 0), "path rank before header count"
    assert [e.route.name for e in table.entries] == ["re", "grpc"]


def test_longer_regex_first() -> None:
    table = route_table(
        [one("short", RouteMatch(regex("/.*"))), one("long", RouteMatch(regex("/api/.*")))], 80
    )
    assert chosen(table, get("/api/x")) == ("long", 0)
    assert chosen(table, get("/other")) == ("short", 0)


# --- matching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "path", "expected"),
    [
        ("/foo", "/foo", True),
        ("/foo", "/foo/", True),
        ("/foo", "/foo/bar", True),
        ("/foo", "/foobar", False),
        ("/foo", "/fo", False),
        ("/foo", "/", False),
        ("/foo/", "/foo", True),  # a trailing / in the prefix is ignored
        ("/foo/", "/foo/bar", True),
        ("/foo/", "/foobar", False),
        ("/foo/bar", "/foo/bar/baz", True),
        ("/foo/bar", "/foo/barbaz", False),
        ("/", "/", True),
        ("/", "/anything/at/all", True),
    ],
)
def test_prefix_matches_whole_segments(value: str, path: str, expected: bool) -> None:
    table = route_table([one("r", RouteMatch(prefix(value)))], 80)
    assert (table.select(get(path)) is not None) is expected


@pytest.mark.parametrize(
    ("path", "expected"), [("/foo", True), ("/foo/", False), ("/foo/bar", False), ("/Foo", False)]
)
def test_exact_path(path: str, expected: bool) -> None:
    assert (route_table([one("r", RouteMatch(exact("/foo")))], 80).select(get(path)) is not None) is expected


@pytest.mark.parametrize(("path", "expected"), [("/v1/12", True), ("/v1/12/x", False), ("/x/v1/12", False)])
def test_regex_path_matches_the_whole_path(path: str, expected: bool) -> None:
    table = route_table([one("r", RouteMatch(regex("/v1/[0-9]+")))], 80)
    assert (table.select(get(path)) is not None) is expected


def test_method_is_exact() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), method="GET"))], 80)
    assert table.select(get("/")) is not None
    assert table.select(get("/", method="get")) is None
    assert table.select(get("/", method="POST")) is None


def test_header_matches() -> None:
    match = RouteMatch(prefix("/"), headers=(hdr("x-a", "1"), hdr("x-v", "v[0-9]", VALUE_REGEX)))
    table = route_table([one("r", match)], 80)
    assert table.select(get("/", x_a="1", x_v="v2")) is not None
    assert table.select(get("/", x_a="1", x_v="v2x")) is None, "regex must match the whole value"
    assert table.select(get("/", x_a="1")) is None, "an absent header never matches"
    assert table.select(get("/", x_a="11", x_v="v2")) is None


def test_repeated_headers_are_joined_with_commas() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), headers=(hdr("x-a", "1,2"),)))], 80)
    assert table.select(RouteRequest("GET", "/", "", (("x-a", "1"), ("x-a", "2")))) is not None
    assert table.select(RouteRequest("GET", "/", "", (("x-a", "1"),))) is None


def test_request_header_names_are_compared_in_lower_case() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), headers=(hdr("x-a", "1"),)))], 80)
    assert table.select(RouteRequest("GET", "/", "", (("X-A", "1"),))) is not None


def test_an_empty_regex_still_needs_the_header() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), headers=(hdr("x-a", ".*", VALUE_REGEX),)))], 80)
    assert table.select(get("/", x_a="")) is not None
    assert table.select(get("/")) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a=1&b=x7", True),
        ("b=x7&a=1", True),
        ("a=1&b=x7&c=3", True),
        ("a=1&a=2&b=x7", True),  # the first occurrence counts
        ("a=2&a=1&b=x7", False),
        ("a=%31&b=x7", True),  # percent-decoded
        ("%61=1&b=x7", True),
        ("a=1", False),  # an absent parameter never matches
        ("a=1&b=x7y", False),  # regex: the whole value
        ("", False),
    ],
)
def test_query_matches(query: str, expected: bool) -> None:
    match = RouteMatch(prefix("/"), query=(qp("a", "1"), qp("b", "x[0-9]", VALUE_REGEX)))
    assert (route_table([one("r", match)], 80).select(get("/", query)) is not None) is expected


def test_query_plus_is_not_a_space_and_a_bare_name_is_empty() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), query=(qp("q", "a+b"), qp("flag", ""))))], 80)
    assert table.select(get("/", "q=a+b&flag")) is not None
    assert table.select(get("/", "q=a%20b&flag")) is None


def test_query_names_are_case_sensitive() -> None:
    table = route_table([one("r", RouteMatch(prefix("/"), query=(qp("a", "1"),)))], 80)
    assert table.select(get("/", "A=1")) is None


def test_a_match_with_a_bad_regex_never_matches() -> None:
    bad = one("bad", RouteMatch(regex("/(")))
    bad_header = one("bad-header", RouteMatch(prefix("/x"), headers=(hdr("x", "(", VALUE_REGEX),)))
    table = route_table([bad, bad_header, one("ok", RouteMatch(prefix("/")))], 80)
    assert chosen(table, get("/(")) == ("ok", 0)
    assert chosen(table, get("/x", x="(")) == ("ok", 0)


def test_a_rule_applies_when_any_match_does() -> None:
    table = route_table([route("r", rule(0, RouteMatch(exact("/a")), RouteMatch(exact("/b"))))], 80)
    assert chosen(table, get("/a")) == chosen(table, get("/b")) == ("r", 0)
    assert table.select(get("/c")) is None


def test_a_rule_without_matches_never_applies() -> None:
    table = route_table([route("r", rule(0))], 80)
    assert len(table) == 0 and not table
    assert table.select(get("/")) is None


def test_ports() -> None:
    routes = [one("any", RouteMatch(prefix("/"))), one("p80", RouteMatch(prefix("/")), port=80, created="")]
    assert [e.route.name for e in route_table(routes, 80).entries] == ["p80", "any"]
    assert [e.route.name for e in route_table(routes, 8080).entries] == ["any"]


def test_no_routes() -> None:
    table = route_table([], 80)
    assert table.select(get("/")) is None
    assert not table


def test_selected_carries_route_and_rule() -> None:
    r = route("r", rule(0, RouteMatch(exact("/a"))), rule(3, RouteMatch(prefix("/"))))
    selected = route_table([r], 80).select(get("/b"))
    assert selected is not None
    assert selected.route is r and selected.rule is r.rules[1]


# --- backends -----------------------------------------------------------------------------------

V1 = BackendRef("default/v1.default.svc.cluster.local", 80, 90)
V2 = BackendRef("default/v2.default.svc.cluster.local", 80, 10)


def test_weighted_pick_follows_the_weights() -> None:
    rng = random.Random(7)
    counts = Counter(pick_backend(RouteRule(0, (), (V1, V2)), rng) for _ in range(20_000))
    assert set(counts) == {V1, V2}
    assert 0.88 < counts[V1] / 20_000 < 0.92


def test_weighted_pick_is_reproducible() -> None:
    r = RouteRule(0, (), (V1, V2))
    first = [pick_backend(r, random.Random(3)) for _ in range(5)]
    assert first == [pick_backend(r, random.Random(3)) for _ in range(5)]


def test_invalid_weight_is_the_share_that_gets_no_backend() -> None:
    rng = random.Random(11)
    r = RouteRule(0, (), (BackendRef("default/v1.default.svc.cluster.local", 80, 3),), invalid_weight=1)
    counts = Counter(pick_backend(r, rng) is None for _ in range(20_000))
    assert 0.23 < counts[True] / 20_000 < 0.27


def test_zero_weights_are_never_picked() -> None:
    zero = BackendRef("default/z.default.svc.cluster.local", 80, 0)
    rng = random.Random(1)
    assert {pick_backend(RouteRule(0, (), (zero, V2)), rng) for _ in range(500)} == {V2}


@pytest.mark.parametrize(
    "r",
    [
        RouteRule(0, (), ()),
        RouteRule(0, (), (BackendRef("default/z.default.svc.cluster.local", 80, 0),)),
        RouteRule(0, (), (), invalid_weight=5),  # only invalid backends: always 500
    ],
)
def test_no_backend_to_pick(r: RouteRule) -> None:
    rng = random.Random(0)
    assert all(pick_backend(r, rng) is None for _ in range(50))


# --- retries ------------------------------------------------------------------------------------


def test_istio_default_retry_policy() -> None:
    expected = RetryPolicy(
        attempts=2,
        codes=(),  # 503 is not retried since Istio 1.24 (EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY)
        backoff=None,
        retry_on_connect_failure=True,
        retry_on_refused_stream=True,
        retriable_grpc_statuses=(1, 14),  # cancelled, unavailable
    )
    assert expected == ISTIO_DEFAULT_RETRY
    assert retry_policy(RouteRule(0, (), ())) is ISTIO_DEFAULT_RETRY
    own = RetryPolicy(attempts=5, codes=(502,))
    assert retry_policy(RouteRule(0, (), (), retry=own)) is own


@pytest.mark.parametrize(
    ("policy", "status", "connect_failure", "extra", "expected"),
    [
        (ISTIO_DEFAULT_RETRY, None, True, {}, True),
        (ISTIO_DEFAULT_RETRY, 503, False, {}, False),  # not since Istio 1.24
        (ISTIO_DEFAULT_RETRY, 500, False, {}, False),
        (ISTIO_DEFAULT_RETRY, None, False, {}, False),  # a reset after sending: never
        (ISTIO_DEFAULT_RETRY, None, False, {"refused_stream": True}, True),
        (ISTIO_DEFAULT_RETRY, 200, False, {"grpc_status": 14}, True),  # unavailable
        (ISTIO_DEFAULT_RETRY, 200, False, {"grpc_status": 1}, True),  # cancelled
        (ISTIO_DEFAULT_RETRY, 200, False, {"grpc_status": 2}, False),
        (ISTIO_DEFAULT_RETRY, 200, False, {"grpc_status": 0}, False),
        (RetryPolicy(attempts=2, codes=(503, 502)), 503, False, {}, True),
        (RetryPolicy(attempts=2, codes=(503, 502)), 502, False, {}, True),
        (RetryPolicy(attempts=2, codes=(503, 502)), 504, False, {}, False),
        (RetryPolicy(attempts=0, codes=(503,)), 503, False, {}, False),  # attempts 0: never
        (RetryPolicy(attempts=0), None, True, {}, False),
        (RetryPolicy(attempts=1, retry_on_connect_failure=False), None, True, {}, False),
        (
            RetryPolicy(attempts=1, retry_on_refused_stream=False),
            None,
            False,
            {"refused_stream": True},
            False,
        ),
    ],
)
def test_is_retriable(
    policy: RetryPolicy, status: int | None, connect_failure: bool, extra: dict[str, Any], expected: bool
) -> None:
    assert is_retriable(policy, status, connect_failure, **extra) is expected


def test_retry_backoff_is_jittered_exponential_and_capped() -> None:
    rng = random.Random(5)
    for retry, upper in ((1, 1), (2, 3), (3, 7), (4, 10), (9, 10)):
        delays = [retry_backoff(ISTIO_DEFAULT_RETRY, retry, rng) for _ in range(300)]
        assert all(0 <= d <= upper * DEFAULT_BACKOFF_BASE for d in delays)
        assert max(delays) > 0.8 * upper * DEFAULT_BACKOFF_BASE
    own = RetryPolicy(attempts=3, backoff=0.1)
    assert all(0 <= retry_backoff(own, 2, rng) <= 0.3 for _ in range(100))
