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
    VALUE_EXACT,
    VALUE_REGEX,
    BackendRef,
    HeaderMatch,
    HeaderModifier,
    HttpRoute,
    PathMatch,
    QueryMatch,
    RetryPolicy,
    RouteMatch,
    RouteRule,
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


@pytest.mark.parametrize("kind", [PATH_EXACT, PATH_PREFIX, PATH_REGEX])
def test_path_kinds(kind: str) -> None:
    assert PathMatch(kind, "/").kind == kind


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: PathMatch("Prefix", "/"), "path match kind 'Prefix'"),
        (lambda: PathMatch("exact", "/"), "path match kind 'exact'"),
        (lambda: HeaderMatch("x", "PathPrefix", "v"), "header match kind 'PathPrefix'"),
        (lambda: QueryMatch("x", "Present", "v"), "query match kind 'Present'"),
        (lambda: dataclasses.replace(ROUTE, kind="TCPRoute"), "route kind 'TCPRoute'"),
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
