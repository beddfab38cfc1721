"""Istio VirtualService on a Service host → the waypoint's HttpRoute values (kind VirtualService):
hosts, matches, destinations, timeouts, retries, headers, faults, what is not supported, and the rule
for a Service that also has Gateway API routes (ambit.control.translate_virtualservice)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from translate_builders import JSON, run, service, store, waypoint

from ambit.control.translate import translate
from ambit.control.translate_virtualservice import host_key, parse_duration, retry_on
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
)
from ambit.model.version import content_version
from ambit.routing.http_routes import RouteRequest, route_table
from ambit.routing.route_filters import redirect_location, rewrite_target

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-02T00:00:00Z"
CD = "cluster.local"
REVIEWS = "default/reviews.default.svc.cluster.local"
WEB = "default/web.default.svc.cluster.local"
V1 = "default/reviews-v1.default.svc.cluster.local"
V2 = "default/reviews-v2.default.svc.cluster.local"
RATINGS = "shop/ratings.shop.svc.cluster.local"
ROOT = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))
TO_REVIEWS = [{"destination": {"host": "reviews"}}]


def virtual_service(
    spec: JSON, name: str = "vs", ns: str = "default", *, created: str | None = T0, version: str = "v1"
) -> JSON:
    meta: JSON = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": f"networking.istio.io/{version}",
        "kind": "VirtualService",
        "metadata": meta,
        "spec": {"hosts": ["reviews"], **spec},
    }


def services(*extra: JSON) -> list[JSON]:
    two_ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}]
    return [
        service("reviews", ports=[{"name": "http", "port": 9080}]),
        service("reviews-v1", cluster_ip="10.96.0.11", ports=[{"name": "http", "port": 9080}]),
        service("reviews-v2", cluster_ip="10.96.0.12", ports=[{"name": "http", "port": 9080}]),
        service("web", cluster_ip="10.96.0.13", ports=two_ports),
        service("ratings", "shop", cluster_ip="10.96.0.14", ports=[{"name": "http", "port": 9080}]),
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


def one_rule(http: JSON, **spec: Any) -> tuple[RouteRule, tuple[str, ...]]:
    routes, warnings = routes_of(virtual_service({"http": [http], **spec}))
    (value,) = routes.values()
    (rule,) = value.rules
    return rule, warnings


def _unvalidated(obj: JSON) -> tuple[dict[str, HttpRoute], tuple[str, ...]]:
    """Translation of an object the schema would refuse (translation must stand on its own)."""
    result = translate([*store(*services()), obj])
    return dict(result.routes), result.warnings


def with_warning(warnings: tuple[str, ...], *parts: str) -> None:
    assert any(all(p in w for p in parts) for w in warnings), (parts, warnings)


# --- a whole VirtualService ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_a_virtual_service_with_a_fault(version: str) -> None:
    obj = virtual_service(
        {
            "http": [
                {
                    "match": [{"headers": {"end-user": {"exact": "jason"}}}],
                    "fault": {"delay": {"fixedDelay": "7s", "percentage": {"value": 100.0}}},
                    "route": [{"destination": {"host": "reviews-v2"}}],
                },
                {"route": [{"destination": {"host": "reviews-v1"}}]},
            ]
        },
        version=version,
    )
    value = only(obj)
    assert value == HttpRoute(
        kind=VIRTUAL_SERVICE,
        name="vs",
        namespace="default",
        created=T0,
        service_key=REVIEWS,
        port=None,
        rules=(
            RouteRule(
                index=0,
                matches=(RouteMatch(headers=(HeaderMatch("end-user", VALUE_EXACT, "jason"),)),),
                backends=(BackendRef(V2, 9080, 100),),
                fault=FaultPolicy(delay=7.0, delay_percent=100.0),
            ),
            RouteRule(index=1, matches=(ROOT,), backends=(BackendRef(V1, 9080, 100),)),
        ),
    )
    assert value.key == f"default/VirtualService/vs/{REVIEWS}"
    assert value.route_key == "default/vs"


def test_result_versions_and_determinism() -> None:
    objects = [*services(), virtual_service({"http": [{"route": TO_REVIEWS}]})]
    a, b = translate(store(*objects)), translate(store(*reversed(objects)))
    assert a.routes == b.routes and a.versions == b.versions
    key = f"default/VirtualService/vs/{REVIEWS}"
    assert a.versions[f"rt/{key}"] == content_version(a.routes[key])


def test_an_unknown_api_version_is_ignored_with_a_warning() -> None:
    obj = virtual_service({"http": [{"route": TO_REVIEWS}]})
    obj["apiVersion"] = "networking.istio.io/v2"  # the store refuses it; translation must too
    routes, warnings = _unvalidated(obj)
    assert routes == {}
    with_warning(warnings, "VirtualService default/vs", "apiVersion")


# --- hosts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "reviews",
        "reviews.default",
        "reviews.default.svc",
        "reviews.default.svc.cluster.local",
        "Reviews.Default.svc.cluster.local.",  # case and a trailing dot do not matter
    ],
)
def test_host_forms_name_the_service(host: str) -> None:
    value = only(virtual_service({"hosts": [host], "http": [{"route": TO_REVIEWS}]}))
    assert value.service_key == REVIEWS


def test_a_short_name_is_resolved_in_the_namespace_of_the_virtual_service() -> None:
    obj = virtual_service(
        {"hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]}, ns="shop"
    )
    value = only(obj)
    assert (value.service_key, value.rules[0].backends) == (RATINGS, (BackendRef(RATINGS, 9080, 100),))


def test_host_key() -> None:
    assert host_key("reviews", "ns", CD) == "ns/reviews.ns.svc.cluster.local"
    assert host_key("reviews.other", "ns", CD) == "other/reviews.other.svc.cluster.local"
    assert (
        host_key("reviews.other.svc.example.org", "ns", "example.org")
        == "other/reviews.other.svc.example.org"
    )
    for other in (
        "*",
        "*.default.svc.cluster.local",
        "10.96.0.10",
        "reviews.default.svc.other.domain",
        "a..b",
        "",
    ):
        assert host_key(other, "ns", CD) is None, other


def test_several_hosts_give_one_value_each_and_a_repeated_host_once() -> None:
    obj = virtual_service(
        {"hosts": ["reviews", "web", "reviews.default.svc"], "http": [{"route": TO_REVIEWS}]}
    )
    routes, warnings = routes_of(obj)
    assert warnings == ()
    assert sorted(r.service_key for r in routes.values()) == [REVIEWS, WEB]
    assert len({r.rules for r in routes.values()}) == 1


@pytest.mark.parametrize(
    ("host", "warning"),
    [
        ("*.default.svc.cluster.local", "is a wildcard"),
        ("*", "is a wildcard"),
        ("httpbin.org", "not a Service of the cluster"),
        ("missing", "not a Service of the cluster"),
        ("10.96.0.10", "not a Service of the cluster"),
    ],
)
def test_hosts_that_are_not_services_are_skipped_with_a_warning(host: str, warning: str) -> None:
    routes, warnings = routes_of(virtual_service({"hosts": [host], "http": [{"route": TO_REVIEWS}]}))
    assert routes == {}
    with_warning(warnings, "VirtualService default/vs", repr(host), warning)


def test_a_service_in_another_namespace_is_skipped() -> None:
    routes, warnings = routes_of(
        virtual_service({"hosts": ["ratings.shop"], "http": [{"route": TO_REVIEWS}]})
    )
    assert routes == {}
    with_warning(warnings, "VirtualService default/vs", RATINGS, "another namespace")


def test_a_virtual_service_in_the_namespace_of_the_services_waypoint_applies() -> None:
    """As Istio's getVirtualServiceForWaypoint: the Service's namespace or its waypoint's."""
    labelled = service(
        "ratings",
        "shop",
        cluster_ip="10.96.0.14",
        ports=[{"name": "http", "port": 9080}],
        labels={"istio.io/use-waypoint": "waypoint", "istio.io/use-waypoint-namespace": "infra"},
    )
    objects = [s for s in services() if s["metadata"]["name"] != "ratings"]
    obj = virtual_service(
        {
            "hosts": ["ratings.shop.svc.cluster.local"],
            "http": [{"route": [{"destination": {"host": "ratings.shop"}}]}],
        },
        ns="infra",
    )
    result = run(*objects, labelled, waypoint("waypoint", "infra", allowed_from="All"), obj)
    (value,) = result.routes.values()
    assert (value.namespace, value.service_key) == ("infra", RATINGS)
    assert not [w for w in result.warnings if "VirtualService" in w]


