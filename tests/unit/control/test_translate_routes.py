"""HTTPRoute and GRPCRoute attached to a Service (GAMMA) → the waypoint's HttpRoute values."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest
from translate_builders import JSON, run, service, store, waypoint

from ambit.control.translate import TranslationResult, translate
from ambit.control.translate_routes import convert_routes, parse_duration
from ambit.control.translate_virtualservice import merge_routes
from ambit.model.route import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    PORT_FROM_LISTENER,
    PORT_FROM_SCHEME,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    TCP_ROUTE,
    VALUE_EXACT,
    VALUE_REGEX,
    VIRTUAL_SERVICE,
    BackendRef,
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
)
from ambit.model.version import content_version

T0 = "2025-01-01T00:00:00Z"
WEB = "default/web.default.svc.cluster.local"
V1 = "default/web-v1.default.svc.cluster.local"
V2 = "default/web-v2.default.svc.cluster.local"
PARENT = {"group": "", "kind": "Service", "name": "web"}
ROOT = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))


def http_route(
    spec: JSON, name: str = "r", ns: str = "default", *, created: str | None = T0, version: str = "v1"
) -> JSON:
    meta: JSON = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": f"gateway.networking.k8s.io/{version}",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": {"parentRefs": [PARENT], **spec},
    }


def grpc_route(spec: JSON, name: str = "g", ns: str = "default") -> JSON:
    obj = http_route(spec, name, ns)
    obj["kind"] = "GRPCRoute"
    return obj


def services(*extra: JSON) -> list[JSON]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}]
    return [
        service("web", ports=ports),
        service("web-v1", cluster_ip="10.96.0.11"),
        service("web-v2", cluster_ip="10.96.0.12"),
        *extra,
    ]


def routes_of(*objects: JSON, **kwargs: Any) -> tuple[dict[str, HttpRoute], tuple[str, ...]]:
    result = run(*services(), *objects, **kwargs)
    return dict(result.routes), result.warnings


def only(*objects: JSON) -> HttpRoute:
    """The one route value, and no warnings."""
    routes, warnings = routes_of(*objects)
    assert warnings == ()
    (value,) = routes.values()
    return value


def one_rule(rule: JSON, **kwargs: Any) -> tuple[RouteRule, tuple[str, ...]]:
    routes, warnings = routes_of(http_route({"rules": [rule]}), **kwargs)
    (value,) = routes.values()
    (translated,) = value.rules
    return translated, warnings


def first(result: TranslationResult) -> HttpRoute:
    """The first route value of a result."""
    return next(iter(result.routes.values()))


def backend(name: str, port: int = 80, weight: int | None = None, **extra: Any) -> JSON:
    ref: JSON = {"name": name, "port": port, **extra}
    if weight is not None:
        ref["weight"] = weight
    return ref


# --- a whole route ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_a_producer_route(version: str) -> None:
    obj = http_route(
        {
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}],
                    "backendRefs": [backend("web-v1", weight=90), backend("web-v2", weight=10)],
                },
                {"backendRefs": [backend("web-v1")]},
            ]
        },
        version=version,
    )
    value = only(obj)
    assert value == HttpRoute(
        kind=HTTP_ROUTE,
        name="r",
        namespace="default",
        created=T0,
        service_key=WEB,
        port=None,
        rules=(
            RouteRule(
                index=0,
                matches=(RouteMatch(path=PathMatch(PATH_PREFIX, "/api"), method="GET"),),
                backends=(BackendRef(V1, 80, 90), BackendRef(V2, 80, 10)),
            ),
            RouteRule(index=1, matches=(ROOT,), backends=(BackendRef(V1, 80, 1),)),
        ),
    )
    assert value.key == f"default/HTTPRoute/r/{WEB}"


def test_no_rules_is_one_rule_matching_everything_that_answers_500() -> None:
    value = only(http_route({}))
    assert value.rules == (RouteRule(index=0, matches=(ROOT,), backends=()),)


def test_result_versions_and_determinism() -> None:
    objs = [*services(), http_route({"rules": [{"backendRefs": [backend("web-v1")]}]})]
    a, b = run(*objs), run(*reversed(objs))
    assert a.routes == b.routes and a.versions == b.versions
    (key,) = a.routes
    assert a.versions[f"rt/{key}"] == content_version(a.routes[key])
    changed = copy.deepcopy(objs)
    changed[-1]["spec"]["rules"][0]["backendRefs"][0]["weight"] = 5
    c = run(*changed)
    differs = {name for name in a.versions if a.versions[name] != c.versions.get(name)}
    assert differs == {f"rt/{key}"}


def test_routes_default_to_empty() -> None:
    assert run(*services()).routes == {}


# --- parents ------------------------------------------------------------------------------------


def test_parent_port_is_kept() -> None:
    value = only(http_route({"parentRefs": [{**PARENT, "port": 9090}]}))
    assert value.port == 9090
    assert value.key == f"default/HTTPRoute/r/{WEB}:9090"


def test_section_name_is_a_service_port_name() -> None:
    assert only(http_route({"parentRefs": [{**PARENT, "sectionName": "grpc"}]})).port == 9090
    assert only(http_route({"parentRefs": [{**PARENT, "sectionName": "grpc", "port": 9090}]})).port == 9090


@pytest.mark.parametrize(
    ("ref", "reason"),
    [
        ({**PARENT, "sectionName": "nope"}, "the Service has no port 'nope'"),
        ({**PARENT, "sectionName": "grpc", "port": 80}, "the Service has no port 'grpc'"),
        ({**PARENT, "port": 1234}, "the Service has no port 1234"),
    ],
)
def test_parent_ports_the_service_lacks(ref: JSON, reason: str) -> None:
    routes, warnings = routes_of(http_route({"parentRefs": [ref]}))
    assert routes == {}
    assert warnings == (
        f"HTTPRoute default/r: parentRef Service default/web: {reason}; that parentRef is ignored",
    )


def test_every_port_covers_port_specific_parents() -> None:
    routes, warnings = routes_of(
        http_route({"parentRefs": [{**PARENT, "port": 80}, PARENT, {**PARENT, "port": 9090}]})
    )
    assert warnings == ()
    assert [r.port for r in routes.values()] == [None]


def test_several_ports_and_parents() -> None:
    spec = {"parentRefs": [{**PARENT, "port": 9090}, {**PARENT, "port": 80}, {**PARENT, "name": "web-v1"}]}
    routes, warnings = routes_of(http_route(spec))
    assert warnings == ()
    assert [(r.service_key, r.port) for r in routes.values()] == [(V1, None), (WEB, 80), (WEB, 9090)]
    assert len({r.key for r in routes.values()}) == 3
    assert len({r.rules for r in routes.values()}) == 1, "the same rules for every parent"


def test_a_service_parent_needs_the_core_group() -> None:
    # Without a group the CRD default applies: gateway.networking.k8s.io, which has no Service kind.
    routes, warnings = routes_of(http_route({"parentRefs": [{"kind": "Service", "name": "web"}]}))
    assert routes == {}
    (warning,) = warnings
    assert "group 'gateway.networking.k8s.io' is not the core group" in warning
    assert only(http_route({"parentRefs": [{**PARENT, "group": "core"}]})).service_key == WEB


def test_consumer_routes_are_skipped() -> None:
    obj = http_route({"parentRefs": [{**PARENT, "namespace": "default"}]}, ns="client")
    routes, warnings = routes_of(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "client"}}, obj
    )
    assert routes == {}
    assert warnings == (
        "HTTPRoute client/r: parentRef Service default/web: consumer routes (a route in another namespace "
        "than its Service) are not supported yet; that parentRef is ignored",
    )


def test_a_missing_parent_service() -> None:
    routes, warnings = routes_of(http_route({"parentRefs": [{**PARENT, "name": "nope"}]}))
    assert routes == {}
    assert warnings == (
        "HTTPRoute default/r: parentRef Service default/nope: no such Service; that parentRef is ignored",
    )


def test_gateway_parents() -> None:
    # an ingress Gateway's route is another controller's business: passed over silently
    routes, warnings = routes_of(http_route({"parentRefs": [{"name": "ingress"}]}))
    assert (routes, warnings) == ({}, ())
    # a waypoint's own Gateway is not supported yet, and says so
    routes, warnings = routes_of(waypoint(), http_route({"parentRefs": [{"name": "waypoint"}]}))
    assert routes == {}
    assert warnings == (
        "HTTPRoute default/r: parentRef Gateway default/waypoint: routes attached to a waypoint Gateway "
        "are not supported yet (only Service parents are); that parentRef is ignored",
    )
    # beside a Service parent, only the Service counts
    assert only(http_route({"parentRefs": [{"name": "ingress"}, PARENT]})).service_key == WEB


def test_only_gateway_api_objects() -> None:
    obj = http_route({})
    obj["apiVersion"] = "example.com/v1"
    result = translate([*store(*services()), obj])
    assert result.routes == {}
    assert result.warnings == (
        "HTTPRoute default/r: apiVersion 'example.com/v1' is not gateway.networking.k8s.io; ignored",
    )


def test_creation_timestamp() -> None:
    assert only(http_route({}, created=None)).created == ""
    obj = http_route({}, created="yesterday")
    result = translate([*store(*services()), obj])
    (value,) = result.routes.values()
    assert value.created == ""
    assert result.warnings == (
        "HTTPRoute default/r: creationTimestamp 'yesterday' is not RFC 3339; taken as unknown",
    )


# --- matches ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ({"type": "PathPrefix", "value": "/foo"}, PathMatch(PATH_PREFIX, "/foo")),
        ({"type": "PathPrefix", "value": "/foo/"}, PathMatch(PATH_PREFIX, "/foo")),  # trailing / ignored
        ({"type": "PathPrefix", "value": "/"}, PathMatch(PATH_PREFIX, "/")),
        ({"value": "/foo"}, PathMatch(PATH_PREFIX, "/foo")),  # type defaults to PathPrefix
        ({"type": "PathPrefix"}, PathMatch(PATH_PREFIX, "/")),  # value defaults to /
        ({"type": "Exact", "value": "/foo/"}, PathMatch(PATH_EXACT, "/foo/")),
        ({"type": "RegularExpression", "value": "/v[0-9]+/.*"}, PathMatch(PATH_REGEX, "/v[0-9]+/.*")),
    ],
)
def test_paths(path: JSON, expected: PathMatch) -> None:
    translated, warnings = one_rule({"matches": [{"path": path}]})
    assert warnings == ()
    assert translated.matches == (RouteMatch(path=expected),)


def test_a_match_without_path_is_prefix_root() -> None:
    translated, _ = one_rule({"matches": [{"method": "PUT"}]})
    assert translated.matches == (RouteMatch(path=PathMatch(PATH_PREFIX, "/"), method="PUT"),)


def test_headers_and_query_params() -> None:
    match = {
        "headers": [
            {"name": "X-User", "value": "a"},
            {"name": "x-user", "value": "b"},  # equivalent name: only the first counts
            {"name": "X-Version", "type": "RegularExpression", "value": "v[12]"},
        ],
        "queryParams": [
            {"name": "Debug", "value": "1"},
            {"name": "debug", "type": "RegularExpression", "value": "[a-z]+"},  # names are case-sensitive
            {"name": "Debug", "value": "2"},
        ],
    }
    translated, warnings = one_rule({"matches": [match]})
    assert warnings == ()
    (m,) = translated.matches
    assert m.headers == (
        HeaderMatch("x-user", VALUE_EXACT, "a"),
        HeaderMatch("x-version", VALUE_REGEX, "v[12]"),
    )
    assert m.query == (QueryMatch("Debug", VALUE_EXACT, "1"), QueryMatch("debug", VALUE_REGEX, "[a-z]+"))


@pytest.mark.parametrize(
    ("match", "reason"),
    [
        (
            {"path": {"type": "RegularExpression", "value": "/("}},
            "path regular expression '/(' is not a valid regular expression",
        ),
        (
            {"headers": [{"name": "x", "type": "RegularExpression", "value": "["}]},
            "header x regular expression",
        ),
        (
            {"queryParams": [{"name": "q", "type": "RegularExpression", "value": "*"}]},
            "query parameter q regular",
        ),
    ],
)
def test_a_bad_match_is_dropped_not_widened(match: JSON, reason: str) -> None:
    translated, warnings = one_rule({"matches": [match, {"path": {"type": "Exact", "value": "/ok"}}]})
    assert translated.matches == (RouteMatch(path=PathMatch(PATH_EXACT, "/ok")),)
    (warning,) = warnings
    assert warning.startswith("HTTPRoute default/r rule 0 match 0: ") and reason in warning
    assert warning.endswith("; that match is ignored")


def test_a_rule_with_no_valid_match_is_dropped() -> None:
    spec = {"rules": [{"matches": [{"path": {"type": "RegularExpression", "value": "("}}]}, {}]}
    routes, warnings = routes_of(http_route(spec))
    (value,) = routes.values()
    assert [r.index for r in value.rules] == [1], "the others keep their index"
    assert "HTTPRoute default/r rule 0: no valid match; the rule is ignored" in warnings


def test_unvalidated_junk_in_a_match_is_dropped() -> None:
    obj = http_route(
        {
            "rules": [
                {
                    "matches": [
                        {"path": {"type": "Exact", "value": "relative"}},
                        {"path": {"type": "Glob", "value": "/x"}},
                        {"headers": [{"name": "", "value": "x"}]},
                        {"headers": [{"name": "x", "type": "Prefix", "value": "x"}]},
                        {"path": {"type": "Exact", "value": "/ok"}},
                    ]
                }
            ]
        }
    )
    result = translate([*store(*services()), obj])
    (value,) = result.routes.values()
    assert value.rules[0].matches == (RouteMatch(path=PathMatch(PATH_EXACT, "/ok")),)
    assert len(result.warnings) == 4


# --- GRPCRoute ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ({"service": "pkg.Echo", "method": "Say"}, PathMatch(PATH_EXACT, "/pkg.Echo/Say")),
        ({"service": "pkg.Echo"}, PathMatch(PATH_PREFIX, "/pkg.Echo")),
        ({"method": "Say"}, PathMatch(PATH_REGEX, "/[^/]+/Say")),
        (
            {"type": "RegularExpression", "service": "pkg\\.Ec.*", "method": "S.*"},
            PathMatch(PATH_REGEX, "/pkg\\.Ec.*/S.*"),
        ),
        ({"type": "RegularExpression", "service": "pkg\\..*"}, PathMatch(PATH_REGEX, "/pkg\\..*/.+")),
        ({"type": "RegularExpression", "method": "Get.*"}, PathMatch(PATH_REGEX, "/[^/]+/Get.*")),
    ],
)
def test_grpc_method_matches(method: JSON, expected: PathMatch) -> None:
    routes, warnings = routes_of(grpc_route({"rules": [{"matches": [{"method": method}]}]}))
    assert warnings == ()
    (value,) = routes.values()
    assert value.kind == GRPC_ROUTE
    assert value.key == f"default/GRPCRoute/g/{WEB}"
    assert value.rules[0].matches == (RouteMatch(path=expected),)


def test_grpc_headers_and_defaults() -> None:
    spec = {
        "rules": [
            {
                "matches": [{"headers": [{"name": "X-Tenant", "value": "a"}]}],
                "backendRefs": [backend("web-v1", 9090)],
            },
            {},
        ]
    }
    routes, warnings = routes_of(grpc_route(spec))
    assert warnings == ()
    (value,) = routes.values()
    assert value.rules == (
        RouteRule(
            0, (RouteMatch(headers=(HeaderMatch("x-tenant", VALUE_EXACT, "a"),)),), (BackendRef(V1, 9090),)
        ),
        RouteRule(1, (RouteMatch(),), ()),  # no matches: everything, no path condition
    )


def test_grpc_method_match_needs_service_or_method() -> None:
    obj = grpc_route({"rules": [{"matches": [{"method": {"type": "Exact"}}]}]})
    result = translate([*store(*services()), obj])  # validation refuses it; translation drops the rule
    assert first(result).rules == ()
    assert (
        "GRPCRoute default/g rule 0 match 0: a gRPC method match has neither service nor method"
        in (result.warnings[0])
    )


def test_grpc_routes_have_no_timeouts_or_retries() -> None:
    obj = grpc_route({"rules": [{"backendRefs": [backend("web-v1")]}]})
    obj["spec"]["rules"][0]["timeouts"] = {"request": "1s"}
    obj["spec"]["rules"][0]["retry"] = {"attempts": 3}
    result = translate([*store(*services()), obj])
    (translated,) = first(result).rules
    assert (translated.request_timeout, translated.retry) == (None, None)


# --- filters ------------------------------------------------------------------------------------


def test_header_modifiers() -> None:
    translated, warnings = one_rule(
        {
            "filters": [
                {
                    "type": "RequestHeaderModifier",
                    "requestHeaderModifier": {
                        "set": [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
                        "add": [{"name": "X-B", "value": "b"}],
                        "remove": ["X-C", "x-c", "X-D"],
                    },
                },
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["Server"]}},
            ]
        }
    )
    assert warnings == ()
    assert translated.request_headers == HeaderModifier(
        set=(("x-a", "1"),), add=(("x-b", "b"),), remove=("x-c", "x-d")
    )
    assert translated.response_headers == HeaderModifier(remove=("server",))


def test_an_empty_modifier_is_none() -> None:
    translated, _ = one_rule({"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {}}]})
    assert translated.request_headers is None


def test_a_repeated_modifier_keeps_the_first() -> None:
    first = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["a"]}}
    second = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["b"]}}
    translated, warnings = one_rule({"filters": [first, second]})
    assert translated.request_headers == HeaderModifier(remove=("a",))
    assert warnings == (
        "HTTPRoute default/r rule 0: RequestHeaderModifier is repeated; only the first one is used",
    )


def test_bad_header_names_and_values_are_left_out() -> None:
    modifier = {
        "set": [{"name": "X-Ok", "value": "1"}, {"name": "x-inject", "value": "a\r\nb: c"}],
        "add": [{"name": "bad name", "value": "1"}],
        "remove": [":path"],
    }
    obj = http_route(
        {"rules": [{"filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": modifier}]}]}
    )
    result = translate([*store(*services()), obj])
    (translated,) = first(result).rules
    assert translated.request_headers == HeaderModifier(set=(("x-ok", "1"),))
    assert len(result.warnings) == 3


@pytest.mark.parametrize(
    "filter_",
    [
        {"type": "CORS"},
        {"type": "ExtensionRef", "extensionRef": {"group": "example.com", "kind": "X", "name": "x"}},
        {"type": "ExternalAuth"},
    ],
)
def test_unsupported_filters_warn_and_keep_the_rest(filter_: JSON) -> None:
    header = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {"add": [{"name": "x", "value": "1"}]},
    }
    translated, warnings = one_rule({"filters": [filter_, header], "backendRefs": [backend("web-v1")]})
    assert translated.response_headers == HeaderModifier(add=(("x", "1"),))
    assert translated.backends == (BackendRef(V1, 80),)
    assert warnings == (
        f"HTTPRoute default/r rule 0: filter {filter_['type']} is not supported yet; "
        "the rest of the rule is kept",
    )


# --- backends -----------------------------------------------------------------------------------


def test_weights() -> None:
    translated, warnings = one_rule(
        {"backendRefs": [backend("web-v1"), backend("web-v2", weight=3), backend("web", weight=0)]}
    )
    assert warnings == ()
    assert translated.backends == (BackendRef(V1, 80, 1), BackendRef(V2, 80, 3))  # weight 0: never
    assert translated.invalid_weight == 0


def test_only_zero_weights_answers_500() -> None:
    translated, warnings = one_rule({"backendRefs": [backend("web-v1", weight=0)]})
    assert (translated.backends, translated.invalid_weight, warnings) == ((), 0, ())


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        (
            backend("web-v1", namespace="other", weight=4),
            "(Service other/web-v1): is in another namespace and no ReferenceGrant in other permits "
            "HTTPRoutes of default to reference it",
        ),
        (backend("nope", weight=4), "(Service default/nope): does not exist"),
        (
            {"group": "example.com", "kind": "Backend", "name": "b", "port": 80, "weight": 4},
            "(Backend default/b): kind example.com/Backend is not supported (only core Services are)",
        ),
        (
            {"name": "web-v1", "weight": 4},
            "(Service default/web-v1): has no port (a Service backend needs one)",
        ),
    ],
)
def test_invalid_backends_keep_their_share_as_500(ref: JSON, problem: str) -> None:
    rule = {"backendRefs": [backend("web-v2"), ref]}
    obj = http_route({"rules": [rule]})
    result = translate([*store(*services()), obj])  # validation may refuse some of these; translation copes
    (translated,) = first(result).rules
    assert translated.backends == (BackendRef(V2, 80, 1),)
    assert translated.invalid_weight == 4
    assert result.warnings == (
        f"HTTPRoute default/r rule 0 backendRef 1 {problem}; its share of requests (weight 4) answers 500",
    )


def test_backend_filters_are_ignored_with_a_warning() -> None:
    ref = backend(
        "web-v1", filters=[{"type": "RequestHeaderModifier", "requestHeaderModifier": {"remove": ["x"]}}]
    )
    translated, warnings = one_rule({"backendRefs": [ref]})
    assert translated.backends == (BackendRef(V1, 80),)
    assert warnings == (
        "HTTPRoute default/r rule 0 backendRef 0 (Service default/web-v1): filters on a backendRef are not "
        "supported yet; they are ignored",
    )


# --- timeouts and retries -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("1s", 1.0),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1m500ms", 60.5),
        ("0s", 0.0),
        ("1s1s", 2.0),  # as Go's time.ParseDuration
        ("99999ms", 99.999),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1", "1.5s", "-1s", "1d", "1S", " 1s", "100000s", "1h1m1s1ms1s", "1us"])
def test_parse_duration_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="not a Gateway API duration"):
        parse_duration(text)


def test_timeouts() -> None:
    translated, warnings = one_rule({"timeouts": {"request": "10s", "backendRequest": "500ms"}})
    assert warnings == ()
    assert (translated.request_timeout, translated.backend_timeout) == (10.0, 0.5)
    translated, _ = one_rule({"timeouts": {"request": "0s"}})
    assert translated.request_timeout is None, "0s disables the timeout"
    translated, _ = one_rule({})
    assert (translated.request_timeout, translated.backend_timeout) == (None, None)


def test_backend_timeout_longer_than_request_timeout_warns() -> None:
    translated, warnings = one_rule({"timeouts": {"request": "1s", "backendRequest": "2s"}})
    assert (translated.request_timeout, translated.backend_timeout) == (1.0, 2.0)
    (warning,) = warnings
    assert "timeouts.backendRequest is longer than timeouts.request" in warning


def test_junk_timeouts_are_ignored_with_a_warning() -> None:
    obj = http_route({"rules": [{"timeouts": {"request": "soon", "backendRequest": 5}}]})
    result = translate([*store(*services()), obj])
    (translated,) = first(result).rules
    assert (translated.request_timeout, translated.backend_timeout) == (None, None)
    assert result.warnings == (
        "HTTPRoute default/r rule 0 timeouts: backendRequest 5 is not a Gateway API duration; it is ignored",
        "HTTPRoute default/r rule 0 timeouts: request 'soon' is not a Gateway API duration; it is ignored",
    )


def test_retry() -> None:
    translated, warnings = one_rule({"retry": {"attempts": 3, "codes": [503, 502, 503], "backoff": "100ms"}})
    assert warnings == ()
    assert translated.retry == RetryPolicy(attempts=3, codes=(503, 502), backoff=0.1)
    assert translated.retry.retry_on_connect_failure and translated.retry.retriable_grpc_statuses == (1, 14)


def test_retry_defaults() -> None:
    translated, _ = one_rule({"retry": {}})
    assert translated.retry == RetryPolicy(attempts=2), "Istio's default attempts"
    translated, _ = one_rule({"retry": {"attempts": 0, "backoff": "0s"}})
    assert translated.retry == RetryPolicy(attempts=0)
    translated, _ = one_rule({})
    assert translated.retry is None, "no retry stanza: the mesh default applies"


def test_junk_retry_fields() -> None:
    obj = http_route({"rules": [{"retry": {"attempts": -1, "codes": [200, 503, "x"], "backoff": "fast"}}]})
    result = translate([*store(*services()), obj])
    (translated,) = first(result).rules
    assert translated.retry == RetryPolicy(attempts=2, codes=(503,))
    assert len(result.warnings) == 4


# --- warnings ----------------------------------------------------------------------------------


def test_warnings_are_sorted_and_unique() -> None:
    bad = {"path": {"type": "RegularExpression", "value": "("}}
    obj = http_route({"rules": [{"matches": [bad, {"path": {"type": "Exact", "value": "/a"}}]}]})
    result = run(*services(), obj, http_route(copy.deepcopy(obj["spec"]), name="a"))
    assert list(result.warnings) == sorted(set(result.warnings))
    assert len(result.warnings) == 2


# --- RequestRedirect, URLRewrite, RequestMirror -------------------------------------------------

API = RouteMatch(path=PathMatch(PATH_PREFIX, "/api"))


def redirect_rule(spec: JSON, **rule: Any) -> JSON:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
        "filters": [{"type": "RequestRedirect", "requestRedirect": spec}],
        **rule,
    }


def rewrite_rule(spec: JSON, **rule: Any) -> JSON:
    return {
        "matches": [{"path": {"type": "PathPrefix", "value": "/api/"}}],
        "filters": [{"type": "URLRewrite", "urlRewrite": spec}],
        "backendRefs": [backend("web-v1")],
        **rule,
    }


def mirror(ref: JSON, **share: Any) -> JSON:
    return {"type": "RequestMirror", "requestMirror": {"backendRef": ref, **share}}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, RedirectFilter(302)),  # the CRD's default status
        ({"statusCode": 301}, RedirectFilter(301)),
        *[({"statusCode": code}, RedirectFilter(code)) for code in (303, 307, 308)],
        ({"scheme": "https"}, RedirectFilter(scheme="https", derive_port=PORT_FROM_SCHEME)),
        (
            {"scheme": "https", "port": 8443},
            RedirectFilter(scheme="https", port=8443, derive_port=PORT_FROM_SCHEME),
        ),
        ({"hostname": "example.org"}, RedirectFilter(hostname="example.org", derive_port=PORT_FROM_LISTENER)),
        ({"port": 8083}, RedirectFilter(port=8083)),
        (
            {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/full"}},
            RedirectFilter(path=PathModifier(REPLACE_FULL_PATH, "/full")),
        ),
        (
            {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/replacement-prefix"}},
            RedirectFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "/replacement-prefix")),
        ),
        (
            {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": ""}},
            RedirectFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "")),
        ),
    ],
)
def test_request_redirect(spec: JSON, expected: RedirectFilter) -> None:
    translated, warnings = one_rule(redirect_rule(spec))
    assert warnings == ()
    assert translated == RouteRule(0, (API,), (), redirect=expected)


def test_a_redirect_answers_itself() -> None:
    rule = redirect_rule(
        {"statusCode": 301},
        backendRefs=[backend("web-v1"), backend("gone")],
        filters=[
            {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example"}},
            mirror(backend("web-v2")),
            {
                "type": "ResponseHeaderModifier",
                "responseHeaderModifier": {"set": [{"name": "x", "value": "1"}]},
            },
        ],
    )
    translated, warnings = one_rule(rule)
    assert translated.redirect == RedirectFilter(301)
    assert (translated.backends, translated.invalid_weight, translated.rewrite, translated.mirrors) == (
        (),
        0,
        None,
        (),
    )
    assert translated.response_headers == HeaderModifier(set=(("x", "1"),)), "still applies to the answer"
    assert warnings == (
        "HTTPRoute default/r rule 0: RequestMirror is ignored: the rule redirects, so nothing is sent "
        "upstream",
        "HTTPRoute default/r rule 0: URLRewrite is ignored: the rule redirects, so nothing is sent upstream "
        "(the Gateway API forbids both)",
        "HTTPRoute default/r rule 0: backendRefs are not used: the rule answers with its RequestRedirect "
        "(the Gateway API forbids both)",
    )


def test_replace_prefix_match_needs_path_prefix_matches() -> None:
    spec = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}
    for matches in (
        [{"path": {"type": "Exact", "value": "/api"}}],
        [
            {"path": {"type": "PathPrefix", "value": "/a"}},
            {"path": {"type": "RegularExpression", "value": "/b.*"}},
        ],
    ):
        for rule in (redirect_rule(spec, matches=matches), rewrite_rule(spec, matches=matches)):
            translated, warnings = one_rule(rule)
            assert (translated.redirect, translated.rewrite, translated.backends) == (None, None, ())
            assert translated.invalid_weight == 1, "a filter that cannot be applied is not skipped: 500"
            (warning,) = warnings
            assert "ReplacePrefixMatch needs the rule's matches to be PathPrefix matches" in warning
            assert warning.endswith("; requests the rule takes answer 500")
    # several PathPrefix matches are fine: the one that matched is replaced
    matches = [
        {"path": {"type": "PathPrefix", "value": "/a"}},
        {"path": {"type": "PathPrefix", "value": "/b"}},
    ]
    translated, warnings = one_rule(redirect_rule(spec, matches=matches))
    assert warnings == () and translated.redirect == RedirectFilter(
        path=PathModifier(REPLACE_PREFIX_MATCH, "/x")
    )


def test_a_rule_without_matches_has_the_root_prefix_for_replace_prefix_match() -> None:
    spec = {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}
    translated, warnings = one_rule({"filters": [{"type": "URLRewrite", "urlRewrite": spec}]})
    assert warnings == () and translated.rewrite == RewriteFilter(
        path=PathModifier(REPLACE_PREFIX_MATCH, "/x")
    )


@pytest.mark.parametrize(
    ("spec", "rewrite"),
    [
        ({"hostname": "elsewhere.example"}, RewriteFilter(hostname="elsewhere.example")),
        (
            {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
            RewriteFilter(path=PathModifier(REPLACE_PREFIX_MATCH, "/")),
        ),
        (
            {"hostname": "h.example", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/one"}},
            RewriteFilter("h.example", PathModifier(REPLACE_FULL_PATH, "/one")),
        ),
        ({}, None),  # changes nothing
    ],
)
def test_url_rewrite(spec: JSON, rewrite: RewriteFilter | None) -> None:
    translated, warnings = one_rule(rewrite_rule(spec))
    assert warnings == ()
    assert translated.rewrite == rewrite
    assert translated.backends == (BackendRef(V1, 80),)
    assert translated.matches == (API,), "the prefix keeps no trailing /"


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ({"type": "ReplaceFullPath", "replaceFullPath": "relative"}, "path 'relative' is not absolute"),
        ({"type": "ReplaceFullPath", "replaceFullPath": "/a?b=1"}, "control or non-ASCII character"),
        ({"type": "ReplaceFullPath"}, "path type ReplaceFullPath needs replaceFullPath"),
        ({"type": "ReplacePrefixMatch"}, "path type ReplacePrefixMatch needs replacePrefixMatch"),
    ],
)
def test_a_rewrite_that_cannot_be_applied_answers_500(path: JSON, problem: str) -> None:
    translated, warnings = one_rule(rewrite_rule({"path": path}))
    assert (translated.rewrite, translated.backends, translated.invalid_weight) == (None, (), 1)
    (warning,) = warnings
    assert warning.startswith("HTTPRoute default/r rule 0: URLRewrite: ") and problem in warning


def test_repeated_redirects_and_rewrites_keep_the_first() -> None:
    filters = [
        {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example"}},
        {"type": "URLRewrite", "urlRewrite": {"hostname": "b.example"}},
    ]
    translated, warnings = one_rule({"filters": filters, "backendRefs": [backend("web-v1")]})
    assert translated.rewrite == RewriteFilter(hostname="a.example")
    assert warnings == ("HTTPRoute default/r rule 0: URLRewrite is repeated; only the first one is used",)


@pytest.mark.parametrize(
    ("share", "percent"),
    [
        ({}, 100.0),
        ({"percent": 0}, 0.0),
        ({"percent": 42}, 42.0),
        ({"percent": 100}, 100.0),
        ({"fraction": {"numerator": 1, "denominator": 3}}, 100.0 / 3),
        ({"fraction": {"numerator": 5}}, 5.0),  # denominator defaults to 100
        ({"fraction": {"numerator": 0, "denominator": 1}}, 0.0),
    ],
)
def test_request_mirror(share: JSON, percent: float) -> None:
    translated, warnings = one_rule(
        {"filters": [mirror(backend("web-v2"), **share)], "backendRefs": [backend("web-v1")]}
    )
    assert warnings == ()
    assert translated.mirrors == (MirrorFilter(BackendRef(V2, 80), percent),)
    assert translated.backends == (BackendRef(V1, 80),)


def test_several_mirrors_keep_their_order() -> None:
    filters = [mirror(backend("web-v2"), percent=10), mirror(backend("web-v1", port=8080))]
    translated, warnings = one_rule({"filters": filters, "backendRefs": [backend("web")]})
    assert warnings == ()
    assert translated.mirrors == (MirrorFilter(BackendRef(V2, 80), 10.0), MirrorFilter(BackendRef(V1, 8080)))


@pytest.mark.parametrize(
    ("ref", "share", "problem"),
    [
        (backend("gone"), {}, "(Service default/gone): does not exist"),
        (backend("web-v2", namespace="other"), {}, "no ReferenceGrant in other permits"),
        ({"name": "web-v2"}, {}, "has no port (a Service backend needs one)"),
        (
            {"kind": "Backend", "group": "example.com", "name": "b", "port": 80},
            {},
            "kind example.com/Backend",
        ),
        (backend("web-v2"), {"fraction": {"numerator": 3, "denominator": 2}}, "fraction 3/2 is more than 1"),
        (
            backend("web-v2"),
            {"fraction": {"numerator": 1, "denominator": 0}},
            "denominator 0 is not at least 1",
        ),
        (backend("web-v2"), {"fraction": {"numerator": -1}}, "numerator -1 is not a count"),
        (backend("web-v2"), {"percent": 5, "fraction": {"numerator": 1}}, "sets both percent and fraction"),
    ],
)
def test_an_invalid_mirror_is_left_out(ref: JSON, share: JSON, problem: str) -> None:
    filters = [mirror(ref, **share)]
    translated, warnings = one_rule({"filters": filters, "backendRefs": [backend("web-v1")]})
    assert translated.mirrors == () and translated.backends == (BackendRef(V1, 80),), "the rule still routes"
    (warning,) = warnings
    assert warning.startswith("HTTPRoute default/r rule 0 RequestMirror filter 0 (")
    assert problem in warning and warning.endswith("; that mirror is left out")


def test_grpc_routes_mirror_but_do_not_redirect_or_rewrite() -> None:
    filters = [
        mirror(backend("web-v2")),
        {"type": "RequestRedirect", "requestRedirect": {}},  # the GRPCRoute schema refuses these
        {"type": "URLRewrite", "urlRewrite": {"hostname": "x.example"}},
    ]
    services_by_key = {s.key: s for s in run(*services()).services.values()}
    warnings: list[str] = []
    obj = grpc_route({"rules": [{"filters": filters, "backendRefs": [backend("web-v1")]}]})
    (value,) = convert_routes(
        [obj], services_by_key, cluster_domain="cluster.local", warnings=warnings
    ).values()
    (translated,) = value.rules
    assert translated.mirrors == (MirrorFilter(BackendRef(V2, 80)),)
    assert (translated.redirect, translated.rewrite) == (None, None)
    assert warnings == [
        "GRPCRoute default/g rule 0: filter RequestRedirect is not a GRPCRoute filter; it is ignored",
        "GRPCRoute default/g rule 0: filter URLRewrite is not a GRPCRoute filter; it is ignored",
    ]


def test_filters_that_no_schema_let_through_are_checked_anyway() -> None:
    """Translation holds even for objects that skipped validation (a store from an older ambit)."""
    services_by_key = {s.key: s for s in run(*services()).services.values()}
    cases: list[tuple[JSON, str]] = [
        ({"statusCode": 404}, "status code 404 is not one of [301, 302, 303, 307, 308]"),
        ({"scheme": "ftp"}, "scheme 'ftp' is not http or https"),
        ({"hostname": "a/b"}, "hostname 'a/b' is not a host name"),
        ({"port": 0}, ""),  # 0: unset
        ({"port": 70000}, "port 70000 is not a port number"),
        ({"path": {"type": "Replace"}}, "path type 'Replace' is not ReplaceFullPath or ReplacePrefixMatch"),
    ]
    for spec, problem in cases:
        warnings: list[str] = []
        obj = http_route({"rules": [redirect_rule(spec)]})
        (value,) = convert_routes(
            [obj], services_by_key, cluster_domain="cluster.local", warnings=warnings
        ).values()
        (translated,) = value.rules
        if not problem:
            assert warnings == [] and translated.redirect == RedirectFilter()
            continue
        assert translated.redirect is None and translated.invalid_weight == 1
        (warning,) = warnings
        assert problem in warning, warning


# --- TCPRoute -----------------------------------------------------------------------------------


def tcp_route(spec: JSON, name: str = "t", *, created: str = T0) -> JSON:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1alpha2",
        "kind": "TCPRoute",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": {"parentRefs": [{**PARENT, "port": 9090}], **spec},
    }


def tcp_of(*objects: JSON) -> tuple[dict[str, HttpRoute], list[str]]:
    services_by_key = {s.key: s for s in run(*services()).services.values()}
    warnings: list[str] = []
    validated = store(*objects)
    return convert_routes(
        validated, services_by_key, cluster_domain="cluster.local", warnings=warnings
    ), warnings


def test_a_tcp_route() -> None:
    spec = {"rules": [{"backendRefs": [backend("web-v1", 80, weight=80), backend("web-v2", 80, weight=20)]}]}
    routes, warnings = tcp_of(tcp_route(spec))
    assert warnings == []
    assert routes == {
        f"default/TCPRoute/t/{WEB}:9090": HttpRoute(
            TCP_ROUTE,
            "t",
            "default",
            T0,
            WEB,
            9090,
            (RouteRule(0, (RouteMatch(),), (BackendRef(V1, 80, 80), BackendRef(V2, 80, 20))),),
        )
    }


def test_tcp_route_invalid_backends_refuse_their_share() -> None:
    spec = {"rules": [{"backendRefs": [backend("web-v1", weight=3), backend("gone", weight=1)]}]}
    routes, warnings = tcp_of(tcp_route(spec))
    (value,) = routes.values()
    assert value.rules[0].backends == (BackendRef(V1, 80, 3),) and value.rules[0].invalid_weight == 1
    assert warnings == [
        "TCPRoute default/t rule 0 backendRef 1 (Service default/gone): does not exist; its share of "
        "connections (weight 1) is refused"
    ]


def test_tcp_route_with_several_rules_warns() -> None:
    spec = {"rules": [{"backendRefs": [backend("web-v1")]}, {"backendRefs": [backend("web-v2")]}]}
    routes, warnings = tcp_of(tcp_route(spec))
    (value,) = routes.values()
    assert [r.index for r in value.rules] == [0, 1]
    assert warnings == [
        "TCPRoute default/t: 2 rules; only the first takes connections (a TCPRoute rule has no match, "
        "and TCPRoute v1 allows one rule)"
    ]


def test_tcp_routes_are_gateway_routes_with_service_parents() -> None:
    obj = tcp_route({"rules": [{"backendRefs": [backend("web-v1")]}]})
    obj["spec"]["parentRefs"] = [{**PARENT, "port": 1234}]
    routes, warnings = tcp_of(obj)
    assert routes == {} and warnings == [
        "TCPRoute default/t: parentRef Service default/web: the Service has no port 1234; "
        "that parentRef is ignored"
    ]


def test_a_virtual_service_does_not_shadow_tcp_routes() -> None:
    tcp = HttpRoute(
        TCP_ROUTE, "t", "default", T0, WEB, 9090, (RouteRule(0, (RouteMatch(),), (BackendRef(V1, 80),)),)
    )
    http = HttpRoute(
        HTTP_ROUTE, "h", "default", T0, WEB, None, (RouteRule(0, (ROOT,), (BackendRef(V1, 80),)),)
    )
    vs = dataclasses.replace(http, kind=VIRTUAL_SERVICE, name="vs")
    warnings: list[str] = []
    merged = merge_routes({tcp.key: tcp, http.key: http}, {vs.key: vs}, warnings)
    assert set(merged) == {tcp.key, vs.key}
    (warning,) = warnings
    assert warning.startswith("HTTPRoute default/h: Service")
