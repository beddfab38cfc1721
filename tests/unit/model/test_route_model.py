"""The Gateway API route values: keys, kinds, and their JSON view (config dumps, debug pages)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from ambit.model.jsonable import from_jsonable, jsonable
from ambit.model.route import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    PATH_STRING_PREFIX,
    PORT_FROM_HOST,
    PORT_FROM_LISTENER,
    PREFIX_REWRITE,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    TCP_ROUTE,
    VALUE_EXACT,
    VALUE_REGEX,
    VIRTUAL_SERVICE,
    BackendRef,
    FaultPolicy,
    HeaderMatch,
    HeaderModifier,
    HttpRoute,
    MirrorFilter,
    PathMatch,
    PathModifier,
    QueryMatch,
    RedirectFilter,
    RetryPolicy,
    RewriteFilter,
    RouteMatch,
    RouteRule,
    check_host,
)
from ambit.model.version import content_version

SVC = "shop/web.shop.svc.cluster.local"
ROUTE = HttpRoute(
    kind=HTTP_ROUTE,
    name="web",
    namespace="shop",
    created="2025-01-01T00:00:00Z",
    service_key=SVC,
    port=80,
    rules=(
        RouteRule(
            index=0,
            matches=(
                RouteMatch(
                    path=PathMatch(PATH_PREFIX, "/api"),
                    method="GET",
                    headers=(HeaderMatch("x-user", VALUE_EXACT, "a"),),
                    query=(QueryMatch("v", VALUE_REGEX, "[0-9]+"),),
                ),
            ),
            backends=(BackendRef("shop/web-v1.shop.svc.cluster.local", 8080, 90),),
            request_headers=HeaderModifier(set=(("x-a", "1"),), add=(("x-b", "2"),), remove=("x-c",)),
            response_headers=HeaderModifier(remove=("server",)),
            request_timeout=1.5,
            backend_timeout=0.5,
            retry=RetryPolicy(attempts=3, codes=(503,), backoff=0.1),
            invalid_weight=10,
        ),
        RouteRule(index=2, matches=(RouteMatch(path=PathMatch(PATH_EXACT, "/")),), backends=()),
    ),
)


def test_keys() -> None:
    assert ROUTE.route_key == "shop/web"
    assert ROUTE.key == f"shop/HTTPRoute/web/{SVC}:80"
    every_port = dataclasses.replace(ROUTE, port=None)
    assert every_port.key == f"shop/HTTPRoute/web/{SVC}"
    grpc = dataclasses.replace(every_port, kind=GRPC_ROUTE)
    assert grpc.key == f"shop/GRPCRoute/web/{SVC}" != every_port.key, "kinds may share a name"
    assert grpc.route_key == every_port.route_key


def test_defaults() -> None:
    assert RouteMatch() == RouteMatch(path=None, method=None, headers=(), query=())
    assert BackendRef("a/b", 80).weight == 1
    policy = RetryPolicy(attempts=2)
    assert (policy.codes, policy.backoff) == ((), None)
    assert policy.retry_on_connect_failure and policy.retry_on_refused_stream
    assert policy.retriable_grpc_statuses == (1, 14)
    rule = RouteRule(0, (RouteMatch(),), ())
    assert (rule.request_headers, rule.retry, rule.request_timeout, rule.invalid_weight) == (
        None,
        None,
        None,
        0,
    )


@pytest.mark.parametrize("kind", [PATH_EXACT, PATH_PREFIX, PATH_REGEX, PATH_STRING_PREFIX])
def test_path_kinds(kind: str) -> None:
    assert PathMatch(kind, "/").kind == kind


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PathMatch("Prefix", "/"), "path match kind 'Prefix'"),
        (lambda: PathMatch("exact", "/"), "path match kind 'exact'"),
        (lambda: HeaderMatch("x", "PathPrefix", "v"), "header match kind 'PathPrefix'"),
        (lambda: QueryMatch("x", "Present", "v"), "query match kind 'Present'"),
        (lambda: dataclasses.replace(ROUTE, kind="UDPRoute"), "route kind 'UDPRoute'"),
    ],
)
def test_unknown_kinds_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_json_view_round_trips() -> None:
    assert from_jsonable(HttpRoute, jsonable(ROUTE)) == ROUTE
    assert from_jsonable(HttpRoute, jsonable(dataclasses.replace(ROUTE, port=None))).port is None


def test_content_version_changes_with_content() -> None:
    other = dataclasses.replace(ROUTE, rules=ROUTE.rules[:1])
    assert content_version(ROUTE) == content_version(dataclasses.replace(ROUTE))
    assert content_version(ROUTE) != content_version(other)
    assert content_version(ROUTE) != content_version(dataclasses.replace(ROUTE, created=""))


# --- VirtualService routes and faults -------------------------------------------------------------

FAULTY = dataclasses.replace(
    ROUTE,
    kind=VIRTUAL_SERVICE,
    port=None,
    rules=(
        dataclasses.replace(ROUTE.rules[0], fault=FaultPolicy(delay=7.0, delay_percent=12.5)),
        dataclasses.replace(ROUTE.rules[1], fault=FaultPolicy(abort_grpc_status=14, abort_percent=100.0)),
    ),
)


def test_virtual_service_keys_are_apart_from_gateway_api_ones() -> None:
    assert FAULTY.key == f"shop/VirtualService/web/{SVC}"
    assert FAULTY.key != dataclasses.replace(FAULTY, kind=HTTP_ROUTE).key
    assert FAULTY.route_key == "shop/web"


def test_fault_defaults_and_json_view() -> None:
    assert FaultPolicy() == FaultPolicy(None, 0.0, None, None, 0.0)
    assert not FaultPolicy(delay=1.0, delay_percent=100.0).aborts
    assert FaultPolicy(abort_status=503).aborts and FaultPolicy(abort_grpc_status=0).aborts
    assert RouteRule(0, (), ()).fault is None
    assert from_jsonable(HttpRoute, jsonable(FAULTY)) == FAULTY
    assert content_version(FAULTY) != content_version(dataclasses.replace(FAULTY, rules=ROUTE.rules))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"delay": 0.0}, "fault delay 0.0 is not a positive"),
        ({"delay": -1.0}, "fault delay -1.0"),
        ({"delay": float("inf")}, "fault delay inf"),
        ({"delay_percent": 100.01}, "fault delay percentage 100.01 is not in 0..100"),
        ({"abort_percent": -0.5}, "fault abort percentage -0.5"),
        ({"abort_percent": float("nan")}, "fault abort percentage nan"),
        ({"abort_status": 199}, "fault abort status 199 is not in 200..599"),
        ({"abort_status": 600}, "fault abort status 600"),
        ({"abort_grpc_status": 17}, "fault abort gRPC status 17 is not in 0..16"),
        ({"abort_grpc_status": -1}, "fault abort gRPC status -1"),
        ({"abort_status": 503, "abort_grpc_status": 14}, "an HTTP status or a gRPC status, not both"),
    ],
)
def test_bad_faults_are_refused(fields: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultPolicy(**fields)  # type: ignore[arg-type]


# --- redirects, rewrites, mirrors, TCPRoutes --------------------------------------------------------

FILTERED = dataclasses.replace(
    ROUTE,
    rules=(
        dataclasses.replace(
            ROUTE.rules[0],
            backends=(),
            redirect=RedirectFilter(
                301, "https", "example.org", None, path=PathModifier(REPLACE_PREFIX_MATCH, "")
            ),
        ),
        dataclasses.replace(
            ROUTE.rules[1],
            rewrite=RewriteFilter("web.internal", PathModifier(REPLACE_FULL_PATH, "/x")),
            mirrors=(MirrorFilter(BackendRef(SVC, 80), 33.3), MirrorFilter(BackendRef(SVC, 81))),
        ),
    ),
)


def test_filter_defaults_and_json_view() -> None:
    assert RedirectFilter() == RedirectFilter(302, None, None, None, PORT_FROM_LISTENER, None)
    assert RewriteFilter() == RewriteFilter(None, None)
    assert MirrorFilter(BackendRef("a/b", 80)).percent == 100.0
    rule = RouteRule(0, (), ())
    assert (rule.redirect, rule.rewrite, rule.mirrors) == (None, None, ())
    assert from_jsonable(HttpRoute, jsonable(FILTERED)) == FILTERED
    assert content_version(FILTERED) != content_version(ROUTE)


def test_tcp_routes_are_a_route_kind_of_their_own() -> None:
    tcp = dataclasses.replace(ROUTE, kind=TCP_ROUTE, rules=(RouteRule(0, (RouteMatch(),), ()),))
    assert tcp.key == f"shop/TCPRoute/web/{SVC}:80" != ROUTE.key
    assert from_jsonable(HttpRoute, jsonable(tcp)) == tcp


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PathModifier("ReplacePath", "/"), "path modifier kind 'ReplacePath'"),
        (lambda: PathModifier(REPLACE_FULL_PATH, "x"), "path 'x' is not absolute"),
        (lambda: PathModifier(REPLACE_FULL_PATH, ""), "path '' is not absolute"),
        (lambda: PathModifier(PREFIX_REWRITE, ""), "path '' is not absolute"),
        (lambda: PathModifier(REPLACE_PREFIX_MATCH, "/a?b"), "control or non-ASCII character"),
        (lambda: PathModifier(REPLACE_PREFIX_MATCH, "/a#b"), "contains a space"),
        (lambda: PathModifier(REPLACE_FULL_PATH, "/a b"), "contains a space"),
        (lambda: PathModifier(REPLACE_FULL_PATH, "/a\r\nb"), "contains a space"),
        (lambda: RedirectFilter(status=200), "redirect status 200 is not one of"),
        (lambda: RedirectFilter(status=304), "redirect status 304"),
        (lambda: RedirectFilter(scheme="ftp"), "redirect scheme 'ftp'"),
        (lambda: RedirectFilter(hostname=""), "redirect hostname '' is not a host name"),
        (lambda: RedirectFilter(hostname="a/b"), "redirect hostname 'a/b'"),
        (lambda: RedirectFilter(hostname="u@h"), "redirect hostname 'u@h'"),
        (lambda: RedirectFilter(port=0), "redirect port 0 is not in 1..65535"),
        (lambda: RedirectFilter(port=65536), "redirect port 65536"),
        (lambda: RedirectFilter(derive_port="Request"), "redirect port mode 'Request'"),
        (lambda: RewriteFilter(hostname="a b"), "rewrite hostname 'a b'"),
        (lambda: MirrorFilter(BackendRef("a/b", 80), 100.5), "mirror percentage 100.5 is not in 0..100"),
        (lambda: MirrorFilter(BackendRef("a/b", 80), float("nan")), "mirror percentage nan"),
        (lambda: BackendRef("a/b", 80, subset=""), "a backend subset is None or a non-empty name"),
    ],
)
def test_bad_filters_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_accepted_filter_values() -> None:
    assert PathModifier(REPLACE_PREFIX_MATCH, "").value == ""  # the Gateway API's "strip the prefix"
    assert RedirectFilter(hostname="[::1]:8080", derive_port=PORT_FROM_HOST).hostname == "[::1]:8080"
    assert MirrorFilter(BackendRef("a/b", 80), 0.0).percent == 0.0
    assert BackendRef("a/b", 80).subset is None
    assert BackendRef("a/b", 80, subset="v1") != BackendRef("a/b", 80)


def test_paths_and_hosts_written_to_the_wire_are_ascii() -> None:
    """A rewrite or redirect value is sent in an HTTP/1.1 head, which carries Latin-1 at most: non-ASCII
    is refused at translation (an IDN host comes punycoded), never at each request."""
    with pytest.raises(ValueError, match="non-ASCII"):
        PathModifier(REPLACE_PREFIX_MATCH, "/日本")
    with pytest.raises(ValueError, match="not a host name"):
        check_host("hostname", "例え.jp")
    assert check_host("hostname", "xn--r8jz45g.jp") == "xn--r8jz45g.jp"