@pytest.mark.parametrize(
    ("gateways", "applies"),
    [
        (None, True),
        (["mesh"], True),
        (["ingress", "mesh"], True),
        (["ingress"], False),
        (["istio-system/gw"], False),
    ],
)
def test_gateways_decide_whether_the_mesh_gets_the_routes(gateways: list[str] | None, applies: bool) -> None:
    spec: JSON = {"http": [{"route": TO_REVIEWS}]}
    if gateways is not None:
        spec["gateways"] = gateways
    routes, warnings = routes_of(virtual_service(spec))
    assert bool(routes) is applies
    assert warnings == (), "a VirtualService for gateways belongs to another controller: no warning"


# --- matches --------------------------------------------------------------------------------------


def match_of(match: JSON) -> RouteMatch:
    rule, warnings = one_rule({"match": [match], "route": TO_REVIEWS})
    assert warnings == ()
    (found,) = rule.matches
    return found


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ({"exact": "/a/b"}, PathMatch(PATH_EXACT, "/a/b")),
        ({"prefix": "/"}, PathMatch(PATH_PREFIX, "/")),
        ({"prefix": "/api"}, PathMatch(PATH_STRING_PREFIX, "/api")),
        ({"prefix": "/a.b/"}, PathMatch(PATH_STRING_PREFIX, "/a.b/")),
        ({"regex": "/v[0-9]+/.*"}, PathMatch(PATH_REGEX, "/v[0-9]+/.*")),
    ],
)
def test_uri(uri: JSON, expected: PathMatch) -> None:
    assert match_of({"uri": uri}) == RouteMatch(path=expected)


def test_a_uri_prefix_is_a_plain_string_prefix() -> None:
    rule, warnings = one_rule({"match": [{"uri": {"prefix": "/foo"}}], "route": TO_REVIEWS})
    assert warnings == ()
    route = HttpRoute(VIRTUAL_SERVICE, "vs", "default", T0, REVIEWS, None, (rule,))
    table = route_table([route], 9080)
    for path, expected in [
        ("/foo", True),
        ("/foobar", True),
        ("/foo/x", True),
        ("/fo", False),
        ("/x/foo", False),
    ]:
        assert (table.select(RouteRequest("GET", path)) is not None) is expected, path


@pytest.mark.parametrize(
    ("uri", "hits", "misses"),
    [
        ({"exact": "/Api"}, ["/api", "/API", "/Api"], ["/api/x"]),
        ({"prefix": "/Api"}, ["/api", "/APIx", "/api/v1"], ["/ap"]),
        ({"regex": "/Api"}, ["/Api"], ["/api"]),  # Istio: ignoreUriCase is for exact and prefix only
    ],
)
def test_ignore_uri_case(uri: JSON, hits: list[str], misses: list[str]) -> None:
    path = match_of({"uri": uri, "ignoreUriCase": True}).path
    assert path is not None and path.kind == PATH_REGEX
    assert all(re.fullmatch(path.value, p) for p in hits)
    assert not any(re.fullmatch(path.value, p) for p in misses)


def test_method_authority_headers_and_query() -> None:
    found = match_of(
        {
            "method": {"exact": "POST"},
            "authority": {"prefix": "reviews"},
            "headers": {
                "X-User": {"exact": "jason"},
                "x-tier": {"regex": "gold|silver"},
                "x-version": {"prefix": "v1."},
                "x-debug": {},
                "uri": {"exact": "ignored"},
            },
            "queryParams": {
                "id": {"exact": "7"},
                "Q": {"regex": "[a-z]+"},
                "lang": {"prefix": "en"},
                "flag": {},
            },
        }
    )
    assert found == RouteMatch(
        path=None,
        method="POST",
        headers=(
            HeaderMatch("host", VALUE_REGEX, "reviews.*"),
            HeaderMatch("x-user", VALUE_EXACT, "jason"),
            HeaderMatch("x-tier", VALUE_REGEX, "gold|silver"),
            HeaderMatch("x-version", VALUE_REGEX, re.escape("v1.") + ".*"),
            HeaderMatch("x-debug", VALUE_REGEX, ".*"),
        ),
        query=(
            QueryMatch("id", VALUE_EXACT, "7"),
            QueryMatch("Q", VALUE_REGEX, "[a-z]+"),
            QueryMatch("lang", VALUE_REGEX, "en.*"),
            QueryMatch("flag", VALUE_REGEX, ".*"),
        ),
    )


