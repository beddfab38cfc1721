"""Redirects, rewrites, mirrors and TCPRoutes at the waypoint (ambit.routing.route_filters,
ambit.routing.http_routes.tcp_backends): the Gateway API's and Envoy's rules case by case."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from ambit.model.route import (
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    PATH_STRING_PREFIX,
    PORT_FROM_HOST,
    PORT_FROM_LISTENER,
    PORT_FROM_SCHEME,
    PREFIX_REWRITE,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    TCP_ROUTE,
    VIRTUAL_SERVICE,
    BackendRef,
    HttpRoute,
    MirrorFilter,
    PathMatch,
    PathModifier,
    RedirectFilter,
    RewriteFilter,
    RouteMatch,
    RouteRule,
)
from ambit.routing.http_routes import RouteRequest, pick_backend, route_table, tcp_backends
from ambit.routing.route_filters import (
    ISTIO_SHADOW_HOST_SUFFIX,
    mirrors_drawn,
    redirect_location,
    rewrite_path,
    rewrite_target,
    rewritten_authority,
    shadow_authority,
    split_host,
)

SVC = "default/web.default.svc.cluster.local"
V1 = BackendRef("default/v1.default.svc.cluster.local", 80)
V2 = BackendRef("default/v2.default.svc.cluster.local", 8080)
T0, T1 = "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z"


def prefix(value: str) -> PathMatch:
    return PathMatch(PATH_PREFIX, value)


# --- ReplacePrefixMatch: the Gateway API's table, row by row ------------------------------------


@pytest.mark.parametrize(
    ("path", "matched", "replacement", "expected"),
    [
        # HTTPPathModifier.ReplacePrefixMatch (apis/v1/httproute_types.go): every row of the spec's table
        ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
        ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
        ("/foo", "/foo", "/xyz", "/xyz"),
        ("/foo/", "/foo", "/xyz", "/xyz/"),
        ("/foo/bar", "/foo", "", "/bar"),
        ("/foo/", "/foo", "", "/"),
        ("/foo", "/foo", "", "/"),
        ("/foo/", "/foo", "/", "/"),
        ("/foo", "/foo", "/", "/"),
        # and around it
        ("/foo/bar/baz", "/foo/bar", "/x", "/x/baz"),
        ("/foo//bar", "/foo", "/x", "/x//bar"),
        ("/a", "/", "/x", "/x/a"),  # the root prefix: everything below it moves under the replacement
        ("/", "/", "/x", "/x/"),
        ("/a", "/", "/", "/a"),
        ("/prefix/one/two", "/prefix/one", "/one", "/one/two"),  # conformance: HTTPRouteRewritePath
        ("/strip-prefix/three", "/strip-prefix", "/", "/three"),
        ("/strip-prefix", "/strip-prefix", "/", "/"),
    ],
)
def test_replace_prefix_match(path: str, matched: str, replacement: str, expected: str) -> None:
    modifier = PathModifier(REPLACE_PREFIX_MATCH, replacement)
    assert rewrite_path(modifier, prefix(matched.rstrip("/") or "/"), path) == expected
    assert rewrite_path(modifier, prefix(matched), path) == expected, "a trailing / is ignored"


def test_replace_prefix_match_without_a_prefix_match_replaces_the_whole_path() -> None:
    modifier = PathModifier(REPLACE_PREFIX_MATCH, "/xyz/")
    assert rewrite_path(modifier, PathMatch(PATH_EXACT, "/foo"), "/foo") == "/xyz"
    assert rewrite_path(modifier, None, "/foo/bar") == "/xyz"
    assert rewrite_path(PathModifier(REPLACE_PREFIX_MATCH, ""), None, "/foo") == "/"


@pytest.mark.parametrize("matched", [None, prefix("/foo"), PathMatch(PATH_REGEX, "/f.*")])
def test_replace_full_path_ignores_the_match(matched: PathMatch | None) -> None:
    assert rewrite_path(PathModifier(REPLACE_FULL_PATH, "/one"), matched, "/foo/two") == "/one"


# --- PrefixRewrite: Envoy's prefix_rewrite, as Istio's VirtualService uses it --------------------


@pytest.mark.parametrize(
    ("path", "matched", "replacement", "expected"),
    [
        ("/foo/baz", PathMatch(PATH_STRING_PREFIX, "/foo"), "/bar", "/bar/baz"),
        ("/foo/baz", PathMatch(PATH_STRING_PREFIX, "/foo"), "/", "//baz"),  # as istio/api documents it
        ("/foo/baz", PathMatch(PATH_STRING_PREFIX, "/foo/"), "/", "/baz"),  # "use /foo/ match to get /baz"
        ("/foobar", PathMatch(PATH_STRING_PREFIX, "/foo"), "/x", "/xbar"),  # plain characters, not segments
        ("/ratings/1", PathMatch(PATH_STRING_PREFIX, "/ratings"), "/v1/bookRatings", "/v1/bookRatings/1"),
        ("/a/b", prefix("/"), "/v2/", "/v2/a/b"),  # a rule without a uri match is Istio's prefix "/"
        ("/a/b", None, "/v2", "/v2a/b"),  # no path condition: Envoy's route matched the prefix "/"
        ("/a/b", PathMatch(PATH_EXACT, "/a/b"), "/c", "/c"),  # an exact match: the whole path
        ("/a/b", PathMatch(PATH_REGEX, "/a/.*"), "/c", "/c"),  # a regex match: the whole path
    ],
)
def test_prefix_rewrite(path: str, matched: PathMatch | None, replacement: str, expected: str) -> None:
    assert rewrite_path(PathModifier(PREFIX_REWRITE, replacement), matched, path) == expected


# --- rewrite -------------------------------------------------------------------------------------


def test_rewrite_keeps_the_query() -> None:
    rewrite = RewriteFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "/v2"))
    assert (
        rewrite_target(rewrite, matched=prefix("/api"), path_and_query="/api/x?a=1&b=/api")
        == "/v2/x?a=1&b=/api"
    )
    assert rewrite_target(rewrite, matched=prefix("/api"), path_and_query="/api?") == "/v2?"
    assert rewrite_target(rewrite, matched=prefix("/api"), path_and_query="/api") == "/v2"
    full = RewriteFilter(path=PathModifier(REPLACE_FULL_PATH, "/one"))
    assert rewrite_target(full, matched=prefix("/full"), path_and_query="/full/x?q") == "/one?q"


def test_rewrite_of_the_host_only() -> None:
    rewrite = RewriteFilter(hostname="elsewhere.example")
    assert rewrite_target(rewrite, matched=prefix("/"), path_and_query="/a?b") == "/a?b"
    assert rewritten_authority(rewrite, "web:80") == "elsewhere.example"  # the whole Host, port included
    assert rewritten_authority(RewriteFilter(path=PathModifier(REPLACE_FULL_PATH, "/")), "web:80") == "web:80"


# --- redirect ------------------------------------------------------------------------------------


def location(
    redirect: RedirectFilter, target: str = "/a/b?x=1", *, host: str = "echo", port: int = 80
) -> str:
    return redirect_location(
        redirect, matched=prefix("/a"), scheme="http", host=host, port=port, path_and_query=target
    )


def test_a_bare_redirect_is_the_request_url() -> None:
    assert location(RedirectFilter()) == "http://echo/a/b?x=1"
    assert location(RedirectFilter(), host="echo:80") == "http://echo/a/b?x=1", "port 80 is not written"
    assert location(RedirectFilter(), port=8080) == "http://echo:8080/a/b?x=1", "the listener port"
    assert location(RedirectFilter(), host="echo:8080", port=8080) == "http://echo:8080/a/b?x=1"


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        # conformance HTTPRouteRedirectPortAndScheme, on a listener of port 80 (the Gateway API rules)
        (RedirectFilter(hostname="example.org"), "http://example.org/p"),
        (RedirectFilter(hostname="example.org", port=80), "http://example.org/p"),
        (RedirectFilter(hostname="example.org", port=8080), "http://example.org:8080/p"),
        (
            RedirectFilter(scheme="https", hostname="example.org", derive_port=PORT_FROM_SCHEME),
            "https://example.org/p",
        ),
        (RedirectFilter(scheme="https", hostname="example.org", port=443), "https://example.org/p"),
        (RedirectFilter(scheme="https", hostname="example.org", port=8443), "https://example.org:8443/p"),
        # mesh conformance: HTTPRouteRedirectPort / Scheme / Path / HostAndStatus
        (RedirectFilter(port=8083), "http://echo:8083/p"),
        (RedirectFilter(hostname="example.org", port=8083, status=301), "http://example.org:8083/p"),
        (RedirectFilter(scheme="https", derive_port=PORT_FROM_SCHEME), "https://echo/p"),
        (RedirectFilter(scheme="http", derive_port=PORT_FROM_SCHEME), "http://echo/p"),
    ],
)
def test_redirect_scheme_host_and_port(redirect: RedirectFilter, expected: str) -> None:
    assert location(redirect, "/p") == expected


def test_redirect_port_on_another_listener_port() -> None:
    # HTTPRouteRedirectPortAndScheme on a listener of port 8080: no scheme, no port → the listener port
    assert location(RedirectFilter(hostname="example.org"), "/p", port=8080) == "http://example.org:8080/p"
    https = RedirectFilter(scheme="https", hostname="example.org", derive_port=PORT_FROM_SCHEME)
    assert location(https, "/p", port=8080) == "https://example.org/p"
    assert (
        location(RedirectFilter(hostname="example.org", port=80), "/p", port=8080) == "http://example.org/p"
    )


@pytest.mark.parametrize(
    ("redirect", "target", "expected"),
    [
        # mesh conformance HTTPRouteRedirectPath
        (
            RedirectFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "/replacement-prefix")),
            "/a/lemon",
            "/replacement-prefix/lemon",
        ),
        (
            RedirectFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "/replacement-prefix")),
            "/a",
            "/replacement-prefix",
        ),
        (
            RedirectFilter(path=PathModifier(REPLACE_FULL_PATH, "/full-path-replacement")),
            "/a/x/y",
            "/full-path-replacement",
        ),
        (RedirectFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "")), "/a/b?q=1", "/b?q=1"),
        (RedirectFilter(path=PathModifier(REPLACE_FULL_PATH, "/n")), "/a/b?q=1&r", "/n?q=1&r"),  # query kept
    ],
)
def test_redirect_path(redirect: RedirectFilter, target: str, expected: str) -> None:
    assert location(redirect, target) == "http://echo" + expected


def test_redirect_host_drops_the_request_port() -> None:
    assert location(RedirectFilter(), "/", host="echo:9080", port=9080) == "http://echo:9080/"
    assert location(RedirectFilter(hostname="example.org"), "/", host="echo:9080", port=9080) == (
        "http://example.org:9080/"
    )
    assert location(RedirectFilter(port=81), "/", host="echo:9080", port=9080) == "http://echo:81/"


def test_envoy_default_port_keeps_the_host_port() -> None:
    keep = RedirectFilter(derive_port=PORT_FROM_HOST)
    assert location(keep, "/", host="echo:9080", port=9080) == "http://echo:9080/"
    assert location(keep, "/", host="echo", port=9080) == "http://echo/", "no port written, none kept"
    # an authority of the redirect's own is used as written (Envoy's host_redirect)
    assert (
        location(RedirectFilter(hostname="other", derive_port=PORT_FROM_HOST), "/", host="echo:9080")
        == "http://other/"
    )
    assert location(
        RedirectFilter(hostname="other:81", derive_port=PORT_FROM_HOST), "/", host="echo:9080"
    ) == ("http://other:81/")
    # changing the scheme drops a port that was the old scheme's default, keeps another
    https = RedirectFilter(scheme="https", derive_port=PORT_FROM_HOST)
    assert location(https, "/", host="echo:80") == "https://echo/"
    assert location(https, "/", host="echo:8080") == "https://echo:8080/"
    assert (
        location(RedirectFilter(scheme="https", derive_port=PORT_FROM_HOST), "/", host="echo:443")
        == "https://echo/"
    )


def test_ipv6_hosts_keep_their_brackets() -> None:
    assert location(RedirectFilter(), "/", host="[fd00::1]:8080", port=8080) == "http://[fd00::1]:8080/"
    assert location(RedirectFilter(port=81), "/", host="[fd00::1]") == "http://[fd00::1]:81/"
    assert location(RedirectFilter(derive_port=PORT_FROM_HOST), "/", host="fd00::1") == "http://[fd00::1]/"


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("web", ("web", None)),
        ("web:8080", ("web", 8080)),
        ("web:", ("web", None)),
        ("web:http", ("web", None)),
        ("web:99999", ("web", None)),
        ("[::1]", ("[::1]", None)),
        ("[::1]:443", ("[::1]", 443)),
        ("::1", ("[::1]", None)),
        ("[::1", ("[::1", None)),
    ],
)
def test_split_host(authority: str, expected: tuple[str, int | None]) -> None:
    assert split_host(authority) == expected


def test_redirect_status_defaults() -> None:
    assert RedirectFilter().status == 302  # the Gateway API CRD's default; Istio's is set by translation


def test_redirect_with_the_listener_mode_and_a_derived_scheme_port() -> None:
    assert RedirectFilter().derive_port == PORT_FROM_LISTENER
    assert location(RedirectFilter(scheme="https"), "/", port=8080) == "https://echo:8080/", (
        "ListenerPort with a scheme: the listener port (Istio's FROM_REQUEST_PORT)"
    )


# --- mirrors -------------------------------------------------------------------------------------


def mirrored(*mirrors: MirrorFilter, redirect: RedirectFilter | None = None) -> RouteRule:
    return RouteRule(0, (RouteMatch(),), (V1,), mirrors=mirrors, redirect=redirect)


def test_mirror_shares() -> None:
    rule = mirrored(MirrorFilter(V2, 25.0))
    rng = random.Random(7)
    draws = Counter(len(mirrors_drawn(rule, rng)) for _ in range(20_000))
    assert 0.23 < draws[1] / 20_000 < 0.27


def test_mirror_edges_and_independence() -> None:
    rng = random.Random(1)
    assert all(mirrors_drawn(mirrored(MirrorFilter(V2, 100.0)), rng) == [V2] for _ in range(1000))
    assert not any(mirrors_drawn(mirrored(MirrorFilter(V2, 0.0)), rng) for _ in range(1000))
    both = mirrored(MirrorFilter(V1, 50.0), MirrorFilter(V2, 50.0))
    seen = Counter(tuple(b.service_key for b in mirrors_drawn(both, rng)) for _ in range(8000))
    assert len(seen) == 4, "each mirror is drawn on its own: none, either, both"
    assert all(1700 < n < 2300 for n in seen.values())
    assert mirrors_drawn(both, random.Random(3)) == mirrors_drawn(both, random.Random(3)), "reproducible"


def test_a_redirect_mirrors_nothing() -> None:
    rule = mirrored(MirrorFilter(V2, 100.0), redirect=RedirectFilter())
    assert mirrors_drawn(rule, random.Random(0)) == []


def test_mirror_order_is_the_rules() -> None:
    rule = mirrored(MirrorFilter(V2), MirrorFilter(V1))
    assert mirrors_drawn(rule, random.Random(0)) == [V2, V1]


@pytest.mark.parametrize(
    ("authority", "expected"),
    [
        ("reviews", "reviews-shadow"),
        ("reviews:9080", "reviews-shadow:9080"),
        ("reviews.default.svc.cluster.local:9080", "reviews.default.svc.cluster.local-shadow:9080"),
        ("[fd00::1]:80", "[fd00::1]-shadow:80"),
        ("[fd00::1]", "[fd00::1]-shadow"),
        ("10.96.0.10:80", "10.96.0.10-shadow:80"),
    ],
)
def test_envoys_shadow_host(authority: str, expected: str) -> None:
    assert shadow_authority(authority) == expected


def test_istio_sends_mirrors_with_the_host_unchanged() -> None:
    assert ISTIO_SHADOW_HOST_SUFFIX is False  # DISABLE_SHADOW_HOST_SUFFIX defaults to true since 1.28


# --- matching support: the match that matched, StringPrefix --------------------------------------


def test_selected_names_the_match_that_matched() -> None:
    first, second = RouteMatch(prefix("/a")), RouteMatch(prefix("/b"))
    r = HttpRoute(HTTP_ROUTE, "r", "default", T0, SVC, None, (RouteRule(0, (first, second), (V1,)),))
    selected = route_table([r], 80).select(RouteRequest("GET", "/b/c"))
    assert selected is not None and selected.match == second and selected.match.path == prefix("/b")


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/foo", True), ("/foobar", True), ("/foo/x", True), ("/fo", False), ("/x/foo", False)],
)
def test_string_prefix_is_a_plain_prefix(path: str, expected: bool) -> None:
    vs = HttpRoute(
        VIRTUAL_SERVICE,
        "vs",
        "default",
        T0,
        SVC,
        None,
        (RouteRule(0, (RouteMatch(PathMatch(PATH_STRING_PREFIX, "/foo")),), (V1,)),),
    )
    assert (route_table([vs], 80).select(RouteRequest("GET", path)) is not None) is expected


# --- TCPRoute ------------------------------------------------------------------------------------


def tcp(
    name: str, *rules: RouteRule, created: str = T0, port: int | None = None, ns: str = "default"
) -> HttpRoute:
    return HttpRoute(TCP_ROUTE, name, ns, created, SVC, port, rules)


def tcp_rule(index: int, *backends: BackendRef, invalid: int = 0) -> RouteRule:
    return RouteRule(index, (RouteMatch(),), backends, invalid_weight=invalid)


def test_tcp_routes_never_route_http() -> None:
    routes = [tcp("t", tcp_rule(0, V1))]
    table = route_table(routes, 80)
    assert not table and table.select(RouteRequest("GET", "/")) is None


def test_tcp_backends_of_a_port() -> None:
    first = tcp_rule(0, V1)
    routes = [tcp("t", first, tcp_rule(1, V2), port=9000)]
    assert tcp_backends(routes, 9000) is first, "the first rule takes every connection"
    assert tcp_backends(routes, 9001) is None
    assert tcp_backends([], 9000) is None


def test_tcp_backends_ignore_http_routes() -> None:
    http = HttpRoute(
        HTTP_ROUTE, "h", "default", "", SVC, None, (RouteRule(0, (RouteMatch(prefix("/")),), (V2,)),)
    )
    assert tcp_backends([http], 80) is None
    only = tcp_rule(0, V1)
    assert tcp_backends([http, tcp("t", only)], 80) is only


def test_the_oldest_tcp_route_wins() -> None:
    old, new = tcp_rule(0, V1), tcp_rule(0, V2)
    assert tcp_backends([tcp("b", new, created=T1), tcp("a", old, created=T0)], 80) is old
    assert tcp_backends([tcp("b", old, created=T0), tcp("a", new, created=T0)], 80) is new, "then the name"
    assert tcp_backends([tcp("a", new, created=T0), tcp("z", old, created="")], 80) is old, "unknown: oldest"
    assert tcp_backends([tcp("t", old, ns="b"), tcp("t", new, ns="a")], 80) is new, "namespace first"


def test_a_tcp_route_without_rules_is_passed_over() -> None:
    rule = tcp_rule(0, V2)
    assert tcp_backends([tcp("a", created=""), tcp("b", rule)], 80) is rule


def test_tcp_weights_and_the_refused_share() -> None:
    rule = tcp_rule(0, BackendRef(V1.service_key, 80, 80), BackendRef(V2.service_key, 8080, 20), invalid=100)
    rng = random.Random(5)
    picks = Counter(None if (b := pick_backend(rule, rng)) is None else b.port for _ in range(20_000))
    assert 0.47 < picks[None] / 20_000 < 0.53, "the invalid share of connections is refused"
    assert 0.37 < picks[80] / 20_000 < 0.43
    assert pick_backend(tcp_rule(0), rng) is None, "no backend: every connection is refused"