def test_several_matches_are_alternatives_and_none_matches_everything() -> None:
    rule, _ = one_rule({"match": [{"uri": {"exact": "/a"}}, {"uri": {"exact": "/b"}}], "route": TO_REVIEWS})
    assert rule.matches == (
        RouteMatch(path=PathMatch(PATH_EXACT, "/a")),
        RouteMatch(path=PathMatch(PATH_EXACT, "/b")),
    )
    everything, _ = one_rule({"route": TO_REVIEWS})
    assert everything.matches == (ROOT,)
    named_only, _ = one_rule({"match": [{"name": "all"}], "route": TO_REVIEWS})
    assert named_only.matches == (ROOT,)


@pytest.mark.parametrize(
    ("match", "warning"),
    [
        ({"withoutHeaders": {"x": {"exact": "1"}}}, "withoutHeaders is not supported"),
        ({"scheme": {"exact": "http"}}, "scheme is not supported"),
        ({"sourceLabels": {"app": "productpage"}}, "sourceLabels is not supported"),
        ({"sourceNamespace": "shop"}, "sourceNamespace is not supported"),
        ({"method": {"prefix": "P"}}, "method matches other than a non-empty exact"),
        ({"method": {"regex": "GET|HEAD"}}, "method matches other than"),
        ({"uri": {"exact": "relative"}}, "is not an absolute path"),
        ({"uri": {"regex": "("}}, "is not a valid regular expression"),
        ({"headers": {"x": {"regex": "["}}}, "header x regex"),
        ({"headers": {":path": {"exact": "/"}}}, "not an HTTP token"),
        ({"uri": {"exact": "/a", "prefix": "/b"}}, "only one may be set"),
    ],
)
def test_matches_ambit_cannot_keep_are_dropped_with_a_warning(match: JSON, warning: str) -> None:
    obj = virtual_service({"http": [{"match": [match, {"uri": {"exact": "/ok"}}], "route": TO_REVIEWS}]})
    routes, warnings = _unvalidated(obj)  # some of these the schema refuses already
    (value,) = routes.values()
    assert value.rules[0].matches == (RouteMatch(path=PathMatch(PATH_EXACT, "/ok")),), (
        "the match is not widened"
    )
    with_warning(warnings, "VirtualService default/vs http[0] match[0]", warning, "that match is ignored")


def test_a_rule_left_without_a_match_is_dropped() -> None:
    obj = virtual_service(
        {
            "http": [
                {"name": "bad", "match": [{"scheme": {"exact": "https"}}], "route": TO_REVIEWS},
                {"route": TO_REVIEWS},
            ]
        }
    )
    routes, warnings = routes_of(obj)
    (value,) = routes.values()
    assert [r.index for r in value.rules] == [1]
    with_warning(warnings, "http[0] (bad): no usable match; the rule is ignored")


def test_matches_for_gateways_only_are_left_out_silently() -> None:
    obj = virtual_service(
        {
            "gateways": ["mesh", "ingress"],
            "http": [
                {"match": [{"gateways": ["ingress"], "uri": {"prefix": "/admin"}}], "route": TO_REVIEWS},
                {
                    "match": [{"gateways": ["mesh"], "uri": {"exact": "/a"}}, {"gateways": ["ingress"]}],
                    "route": TO_REVIEWS,
                },
            ],
        }
    )
    value = only(obj)
    assert [(r.index, r.matches) for r in value.rules] == [
        (1, (RouteMatch(path=PathMatch(PATH_EXACT, "/a")),))
    ]


def test_a_match_port_splits_the_route_by_service_port() -> None:
    obj = virtual_service(
        {
            "hosts": ["web"],
            "http": [
                {
                    "match": [{"port": 9090, "uri": {"exact": "/grpc"}}, {"uri": {"exact": "/any"}}],
                    "route": TO_REVIEWS,
                },
                {"match": [{"port": 80}], "route": TO_REVIEWS},
                {"match": [{"port": 8443}], "route": TO_REVIEWS},
            ],
        }
    )
    routes, warnings = routes_of(obj)
    by_port = {r.port: r for r in routes.values()}
    assert set(by_port) == {80, 9090}
    assert [(r.index, r.matches) for r in by_port[80].rules] == [
        (0, (RouteMatch(path=PathMatch(PATH_EXACT, "/any")),)),
        (1, (ROOT,)),
    ]
    assert [(r.index, r.matches) for r in by_port[9090].rules] == [
        (
            0,
            (RouteMatch(path=PathMatch(PATH_EXACT, "/grpc")), RouteMatch(path=PathMatch(PATH_EXACT, "/any"))),
        ),
    ]
    assert by_port[80].key == f"default/VirtualService/vs/{WEB}:80"
    with_warning(warnings, "names port 8443", WEB)


# --- destinations ---------------------------------------------------------------------------------


def dest(host: str, weight: int | None = None, port: int | None = None, **extra: Any) -> JSON:
    destination: JSON = {"host": host, **extra}
    if port is not None:
        destination["port"] = {"number": port}
    entry: JSON = {"destination": destination}
    if weight is not None:
        entry["weight"] = weight
    return entry


def test_weights() -> None:
    rule, warnings = one_rule({"route": [dest("reviews-v1", 75), dest("reviews-v2", 25)]})
    assert (rule.backends, rule.invalid_weight, warnings) == (
        (BackendRef(V1, 9080, 75), BackendRef(V2, 9080, 25)),
        0,
        (),
    )


@pytest.mark.parametrize("weight", [None, 0])
def test_the_only_destination_gets_every_request(weight: int | None) -> None:
    rule, _ = one_rule({"route": [dest("reviews-v1", weight)]})
    assert rule.backends == (BackendRef(V1, 9080, 100),)


def test_a_zero_or_unset_weight_among_several_is_never_used() -> None:
    rule, warnings = one_rule({"route": [dest("reviews-v1", 0), dest("reviews-v2", 3), dest("reviews")]})
    assert (rule.backends, warnings) == ((BackendRef(V2, 9080, 3),), ())


def test_ports() -> None:
    rule, warnings = one_rule({"route": [dest("web", 1, port=9090), dest("reviews-v1", 1, port=9080)]})
    assert (rule.backends, warnings) == ((BackendRef(WEB, 9090, 1), BackendRef(V1, 9080, 1)), ())


def test_a_destination_in_another_namespace_needs_no_grant() -> None:
    rule, warnings = one_rule({"route": [dest("ratings.shop.svc.cluster.local")]})
    assert (rule.backends, warnings) == ((BackendRef(RATINGS, 9080, 100),), ())


@pytest.mark.parametrize(
    ("entry", "warning"),
    [
        (dest("missing", 30), "names no Service of the cluster"),
        (dest("web", 30), "has no port.number and the Service has 2 ports"),
        (dest("reviews-v1", 30, port=80), "port 80 is not a port of the Service"),
    ],
)
def test_unusable_destinations_answer_500_for_their_share(entry: JSON, warning: str) -> None:
    rule, warnings = one_rule({"route": [entry, dest("reviews-v2", 70)]})
    assert (rule.backends, rule.invalid_weight) == ((BackendRef(V2, 9080, 70),), 30)
    with_warning(warnings, "VirtualService default/vs http[0] route[0]", warning, "(weight 30) answers 500")


def reviews_subsets(*names: str, host: str = "reviews") -> JSON:
    """A DestinationRule defining subsets ``names`` (labels version=<name>) of ``host``."""
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": f"{host}-subsets", "namespace": "default"},
        "spec": {"host": host, "subsets": [{"name": n, "labels": {"version": n}} for n in names]},
    }


def test_subset_destinations_are_kept() -> None:
    """bookinfo's reviews: a weighted split between subsets of one Service."""
    vs = virtual_service(
        {"http": [{"route": [dest("reviews", 50, subset="v1"), dest("reviews", 50, subset="v3")]}]}
    )
    routes, warnings = routes_of(vs, reviews_subsets("v1", "v2", "v3"))
    assert warnings == ()
    (route,) = routes.values()
    (rule,) = route.rules
    assert rule.invalid_weight == 0
    assert rule.backends == (
        BackendRef(REVIEWS, 9080, 50, subset="v1"),
        BackendRef(REVIEWS, 9080, 50, subset="v3"),
    )


@pytest.mark.parametrize(
    "defined",
    [
        pytest.param((), id="no DestinationRule"),
        pytest.param(("v2",), id="another subset"),
        pytest.param(("v1",), id="a subset of another Service"),
    ],
)
def test_an_undefined_subset_is_kept_with_a_warning(defined: tuple[str, ...]) -> None:
    """Istio routes it to a cluster that does not exist (503 NC at request time)."""
    host = "reviews-v1" if defined == ("v1",) else "reviews"
    objects = [reviews_subsets(*defined, host=host)] if defined else []
    routes, warnings = routes_of(
        virtual_service({"http": [{"route": [dest("reviews", subset="v1")]}]}), *objects
    )
    (route,) = routes.values()
    (rule,) = route.rules
    assert (rule.backends, rule.invalid_weight) == ((BackendRef(REVIEWS, 9080, 100, subset="v1"),), 0)
    assert warnings == (
        f"VirtualService default/vs http[0] route[0] (reviews): subset 'v1' is not defined by a "
        f"DestinationRule of Service {REVIEWS}; its requests will answer 503 (NC: no such cluster, as in "
        "Istio)",
    )


def test_a_mirror_keeps_its_subset() -> None:
    http = {"mirror": {"host": "reviews", "subset": "v2"}, "route": [dest("reviews", subset="v1")]}
    routes, warnings = routes_of(virtual_service({"http": [http]}), reviews_subsets("v1"))
    (route,) = routes.values()
    assert route.rules[0].mirrors == (MirrorFilter(BackendRef(REVIEWS, 9080, subset="v2")),)
    assert route.rules[0].backends == (BackendRef(REVIEWS, 9080, 100, subset="v1"),)
    assert warnings == (
        "VirtualService default/vs http[0] mirror (reviews): subset 'v2' is not defined by a "
        f"DestinationRule of Service {REVIEWS}; its requests will answer 503 (NC: no such cluster, as in "
        "Istio)",
    )


def test_a_rule_without_a_route_answers_500() -> None:
    rule, warnings = one_rule({"match": [{"uri": {"exact": "/x"}}]})
    assert (rule.backends, rule.invalid_weight) == ((), 0)
    with_warning(warnings, "http[0]: no route destination; requests it takes answer 500")


def test_headers_of_the_only_destination_are_merged_into_the_rule() -> None:
    rule, warnings = one_rule(
        {
            "headers": {
                "request": {"set": {"x-a": "rule", "x-b": "rule"}, "add": {"x-c": "1"}, "remove": ["x-d"]}
            },
            "route": [
                {
                    "destination": {"host": "reviews-v1"},
                    "headers": {
                        "request": {"set": {"x-a": "dst"}, "add": {"x-c": "2"}, "remove": ["x-e", "x-d"]},
                        "response": {"remove": ["server"]},
                    },
                }
            ],
        }
    )
    assert warnings == ()
    assert rule.request_headers == HeaderModifier(
        set=(("x-a", "dst"), ("x-b", "rule")), add=(("x-c", "1"), ("x-c", "2")), remove=("x-d", "x-e")
    )
    assert rule.response_headers == HeaderModifier(remove=("server",))


def test_headers_on_one_of_several_destinations_are_ignored_with_a_warning() -> None:
    entry = {**dest("reviews-v1", 50), "headers": {"request": {"set": {"x-a": "1"}}}}
    rule, warnings = one_rule({"route": [entry, dest("reviews-v2", 50)]})
    assert rule.request_headers is None
    with_warning(warnings, "route[0]", "headers on one of several destinations are not supported yet")


# --- timeouts, retries, headers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("10s", 10.0), ("1.5s", 1.5), ("500ms", 0.5), ("1h30m", 5400.0), ("0s", None)]
)
def test_timeout(value: str, seconds: float | None) -> None:
    rule, warnings = one_rule({"timeout": value, "route": TO_REVIEWS})
    assert (rule.request_timeout, warnings) == (seconds, ())


def test_parse_duration() -> None:
    assert parse_duration("250us") == pytest.approx(0.00025)
    assert parse_duration("1m0.5s") == 60.5
    for bad in ("", "10", "s", "-1s", "1d", "1.2.3s"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_bad_timeout_is_ignored_with_a_warning() -> None:
    obj = virtual_service({"http": [{"timeout": "soon", "route": TO_REVIEWS}]})
    routes, warnings = _unvalidated(obj)
    assert next(iter(routes.values())).rules[0].request_timeout is None
    with_warning(warnings, "http[0]: timeout 'soon' is not a duration")


@pytest.mark.parametrize(
    ("retries", "policy", "per_try"),
    [
        (None, None, None),  # unset: the mesh default
        ({"attempts": 0, "perTryTimeout": "1s"}, RetryPolicy(attempts=0), None),
        ({"perTryTimeout": "1s"}, RetryPolicy(attempts=0), None),  # attempts unset is 0: disabled
        ({"attempts": 3}, RetryPolicy(attempts=3), None),  # Istio's default conditions
        (
            {"attempts": 3, "perTryTimeout": "2s", "backoff": "100ms"},
            RetryPolicy(attempts=3, backoff=0.1),
            2.0,
        ),
        (
            {"attempts": 2, "retryOn": "gateway-error,connect-failure,refused-stream"},
            RetryPolicy(attempts=2, codes=(502, 503, 504), retriable_grpc_statuses=()),
            None,
        ),
        (
            {"attempts": 2, "retryOn": "503,unavailable"},
            RetryPolicy(
                attempts=2,
                codes=(503,),
                retry_on_connect_failure=False,
                retry_on_refused_stream=False,
                retriable_grpc_statuses=(14,),
            ),
            None,
        ),
    ],
)
def test_retries(retries: JSON | None, policy: RetryPolicy | None, per_try: float | None) -> None:
    http: JSON = {"route": TO_REVIEWS}
    if retries is not None:
        http["retries"] = retries
    rule, warnings = one_rule(http)
    assert (rule.retry, rule.backend_timeout, warnings) == (policy, per_try, ())


NONE = {"retry_on_connect_failure": False, "retry_on_refused_stream": False, "retriable_grpc_statuses": ()}


@pytest.mark.parametrize(
    ("value", "expected", "warning"),
    [
        ("5xx", RetryPolicy(2, codes=tuple(range(500, 600)), retriable_grpc_statuses=()), None),
        ("gateway-error", RetryPolicy(2, codes=(502, 503, 504), retriable_grpc_statuses=()), None),
        ("connect-failure", RetryPolicy(2, **{**NONE, "retry_on_connect_failure": True}), None),
        ("refused-stream", RetryPolicy(2, **{**NONE, "retry_on_refused_stream": True}), None),
        ("reset-before-request", RetryPolicy(2, retriable_grpc_statuses=()), None),
        ("reset", RetryPolicy(2, retriable_grpc_statuses=()), "retryOn reset retries connect failures"),
        ("retriable-4xx", RetryPolicy(2, codes=(409,), **NONE), None),
        ("retriable-status-codes,503, 502", RetryPolicy(2, codes=(502, 503), **NONE), None),
        (
            "cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
            RetryPolicy(2, **{**NONE, "retriable_grpc_statuses": (1, 4, 8, 13, 14)}),
            None,
        ),
        ("retriable-headers", RetryPolicy(2, **NONE), "retryOn 'retriable-headers' is not supported"),
        ("envoy-ratelimited", RetryPolicy(2, **NONE), "retryOn 'envoy-ratelimited' is not supported"),
        ("700", RetryPolicy(2, **NONE), "retryOn status 700 is not in 100..599"),
    ],
)
def test_retry_on(value: str, expected: RetryPolicy, warning: str | None) -> None:
    warnings: list[str] = []
    assert retry_on(2, value, "VirtualService default/vs http[0] retries", warnings) == expected
    if warning is None:
        assert warnings == []
    else:
        with_warning(tuple(warnings), "VirtualService default/vs http[0] retries", warning)


def test_unsupported_retry_fields_warn() -> None:
    rule, warnings = one_rule(
        {
            "retries": {"attempts": 2, "retryRemoteLocalities": True, "retryIgnorePreviousHosts": False},
            "route": TO_REVIEWS,
        }
    )
    assert rule.retry == RetryPolicy(attempts=2)
    with_warning(warnings, "retries: retryRemoteLocalities is not supported")
    with_warning(warnings, "retries: retryIgnorePreviousHosts false is not supported")


def test_header_operations() -> None:
    rule, warnings = one_rule(
        {
            "headers": {
                "request": {
                    "set": {"X-A": "1", "host": "other"},
                    "add": {"x-b": "2", ":path": "/x"},
                    "remove": ["X-C"],
                },
                "response": {"set": {"x-bad": "a\r\nb"}, "remove": ["server"]},
            },
            "route": TO_REVIEWS,
        }
    )
    assert rule.request_headers == HeaderModifier(set=(("x-a", "1"),), add=(("x-b", "2"),), remove=("x-c",))
    assert rule.response_headers == HeaderModifier(remove=("server",))
    with_warning(warnings, "headers.request: setting host (an authority rewrite) is not supported yet")
    with_warning(warnings, "headers.request: header name ':path' is not valid")
    with_warning(warnings, "headers.response: the value of header x-bad contains CR, LF or NUL")


# --- faults ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            {"delay": {"fixedDelay": "7s", "percentage": {"value": 100}}},
            FaultPolicy(delay=7.0, delay_percent=100.0),
        ),
        (
            {"delay": {"fixedDelay": "500ms", "percentage": {"value": 0.1}}},
            FaultPolicy(delay=0.5, delay_percent=0.1),
        ),
        (
            {"delay": {"fixedDelay": "2s", "percent": 30}},
            FaultPolicy(delay=2.0, delay_percent=30.0),
        ),  # legacy
        (
            {"delay": {"fixedDelay": "2s", "percentage": {"value": 40}, "percent": 30}},
            FaultPolicy(delay=2.0, delay_percent=40.0),  # percentage wins over the deprecated percent
        ),
        (
            {"abort": {"httpStatus": 500, "percentage": {"value": 50}}},
            FaultPolicy(abort_status=500, abort_percent=50.0),
        ),
        (
            {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 25.5}}},
            FaultPolicy(abort_grpc_status=14, abort_percent=25.5),
        ),
        (
            {"abort": {"grpcStatus": "OK", "percentage": {"value": 1}}},
            FaultPolicy(abort_grpc_status=0, abort_percent=1.0),
        ),
        (
            {
                "delay": {"fixedDelay": "1s", "percentage": {"value": 10}},
                "abort": {"httpStatus": 418, "percentage": {"value": 20}},
            },
            FaultPolicy(delay=1.0, delay_percent=10.0, abort_status=418, abort_percent=20.0),
        ),
    ],
)
def test_faults(fault: JSON, expected: FaultPolicy) -> None:
    rule, warnings = one_rule({"fault": fault, "route": TO_REVIEWS})
    assert (rule.fault, warnings) == (expected, ())


@pytest.mark.parametrize(
    ("fault", "expected", "warning"),
    [
        (
            {"delay": {"fixedDelay": "1s"}},
            FaultPolicy(delay=1.0),
            "fault.delay: no percentage, so no request gets it",
        ),
        ({"abort": {"httpStatus": 503}}, FaultPolicy(abort_status=503), "fault.abort: no percentage"),
        ({"abort": {"httpStatus": 99, "percentage": {"value": 5}}}, None, "httpStatus 99 is not in 200..599"),
        (
            {"abort": {"grpcStatus": "14", "percentage": {"value": 5}}},
            None,
            "grpcStatus '14' is not a gRPC status name",
        ),
        (
            {"abort": {"http2Error": "REFUSED_STREAM", "percentage": {"value": 5}}},
            None,
            "http2Error is not supported",
        ),
        (
            {"delay": {"exponentialDelay": "1s", "percentage": {"value": 5}}},
            None,
            "exponentialDelay is not supported",
        ),
        (
            {"abort": {"httpStatus": 503, "grpcStatus": "UNAVAILABLE", "percentage": {"value": 5}}},
            FaultPolicy(abort_status=503, abort_percent=5.0),
            "both httpStatus and grpcStatus are set; httpStatus is used",
        ),
        ({"delay": {"fixedDelay": "0s", "percentage": {"value": 5}}}, None, "no fixedDelay above zero"),
    ],
)
def test_faults_with_a_warning(fault: JSON, expected: FaultPolicy | None, warning: str) -> None:
    obj = virtual_service({"http": [{"fault": fault, "route": TO_REVIEWS}]})
    routes, warnings = _unvalidated(obj)
    (value,) = routes.values()
    assert value.rules[0].fault == expected
    with_warning(warnings, "VirtualService default/vs http[0] fault.", warning)


# --- not supported yet ----------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["corsPolicy"])
def test_unsupported_fields_leave_the_rest_of_the_rule(field: str) -> None:
    rule, warnings = one_rule({field: {"allowOrigins": [{"exact": "x"}]}, "route": TO_REVIEWS})
    assert rule.backends == (BackendRef(REVIEWS, 9080, 100),)
    with_warning(
        warnings,
        f"VirtualService default/vs http[0]: {field} is not supported yet; the rest of the rule is kept",
    )


@pytest.mark.parametrize(
    "field, value",
    [("directResponse", {"status": 503}), ("delegate", {"name": "other"})],
)
def test_rules_that_cannot_stand_without_an_unsupported_field_are_dropped(field: str, value: JSON) -> None:
    obj = virtual_service(
        {"http": [{"match": [{"uri": {"exact": "/old"}}], field: value}, {"route": TO_REVIEWS}]}
    )
    routes, warnings = routes_of(obj)
    (route,) = routes.values()
    assert [r.index for r in route.rules] == [1]
    with_warning(warnings, f"http[0]: {field} is not supported yet; the rule cannot stand without it")


def test_tcp_and_tls_routes_are_ignored_with_a_warning() -> None:
    tcp = [{"route": [{"destination": {"host": "reviews"}}]}]
    tls = [{"match": [{"sniHosts": ["reviews"]}], "route": [{"destination": {"host": "reviews"}}]}]
    routes, warnings = routes_of(virtual_service({"http": [{"route": TO_REVIEWS}], "tcp": tcp, "tls": tls}))
    assert len(routes) == 1
    with_warning(warnings, "VirtualService default/vs: tcp routes are not supported yet")
    with_warning(warnings, "VirtualService default/vs: tls routes are not supported yet")


# --- several VirtualServices, and the Gateway API -------------------------------------------------


def test_several_virtual_services_on_one_host_are_all_sent() -> None:
    a = virtual_service(
        {"http": [{"match": [{"uri": {"prefix": "/a"}}], "route": TO_REVIEWS}]}, name="a", created=T1
    )
    b = virtual_service(
        {"http": [{"match": [{"uri": {"prefix": "/b"}}], "route": TO_REVIEWS}]}, name="b", created=T0
    )
    routes, warnings = routes_of(a, b)
    assert warnings == ()
    assert sorted(routes) == [f"default/VirtualService/a/{REVIEWS}", f"default/VirtualService/b/{REVIEWS}"]
    assert {r.created for r in routes.values()} == {T0, T1}


def http_route(name: str, parent: str) -> JSON:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": T0},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": parent}],
            "rules": [{"backendRefs": [{"name": "reviews-v1", "port": 9080}]}],
        },
    }


def test_a_service_with_a_virtual_service_ignores_its_gateway_api_routes() -> None:
    """ambit's one rule for mixing the APIs on a Service: the VirtualService wins, with a warning."""
    objects = [
        http_route("on-reviews", "reviews"),
        http_route("on-web", "web"),
        virtual_service({"http": [{"route": TO_REVIEWS}]}),
    ]
    routes, warnings = routes_of(*objects)
    assert {(r.kind, r.name) for r in routes.values()} == {(VIRTUAL_SERVICE, "vs"), (HTTP_ROUTE, "on-web")}
    with_warning(
        warnings,
        f"HTTPRoute default/on-reviews: Service {REVIEWS} has VirtualService default/vs",
        "does not mix VirtualService and Gateway API routes",
        "ignored",
    )
    assert not [w for w in warnings if "on-web" in w]
    without, _ = routes_of(*objects[:2])
    assert {r.name for r in without.values()} == {"on-reviews", "on-web"}, (
        "removing the VirtualService brings them back"
    )


def test_a_virtual_service_for_gateways_only_does_not_hide_gateway_api_routes() -> None:
    objects = [
        http_route("on-reviews", "reviews"),
        virtual_service({"gateways": ["ingress"], "http": [{"route": TO_REVIEWS}]}),
    ]
    routes, warnings = routes_of(*objects)
    assert [r.name for r in routes.values()] == ["on-reviews"]
    assert warnings == ()


def test_gateway_api_and_virtual_service_keys_never_collide() -> None:
    route = http_route("same", "web")
    vs = virtual_service({"hosts": ["reviews"], "http": [{"route": TO_REVIEWS}]}, name="same")
    routes, _ = routes_of(route, vs)
    assert sorted(routes) == [f"default/HTTPRoute/same/{WEB}", f"default/VirtualService/same/{REVIEWS}"]


def test_a_virtual_service_with_no_usable_http_rule_takes_nothing_from_the_gateway_api() -> None:
    tcp_only = virtual_service(
        {"http": [], "tcp": [{"route": [{"destination": {"host": "reviews"}}]}]}, name="tcp"
    )
    redirect_only = virtual_service({"http": [{"directResponse": {"status": 301}}]}, name="redirect")
    for obj in (tcp_only, redirect_only):
        routes, warnings = routes_of(http_route("on-reviews", "reviews"), obj)
        assert [r.name for r in routes.values()] == ["on-reviews"]
        assert not [w for w in warnings if "does not mix" in w]
    _, warnings = routes_of(redirect_only)
    with_warning(
        warnings,
        "VirtualService default/redirect: no http rule the waypoint can apply; the VirtualService is ignored",
    )


def test_a_port_without_a_rule_gets_no_value() -> None:
    obj = virtual_service({"hosts": ["web"], "http": [{"match": [{"port": 9090}], "route": TO_REVIEWS}]})
    value = only(obj)
    assert (value.port, value.key) == (9090, f"default/VirtualService/vs/{WEB}:9090")


# --- redirect, rewrite, mirrors -------------------------------------------------------------------

OLD = [{"uri": {"prefix": "/old"}}]


@pytest.mark.parametrize(
    ("redirect", "expected"),
    [
        (
            {"uri": "/v2"},
            RedirectFilter(301, derive_port=PORT_FROM_HOST, path=PathModifier(REPLACE_FULL_PATH, "/v2")),
        ),
        (
            {"authority": "new.example"},
            RedirectFilter(301, hostname="new.example", derive_port=PORT_FROM_HOST),
        ),
        (
            {"prefixRewrite": "/new"},
            RedirectFilter(301, derive_port=PORT_FROM_HOST, path=PathModifier(PREFIX_REWRITE, "/new")),
        ),
        ({"scheme": "https"}, RedirectFilter(301, scheme="https", derive_port=PORT_FROM_HOST)),
        ({"port": 8443}, RedirectFilter(301, port=8443, derive_port=PORT_FROM_HOST)),
        ({"derivePort": "FROM_PROTOCOL_DEFAULT"}, RedirectFilter(301, derive_port=PORT_FROM_SCHEME)),
        ({"derivePort": "FROM_REQUEST_PORT"}, RedirectFilter(301, derive_port=PORT_FROM_LISTENER)),
        (
            {"uri": "/v2", "redirectCode": 0},
            RedirectFilter(301, derive_port=PORT_FROM_HOST, path=PathModifier(REPLACE_FULL_PATH, "/v2")),
        ),
        *[
            (
                {"uri": "/v2", "redirectCode": code},
                RedirectFilter(code, derive_port=PORT_FROM_HOST, path=PathModifier(REPLACE_FULL_PATH, "/v2")),
            )
            for code in (302, 303, 307, 308)
        ],
    ],
)
def test_redirect(redirect: JSON, expected: RedirectFilter) -> None:
    rule, warnings = one_rule({"match": OLD, "redirect": redirect})
    assert warnings == ()
    assert rule == RouteRule(
        0, (RouteMatch(path=PathMatch(PATH_STRING_PREFIX, "/old")),), (), redirect=expected
    )


def test_istio_redirect_locations() -> None:
    """istio/api HTTPRedirect's own examples, through the waypoint's function."""
    rule, _ = one_rule(
        {
            "match": [{"uri": {"exact": "/v1/getProductRatings"}}],
            "redirect": {"uri": "/v1/bookRatings", "authority": "newratings.default.svc.cluster.local"},
        }
    )
    assert rule.redirect is not None
    where = redirect_location(
        rule.redirect, matched=rule.matches[0].path, scheme="http", host="ratings:9080", port=9080,
        path_and_query="/v1/getProductRatings?x=1",
    )  # fmt: skip
    assert where == "http://newratings.default.svc.cluster.local/v1/bookRatings?x=1", (
        "authority: no port kept"
    )
    rule, _ = one_rule(
        {
            "match": [{"uri": {"prefix": "/foo/"}}],
            "redirect": {"authority": "foo.example.com", "prefixRewrite": "/"},
        }
    )
    assert rule.redirect is not None
    where = redirect_location(
        rule.redirect, matched=rule.matches[0].path, scheme="http", host="example.com", port=80,
        path_and_query="/foo/bar",
    )  # fmt: skip
    assert where == "http://foo.example.com/bar"


def test_a_redirect_rule_answers_itself() -> None:
    http = {
        "match": OLD,
        "redirect": {"uri": "/new"},
        "route": TO_REVIEWS,
        "rewrite": {"uri": "/x"},
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
        "mirror": {"host": "reviews-v2"},
        "headers": {"response": {"set": {"x-moved": "1"}}},
    }
    rule, warnings = one_rule(http)
    assert rule.redirect is not None and rule.redirect.path == PathModifier(REPLACE_FULL_PATH, "/new")
    assert (rule.backends, rule.rewrite, rule.fault, rule.mirrors) == ((), None, None, ())
    assert rule.response_headers == HeaderModifier(set=(("x-moved", "1"),))
    for field in ("route", "rewrite", "fault", "mirror"):
        with_warning(warnings, f"http[0]: {field} is not used: a rule with a redirect answers itself")


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        ({"match": OLD, "redirect": {"uri": "/a", "prefixRewrite": "/b"}}, "sets both uri and prefixRewrite"),
        (
            {"match": [{"uri": {"exact": "/old"}}], "redirect": {"prefixRewrite": "/b"}},
            "needs every uri match of the rule to be a prefix",
        ),
        (
            {
                "match": [{"uri": {"prefix": "/Old"}, "ignoreUriCase": True}],
                "redirect": {"prefixRewrite": "/b"},
            },
            "ignoreUriCase prefix match is not supported",
        ),
        ({"match": OLD, "redirect": {"redirectCode": 300, "uri": "/a"}}, "status code 300 is not one of"),
        ({"match": OLD, "redirect": {"redirectCode": 404, "uri": "/a"}}, "status code 404"),
        ({"match": OLD, "redirect": {"scheme": "ftp"}}, "scheme 'ftp' is not http or https"),
        ({"match": OLD, "redirect": {"uri": "relative"}}, "path 'relative' is not absolute"),
        ({"match": OLD, "redirect": {"uri": "/a?b=1"}}, "non-ASCII character, '?' or '#'"),
        ({"match": OLD, "redirect": {"authority": "a b"}}, "authority 'a b' is not a host name"),
        ({"match": OLD, "redirect": {}}, "changes nothing"),
        ({"match": OLD, "redirect": {"uri": ""}}, "changes nothing"),
    ],
)
def test_a_redirect_that_cannot_be_applied_drops_the_rule(http: JSON, problem: str) -> None:
    routes, warnings = routes_of(virtual_service({"http": [http, {"route": TO_REVIEWS}]}))
    (route,) = routes.values()
    assert [r.index for r in route.rules] == [1]
    with_warning(warnings, "VirtualService default/vs http[0]: redirect ", problem, "; the rule is ignored")


def test_a_rule_with_only_a_redirect_makes_the_virtual_service_usable() -> None:
    value = only(virtual_service({"http": [{"redirect": {"uri": "/v2"}}]}))
    (rule,) = value.rules
    assert rule.matches == (ROOT,) and rule.backends == () and rule.redirect is not None


@pytest.mark.parametrize(
    ("match", "target", "rewritten"),
    [
        # Envoy's prefix_rewrite: the matched characters, as istio/api HTTPRewrite documents
        ({"uri": {"prefix": "/ratings"}}, "/ratings/7?x=1", "/v1/bookRatings/7?x=1"),
        ({"uri": {"prefix": "/ratings"}}, "/ratingsfoo", "/v1/bookRatingsfoo"),
        ({"uri": {"exact": "/ratings"}}, "/ratings?x", "/v1/bookRatings?x"),
        ({"uri": {"regex": "/r.*"}}, "/ratings/7", "/v1/bookRatings"),
        ({"headers": {"x": {"exact": "1"}}}, "/ratings/7", "/v1/bookRatingsratings/7"),  # Istio's prefix "/"
    ],
)
def test_rewrite_uri(match: JSON, target: str, rewritten: str) -> None:
    rule, warnings = one_rule({"match": [match], "rewrite": {"uri": "/v1/bookRatings"}, "route": TO_REVIEWS})
    assert warnings == ()
    assert rule.rewrite == RewriteFilter(path=PathModifier(PREFIX_REWRITE, "/v1/bookRatings"))
    assert rule.backends == (BackendRef(REVIEWS, 9080, 100),)
    assert rewrite_target(rule.rewrite, matched=rule.matches[0].path, path_and_query=target) == rewritten


def test_rewrite_authority_and_unsupported_parts() -> None:
    rule, warnings = one_rule({"rewrite": {"authority": "other.example"}, "route": TO_REVIEWS})
    assert warnings == () and rule.rewrite == RewriteFilter(hostname="other.example")
    regex = {"uriRegexRewrite": {"match": "^/a(.*)", "rewrite": "/b\\1"}, "authority": "x.example"}
    rule, warnings = one_rule({"rewrite": regex, "route": TO_REVIEWS})
    assert rule.rewrite == RewriteFilter(hostname="x.example") and rule.backends
    assert warnings == (
        "VirtualService default/vs http[0]: rewrite.uriRegexRewrite is not supported yet; "
        "the rest of the rule is kept",
    )
    rule, _ = one_rule({"rewrite": {"uriRegexRewrite": {"match": "a", "rewrite": "b"}}, "route": TO_REVIEWS})
    assert rule.rewrite is None


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        (
            {"match": [{"uri": {"prefix": "/A"}, "ignoreUriCase": True}], "rewrite": {"uri": "/b"}},
            "ignoreUriCase",
        ),
        ({"rewrite": {"uri": "b"}}, "path 'b' is not absolute"),
        ({"rewrite": {"authority": "a/b"}}, "authority 'a/b' is not a host name"),
    ],
)
def test_a_rewrite_that_cannot_be_applied_drops_the_rule(http: JSON, problem: str) -> None:
    routes, warnings = routes_of(
        virtual_service({"http": [{**http, "route": TO_REVIEWS}, {"route": TO_REVIEWS}]})
    )
    (route,) = routes.values()
    assert [r.index for r in route.rules] == [1]
    with_warning(warnings, "http[0]: rewrite ", problem, "; the rule is ignored")


@pytest.mark.parametrize(
    ("http", "mirrors"),
    [
        (
            {"mirror": {"host": "reviews-v2"}},
            (MirrorFilter(BackendRef(V2, 9080), 100.0),),
        ),  # Istio: 100 % by default
        (
            {"mirror": {"host": "reviews-v2"}, "mirrorPercentage": {"value": 12.5}},
            (MirrorFilter(BackendRef(V2, 9080), 12.5),),
        ),
        (
            {"mirror": {"host": "reviews-v2"}, "mirrorPercentage": {}},
            (MirrorFilter(BackendRef(V2, 9080), 0.0),),
        ),
        (
            {"mirror": {"host": "reviews-v2"}, "mirrorPercent": 30},
            (MirrorFilter(BackendRef(V2, 9080), 30.0),),
        ),
        (
            {"mirror": {"host": "reviews-v2"}, "mirrorPercentage": {"value": 5.0}, "mirrorPercent": 30},
            (MirrorFilter(BackendRef(V2, 9080), 5.0),),
        ),
        (
            {
                "mirrors": [
                    {"destination": {"host": "reviews-v2"}},
                    {"destination": {"host": "web", "port": {"number": 9090}}, "percentage": {"value": 1.5}},
                ]
            },
            (MirrorFilter(BackendRef(V2, 9080)), MirrorFilter(BackendRef(WEB, 9090), 1.5)),
        ),
        (
            {"mirror": {"host": "ratings.shop.svc.cluster.local"}},
            (MirrorFilter(BackendRef(RATINGS, 9080)),),  # any namespace, as route destinations
        ),
    ],
)
def test_mirrors(http: JSON, mirrors: tuple[MirrorFilter, ...]) -> None:
    rule, warnings = one_rule({**http, "route": TO_REVIEWS})
    assert warnings == ()
    assert rule.mirrors == mirrors
    assert rule.backends == (BackendRef(REVIEWS, 9080, 100),)


@pytest.mark.parametrize(
    ("http", "problem"),
    [
        ({"mirror": {"host": "nope"}}, "mirror (nope): names no Service of the cluster"),
        ({"mirror": {"host": "web"}}, "mirror (web): has no port.number and the Service has 2 ports"),
        ({"mirror": {"host": "reviews-v2", "port": {"number": 1}}}, "port 1 is not a port of the Service"),
        ({"mirrors": [{"destination": {"host": "nope"}}]}, "mirrors[0] (nope): names no Service"),
    ],
)
def test_an_unusable_mirror_is_left_out(http: JSON, problem: str) -> None:
    rule, warnings = one_rule({**http, "route": TO_REVIEWS})
    assert rule.mirrors == () and rule.backends, "the rule still routes"
    (warning,) = warnings
    assert warning.startswith("VirtualService default/vs http[0] mirror")
    assert problem in warning and warning.endswith("; that mirror is left out")


def test_mirror_percentages_the_schema_would_refuse() -> None:
    for spec in (
        {"mirrorPercentage": {"value": 120}},
        {"mirrorPercent": -1},
        {"mirrorPercentage": {"value": "x"}},
    ):
        obj = virtual_service({"http": [{"mirror": {"host": "reviews-v2"}, **spec, "route": TO_REVIEWS}]})
        routes, warnings = _unvalidated(obj)
        (route,) = routes.values()
        assert route.rules[0].mirrors == ()
        with_warning(warnings, "http[0] mirror (reviews-v2): ", "that mirror is left out")


def test_mirror_and_mirrors_together_are_both_used() -> None:
    http = {
        "mirror": {"host": "reviews-v1"},
        "mirrors": [{"destination": {"host": "reviews-v2"}}],
        "route": TO_REVIEWS,
    }
    rule, warnings = one_rule(http)
    assert [m.backend.service_key for m in rule.mirrors] == [V1, V2]
    assert warnings == (
        "VirtualService default/vs http[0]: both mirror and mirrors are set (Istio refuses that); "
        "both are used",
    )
