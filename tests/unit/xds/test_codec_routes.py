"""The HttpRoute resource type: exact round trips, refusals, and a proxy taking it end to end."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xds_wire import packed, proxy_state

from ambit.control.cache import SnapshotCache, versioned
from ambit.model.policy import Action, L7Authorization, PolicyTarget
from ambit.model.route import (
    GRPC_ROUTE,
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
from ambit.model.workload import Service, ServicePort, Workload
from ambit.proxy.cache import decode_state, encode_state
from ambit.state import ROUTE_PREFIX, resource_name
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.route.v1 import route_pb2

segments = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
keys = st.builds(lambda ns, host: f"{ns}/{host}", segments, segments)
texts = st.text(max_size=12)
lower = st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True)
ports = st.integers(1, 65535)
seconds = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
regexes = st.sampled_from(["/.*", "[a-z]+", "v[0-9]{1,3}", "(a|b)c?", ""])
timestamps = st.sampled_from(["", "2025-01-01T00:00:00Z", "2024-12-31T23:59:59+02:00"])


def _tuples(strategy: st.SearchStrategy[object], size: int = 2) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=size).map(tuple)


paths = st.one_of(
    st.builds(
        PathMatch,
        kind=st.sampled_from([PATH_EXACT, PATH_PREFIX, PATH_STRING_PREFIX]),
        value=texts.map(lambda t: "/" + t),
    ),
    st.builds(PathMatch, kind=st.just(PATH_REGEX), value=regexes),
)
header_matches = st.one_of(
    st.builds(HeaderMatch, name=lower, kind=st.just(VALUE_EXACT), value=texts),
    st.builds(HeaderMatch, name=lower, kind=st.just(VALUE_REGEX), value=regexes),
)
query_matches = st.one_of(
    st.builds(QueryMatch, name=st.text(min_size=1, max_size=8), kind=st.just(VALUE_EXACT), value=texts),
    st.builds(QueryMatch, name=st.text(min_size=1, max_size=8), kind=st.just(VALUE_REGEX), value=regexes),
)
route_matches = st.builds(
    RouteMatch,
    path=st.none() | paths,
    method=st.none() | st.sampled_from(["GET", "POST", "PATCH"]),
    headers=_tuples(header_matches),
    query=_tuples(query_matches),
)
modifiers = st.builds(
    HeaderModifier,
    set=_tuples(st.tuples(lower, texts)),
    add=_tuples(st.tuples(lower, texts)),
    remove=_tuples(lower),
)
retries = st.builds(
    RetryPolicy,
    attempts=st.integers(0, 10),
    codes=_tuples(st.integers(100, 599)),
    backoff=st.none() | seconds,
    retry_on_connect_failure=st.booleans(),
    retry_on_refused_stream=st.booleans(),
    retriable_grpc_statuses=_tuples(st.integers(0, 16)),
)
percents = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
faults = st.builds(
    FaultPolicy,
    delay=st.none() | seconds,
    delay_percent=percents,
    abort_status=st.none() | st.integers(200, 599),
    abort_percent=percents,
) | st.builds(
    FaultPolicy,
    delay=st.none() | seconds,
    delay_percent=percents,
    abort_grpc_status=st.integers(0, 16),
    abort_percent=percents,
)
url_paths = st.from_regex(r"(/[a-z0-9._~%-]{0,6}){1,3}", fullmatch=True)
path_modifiers = st.builds(
    PathModifier,
    kind=st.sampled_from([REPLACE_FULL_PATH, REPLACE_PREFIX_MATCH, PREFIX_REWRITE]),
    value=url_paths,
) | st.builds(PathModifier, kind=st.just(REPLACE_PREFIX_MATCH), value=st.just(""))
hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
redirects = st.builds(
    RedirectFilter,
    status=st.sampled_from([301, 302, 303, 307, 308]),
    scheme=st.none() | st.sampled_from(["http", "https"]),
    hostname=st.none() | hosts,
    port=st.none() | ports,
    derive_port=st.sampled_from([PORT_FROM_LISTENER, PORT_FROM_SCHEME, PORT_FROM_HOST]),
    path=st.none() | path_modifiers,
)
rewrites = st.builds(RewriteFilter, hostname=st.none() | hosts, path=st.none() | path_modifiers)
subset_names = st.none() | st.from_regex(r"[a-z0-9][a-z0-9-]{0,10}", fullmatch=True)
mirrors = st.builds(
    MirrorFilter,
    backend=st.builds(
        BackendRef, service_key=keys, port=ports, weight=st.integers(0, 10), subset=subset_names
    ),
    percent=percents,
)
rules = st.builds(
    RouteRule,
    index=st.integers(0, 15),
    matches=_tuples(route_matches, 3),
    backends=_tuples(
        st.builds(
            BackendRef, service_key=keys, port=ports, weight=st.integers(0, 1_000_000), subset=subset_names
        )
    ),
    request_headers=st.none() | modifiers,
    response_headers=st.none() | modifiers,
    request_timeout=st.none() | seconds,
    backend_timeout=st.none() | seconds,
    retry=st.none() | retries,
    invalid_weight=st.integers(0, 1000),
    fault=st.none() | faults,
    redirect=st.none() | redirects,
    rewrite=st.none() | rewrites,
    mirrors=_tuples(mirrors),
)
routes = st.builds(
    HttpRoute,
    kind=st.sampled_from([HTTP_ROUTE, GRPC_ROUTE, VIRTUAL_SERVICE, TCP_ROUTE]),
    name=segments,
    namespace=segments,
    created=timestamps,
    service_key=keys,
    port=st.none() | ports,
    rules=_tuples(rules),
)

SVC = "default/web.default.svc.cluster.local"
ROUTE = HttpRoute(
    HTTP_ROUTE,
    "web",
    "default",
    "2025-01-01T00:00:00Z",
    SVC,
    80,
    (
        RouteRule(
            0,
            (
                RouteMatch(
                    path=PathMatch(PATH_PREFIX, "/api"), headers=(HeaderMatch("x-a", VALUE_EXACT, "1"),)
                ),
            ),
            (BackendRef("default/web-v1.default.svc.cluster.local", 8080, 90),),
            request_timeout=2.0,
            retry=RetryPolicy(attempts=3, codes=(503,)),
        ),
    ),
)
NAME = f"rt/default/HTTPRoute/web/{SVC}:80"


def wire_round_trip(value: HttpRoute) -> object:
    encoded = codec.encode_resource(resource_name(value), "v1", value).SerializeToString()
    decoded = discovery_pb2.Resource.FromString(encoded)
    name, version, back = codec.decode_resource(decoded, codec.ROUTE_TYPE_URL)
    assert (name, version) == (resource_name(value), "v1")
    return back


@settings(max_examples=150, deadline=None)
@given(routes)
def test_round_trip_is_exact(value: HttpRoute) -> None:
    assert wire_round_trip(value) == value


@settings(max_examples=30, deadline=None)
@given(routes)
def test_deterministic_bytes_and_versions_are_stable(value: HttpRoute) -> None:
    copy = dataclasses.replace(value)
    assert codec.deterministic_bytes(value) == codec.deterministic_bytes(copy)
    assert content_version(value) == content_version(copy)


def test_every_model_field_is_exercised() -> None:
    """Guard: a new model field must be added to the codec (and these strategies) before it ships."""
    fields = {cls.__name__: {f.name for f in dataclasses.fields(cls)} for cls in (
        HttpRoute, RouteRule, RouteMatch, PathMatch, HeaderMatch, QueryMatch, BackendRef, HeaderModifier,
        RetryPolicy, FaultPolicy, RedirectFilter, RewriteFilter, MirrorFilter, PathModifier,
    )}  # fmt: skip
    assert fields == {
        "HttpRoute": {"kind", "name", "namespace", "created", "service_key", "port", "rules"},
        "RouteRule": {
            "index", "matches", "backends", "request_headers", "response_headers", "request_timeout",
            "backend_timeout", "retry", "invalid_weight", "fault", "redirect", "rewrite", "mirrors",
        },
        "RouteMatch": {"path", "method", "headers", "query"},
        "PathMatch": {"kind", "value"},
        "HeaderMatch": {"name", "kind", "value"},
        "QueryMatch": {"name", "kind", "value"},
        "BackendRef": {"service_key", "port", "weight", "subset"},
        "HeaderModifier": {"set", "add", "remove"},
        "RetryPolicy": {
            "attempts", "codes", "backoff", "retry_on_connect_failure", "retry_on_refused_stream",
            "retriable_grpc_statuses",
        },
        "FaultPolicy": {"delay", "delay_percent", "abort_status", "abort_grpc_status", "abort_percent"},
        "RedirectFilter": {"status", "scheme", "hostname", "port", "derive_port", "path"},
        "RewriteFilter": {"hostname", "path"},
        "MirrorFilter": {"backend", "percent"},
        "PathModifier": {"kind", "value"},
    }  # fmt: skip


def test_names_and_type_urls() -> None:
    assert resource_name(ROUTE) == ROUTE_PREFIX + ROUTE.key == NAME
    assert "type.googleapis.com/" + route_pb2.HttpRoute.DESCRIPTOR.full_name == codec.ROUTE_TYPE_URL
    assert codec.type_url_for_name(NAME) == codec.ROUTE_TYPE_URL
    assert codec.type_url_for(ROUTE) == codec.ROUTE_TYPE_URL
    assert codec.ROUTE_TYPE_URL in codec.TYPE_URLS
    assert len(set(codec.TYPE_URLS)) == len(codec.TYPE_URLS) == 6  # + TrafficPolicy, RateLimitPolicy


def test_optional_fields_keep_none_apart_from_zero() -> None:
    bare = HttpRoute(GRPC_ROUTE, "g", "default", "", SVC, None, (RouteRule(0, (RouteMatch(),), ()),))
    assert wire_round_trip(bare) == bare
    pb = codec.route_to_pb(bare)
    assert not pb.HasField("port")
    assert not pb.rules[0].matches[0].HasField("path") and not pb.rules[0].matches[0].HasField("method")
    assert not pb.rules[0].HasField("retry") and not pb.rules[0].HasField("request_timeout")
    assert not pb.rules[0].HasField("fault")


def test_a_backend_subset_stays_apart_from_none() -> None:
    rule = RouteRule(0, (RouteMatch(),), (BackendRef(SVC, 80, 3, subset="v1"), BackendRef(SVC, 80, 1)))
    value = HttpRoute(VIRTUAL_SERVICE, "vs", "default", "", SVC, None, (rule,))
    assert wire_round_trip(value) == value
    pb = codec.route_to_pb(value)
    assert pb.rules[0].backends[0].subset == "v1" and not pb.rules[0].backends[1].HasField("subset")


@pytest.mark.parametrize(
    "fault",
    [
        FaultPolicy(delay=7.0, delay_percent=100.0),
        FaultPolicy(abort_status=503, abort_percent=0.1),
        FaultPolicy(abort_grpc_status=0, abort_percent=100.0),  # OK (0) stays apart from unset
        FaultPolicy(delay=0.25, delay_percent=0.0, abort_grpc_status=14, abort_percent=50.0),
        FaultPolicy(),  # a fault with nothing in it is still a fault value
    ],
)
def test_fault_policies_round_trip_with_unset_kept_apart_from_zero(fault: FaultPolicy) -> None:
    value = dataclasses.replace(
        ROUTE, kind=VIRTUAL_SERVICE, port=None, rules=(dataclasses.replace(ROUTE.rules[0], fault=fault),)
    )
    assert wire_round_trip(value) == value
    pb = codec.route_to_pb(value).rules[0].fault
    assert pb.HasField("delay") is (fault.delay is not None)
    assert pb.HasField("abort_status") is (fault.abort_status is not None)
    assert pb.HasField("abort_grpc_status") is (fault.abort_grpc_status is not None)


def test_virtual_service_routes_have_their_own_names() -> None:
    value = dataclasses.replace(ROUTE, kind=VIRTUAL_SERVICE, port=None)
    assert resource_name(value) == f"rt/default/VirtualService/web/{SVC}"
    assert codec.route_to_pb(value).kind == route_pb2.VIRTUAL_SERVICE
    assert wire_round_trip(value) == value


@pytest.mark.parametrize(
    "value",
    [
        dataclasses.replace(ROUTE, port=70000),
        dataclasses.replace(ROUTE, rules=(RouteRule(0, (), (BackendRef(SVC, 70000),)),)),
        dataclasses.replace(ROUTE, rules=(RouteRule(0, (), (BackendRef(SVC, 80, -1),)),)),
        dataclasses.replace(ROUTE, rules=(RouteRule(-1, (), ()),)),
        dataclasses.replace(ROUTE, rules=(RouteRule(0, (), (), retry=RetryPolicy(attempts=2**32)),)),
    ],
)
def test_values_without_a_wire_form_are_refused(value: HttpRoute) -> None:
    with pytest.raises(codec.XdsEncodeError, match="out of range"):
        codec.encode_resource(resource_name(value), "v1", value)


def _good() -> route_pb2.HttpRoute:
    return codec.route_to_pb(ROUTE)


def _with_rule(**fields: object) -> route_pb2.HttpRoute:
    pb = _good()
    pb.rules[0].CopyFrom(route_pb2.RouteRule(**fields))
    return pb


def _with_match(**fields: object) -> route_pb2.HttpRoute:
    return _with_rule(matches=[route_pb2.RouteMatch(**fields)])


def _with(**fields: object) -> route_pb2.HttpRoute:
    pb = _good()
    for name, value in fields.items():
        setattr(pb, name, value)
    return pb


def _value(name: str, kind: int, value: str) -> route_pb2.ValueMatch:
    return route_pb2.ValueMatch(name=name, type=kind, value=value)


REGEX = route_pb2.VALUE_REGULAR_EXPRESSION


@pytest.mark.parametrize(
    ("pb", "reason"),
    [
        (_with(kind=0), "unknown route kind 0"),
        (_with(kind=9), "unknown route kind 9"),
        (_with(port=0), "parent port 0 is out of range 1..65535"),
        (_with(port=65536), "parent port 65536 is out of range"),
        (_with(service_key="web"), "parent service key 'web' is not of the form <namespace>/<name>"),
        (_with(created="yesterday"), "creation time 'yesterday' is not an RFC 3339 timestamp"),
        (_with_match(path=route_pb2.PathMatch(value="/")), "unknown path match type 0"),
        (
            _with_match(path=route_pb2.PathMatch(type=route_pb2.PATH_EXACT, value="x")),
            "path 'x' is not absolute",
        ),
        (
            _with_match(path=route_pb2.PathMatch(type=route_pb2.PATH_PREFIX, value="")),
            "path '' is not absolute",
        ),
        (
            _with_match(path=route_pb2.PathMatch(type=route_pb2.PATH_REGULAR_EXPRESSION, value="(")),
            "path regular expression '\\(' is not a valid regular expression",
        ),
        (_with_match(method=""), "method is empty"),
        (
            _with_match(headers=[_value("X-A", route_pb2.VALUE_EXACT, "1")]),
            "header match name 'X-A' is not in lower",
        ),
        (_with_match(headers=[_value("", route_pb2.VALUE_EXACT, "1")]), "header match name is empty"),
        (_with_match(headers=[_value("x", 0, "1")]), "unknown header match type 0"),
        (_with_match(headers=[_value("x", REGEX, "[")]), "header regular expression '\\[' is not a valid"),
        (_with_match(query=[_value("", route_pb2.VALUE_EXACT, "1")]), "query parameter name is empty"),
        (_with_match(query=[_value("q", REGEX, "*")]), "query parameter regular expression"),
        (_with_rule(backends=[route_pb2.BackendRef(service_key="a/b", port=0)]), "backend port 0"),
        (_with_rule(backends=[route_pb2.BackendRef(service_key="ab", port=80)]), "backend service key 'ab'"),
        (
            _with_rule(backends=[route_pb2.BackendRef(service_key="a/b", port=80, subset="")]),
            "backend subset is empty",
        ),
        (
            _with_rule(request_headers=route_pb2.HeaderModifier(set=[route_pb2.Header(name="X", value="1")])),
            "header name 'X' is not in lower case",
        ),
        (_with_rule(response_headers=route_pb2.HeaderModifier(remove=[""])), "header name is empty"),
        (_with_rule(request_timeout=0.0), "request timeout 0.0 is not a positive number of seconds"),
        (_with_rule(backend_timeout=-1.0), "backend timeout -1.0 is not a positive"),
        (_with_rule(request_timeout=math.inf), "request timeout inf"),
        (_with_rule(request_timeout=math.nan), "request timeout nan"),
        (_with_rule(retry=route_pb2.RetryPolicy(codes=[600])), "retry code 600 is out of range 100..599"),
        (_with_rule(retry=route_pb2.RetryPolicy(codes=[99])), "retry code 99"),
        (
            _with_rule(retry=route_pb2.RetryPolicy(retriable_grpc_statuses=[17])),
            "gRPC status 17 is out of range",
        ),
        (_with_rule(retry=route_pb2.RetryPolicy(backoff=0.0)), "retry backoff 0.0 is not a positive"),
        (_with_rule(fault=route_pb2.FaultPolicy(delay=0.0)), "fault delay 0.0 is not a positive"),
        (_with_rule(fault=route_pb2.FaultPolicy(delay=math.inf)), "fault delay inf"),
        (_with_rule(fault=route_pb2.FaultPolicy(delay_percent=100.5)), "fault delay percentage 100.5 is not"),
        (_with_rule(fault=route_pb2.FaultPolicy(abort_percent=-1.0)), "fault abort percentage -1.0 is not"),
        (_with_rule(fault=route_pb2.FaultPolicy(abort_percent=math.nan)), "fault abort percentage nan"),
        (_with_rule(fault=route_pb2.FaultPolicy(abort_status=199)), "fault abort status 199 is out of range"),
        (_with_rule(fault=route_pb2.FaultPolicy(abort_status=600)), "fault abort status 600 is out of range"),
        (_with_rule(fault=route_pb2.FaultPolicy(abort_grpc_status=17)), "fault abort gRPC status 17 is out"),
        (
            _with_rule(fault=route_pb2.FaultPolicy(abort_status=503, abort_grpc_status=14)),
            "an HTTP status or a gRPC status, not both",
        ),
        (_with(kind=5), "unknown route kind 5"),
        (_with(name="other"), "resource holds rt/default/HTTPRoute/other/"),
        (_with(name=""), "route name is empty"),
        (_with(namespace="a/b"), "namespace 'a/b' may contain only"),
    ],
)
def test_bad_resources_are_rejected(pb: route_pb2.HttpRoute, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason):
        codec.decode_resource(packed(pb, NAME), codec.ROUTE_TYPE_URL)


def test_route_names_belong_only_to_their_type() -> None:
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(packed(_good(), NAME), codec.L7_AUTHORIZATION_TYPE_URL)
    l7 = L7Authorization("p", "default", Action.ALLOW, (PolicyTarget("Service", "default", "web"),), ())
    other = codec.encode_resource("l7/default/p", "v1", l7)
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(other, codec.ROUTE_TYPE_URL)
    # an L7 payload under an rt/ name
    wrong = discovery_pb2.Resource(name=NAME, version="v1")
    wrong.resource.CopyFrom(other.resource)
    with pytest.raises(
        codec.XdsRejected, match=re.escape("expected type.googleapis.com/ambit.route.v1.HttpRoute")
    ):
        codec.decode_resource(wrong, codec.ROUTE_TYPE_URL)


def test_a_proxy_takes_routes_without_nack() -> None:
    workload = Workload("u1", "web-0", "default", "web", "n1", ("10.244.1.5",), services=((SVC, ()),))
    service = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80),))
    store, nacks = proxy_state(versioned([workload, service, ROUTE]))
    assert nacks == []
    snap = store.current
    assert dict(snap.routes) == {ROUTE.key: ROUTE}
    assert snap.routes_for(SVC) == (ROUTE,)
    assert snap.endpoints(SVC) == (workload,), "the rest of the config is unchanged"
    # and the proxy's on-disk cache keeps it across a restart
    assert decode_state(encode_state(snap.entries)) == dict(snap.entries)


def test_versions_are_deterministic_across_replicas() -> None:
    other = dataclasses.replace(ROUTE, port=None)
    a = versioned([ROUTE, other])
    b = versioned([other, ROUTE])
    assert a == b
    cache_a, cache_b = SnapshotCache(), SnapshotCache()
    assert cache_a.set(a).version == cache_b.set(b).version
    assert set(cache_a.current.versions(codec.ROUTE_TYPE_URL)) == {NAME, resource_name(other)}
    assert dict(cache_a.current.versions(codec.L7_AUTHORIZATION_TYPE_URL)) == {}


# --- redirects, rewrites, mirrors and TCPRoutes -----------------------------------------------------

REDIRECTING = dataclasses.replace(
    ROUTE,
    rules=(
        RouteRule(
            0,
            (RouteMatch(path=PathMatch(PATH_PREFIX, "/old")),),
            (),
            redirect=RedirectFilter(
                status=301,
                scheme="https",
                hostname="example.org",
                port=8443,
                derive_port=PORT_FROM_SCHEME,
                path=PathModifier(REPLACE_PREFIX_MATCH, ""),
            ),
        ),
        RouteRule(
            1,
            (RouteMatch(path=PathMatch(PATH_STRING_PREFIX, "/api")),),
            (BackendRef(SVC, 80),),
            rewrite=RewriteFilter(hostname="api.internal:8080", path=PathModifier(PREFIX_REWRITE, "/v2")),
            mirrors=(MirrorFilter(BackendRef(SVC, 9090), 12.5), MirrorFilter(BackendRef(SVC, 80), 0.0)),
        ),
    ),
)


@pytest.mark.parametrize(
    "rule",
    [
        *REDIRECTING.rules,
        RouteRule(0, (), (), redirect=RedirectFilter()),  # every field unset but the defaults
        RouteRule(0, (), (), redirect=RedirectFilter(derive_port=PORT_FROM_HOST)),
        RouteRule(0, (), (BackendRef(SVC, 80),), rewrite=RewriteFilter()),
        RouteRule(
            0, (), (BackendRef(SVC, 80),), rewrite=RewriteFilter(path=PathModifier(REPLACE_FULL_PATH, "/"))
        ),
    ],
)
def test_filters_round_trip_with_unset_kept_apart(rule: RouteRule) -> None:
    value = dataclasses.replace(ROUTE, rules=(rule,))
    assert wire_round_trip(value) == value
    pb = codec.route_to_pb(value).rules[0]
    assert pb.HasField("redirect") is (rule.redirect is not None)
    assert pb.HasField("rewrite") is (rule.rewrite is not None)
    if rule.redirect is not None:
        assert pb.redirect.HasField("scheme") is (rule.redirect.scheme is not None)
        assert pb.redirect.HasField("hostname") is (rule.redirect.hostname is not None)
        assert pb.redirect.HasField("port") is (rule.redirect.port is not None)
        assert pb.redirect.HasField("path") is (rule.redirect.path is not None)
    if rule.rewrite is not None:
        assert pb.rewrite.HasField("hostname") is (rule.rewrite.hostname is not None)
        assert pb.rewrite.HasField("path") is (rule.rewrite.path is not None)


def test_tcp_routes_travel_as_route_resources() -> None:
    tcp = HttpRoute(
        TCP_ROUTE,
        "tcp",
        "default",
        "",
        SVC,
        9000,
        (
            RouteRule(
                0, (RouteMatch(),), (BackendRef(SVC, 9001, 80), BackendRef(SVC, 9002, 20)), invalid_weight=5
            ),
        ),
    )
    assert resource_name(tcp) == f"rt/default/TCPRoute/tcp/{SVC}:9000"
    assert codec.type_url_for(tcp) == codec.ROUTE_TYPE_URL
    assert codec.route_to_pb(tcp).kind == route_pb2.TCP_ROUTE
    assert wire_round_trip(tcp) == tcp
    assert wire_round_trip(REDIRECTING) == REDIRECTING


def _modifier(kind: int, value: str) -> route_pb2.PathModifier:
    return route_pb2.PathModifier(type=kind, value=value)


def _redirect(**fields: object) -> route_pb2.HttpRoute:
    fields.setdefault("status", 302)
    fields.setdefault("derive_port", route_pb2.REDIRECT_PORT_LISTENER)
    return _with_rule(redirect=route_pb2.RedirectFilter(**fields))


def _mirror(**fields: object) -> route_pb2.HttpRoute:
    fields.setdefault("backend", route_pb2.BackendRef(service_key="a/b", port=80))
    return _with_rule(mirrors=[route_pb2.MirrorFilter(**fields)])


@pytest.mark.parametrize(
    ("pb", "reason"),
    [
        (_redirect(status=0), "redirect status 0 is not one of"),
        (_redirect(status=300), "redirect status 300 is not one of"),
        (_redirect(status=304), "redirect status 304"),
        (_redirect(scheme="ftp"), "redirect scheme 'ftp' is not one of"),
        (_redirect(scheme=""), "redirect scheme ''"),
        (_redirect(hostname=""), "redirect hostname '' is not a host name"),
        (_redirect(hostname="a b"), "redirect hostname 'a b' is not a host name"),
        (_redirect(hostname="evil.com/x"), "redirect hostname 'evil.com/x'"),
        (_redirect(hostname="user@evil.com"), "redirect hostname 'user@evil.com'"),
        (_redirect(port=0), "redirect port 0 is out of range 1..65535"),
        (_redirect(port=65536), "redirect port 65536 is out of range"),
        (_redirect(derive_port=0), "unknown redirect port mode 0"),
        (_redirect(derive_port=9), "unknown redirect port mode 9"),
        (_redirect(path=_modifier(0, "/x")), "unknown redirect path modifier type 0"),
        (_redirect(path=_modifier(route_pb2.REPLACE_FULL_PATH, "x")), "redirect path 'x' is not absolute"),
        (_redirect(path=_modifier(route_pb2.REPLACE_FULL_PATH, "")), "redirect path '' is not absolute"),
        (_redirect(path=_modifier(route_pb2.PREFIX_REWRITE, "")), "redirect path '' is not absolute"),
        (_redirect(path=_modifier(route_pb2.REPLACE_FULL_PATH, "/a?b=1")), "contains a space, a control"),
        (_redirect(path=_modifier(route_pb2.REPLACE_PREFIX_MATCH, "/a#b")), "contains a space"),
        (_redirect(path=_modifier(route_pb2.REPLACE_PREFIX_MATCH, "/a\r\nx: y")), "contains a space"),
        (_with_rule(rewrite=route_pb2.RewriteFilter(hostname="")), "rewrite hostname '' is not a host name"),
        (_with_rule(rewrite=route_pb2.RewriteFilter(hostname="a\nb")), "rewrite hostname"),
        (
            _with_rule(rewrite=route_pb2.RewriteFilter(path=_modifier(route_pb2.PREFIX_REWRITE, "v2"))),
            "rewrite path 'v2' is not absolute",
        ),
        (
            _with_rule(rewrite=route_pb2.RewriteFilter(path=_modifier(7, "/"))),
            "unknown rewrite path modifier",
        ),
        (_mirror(percent=100.5), "mirror percentage 100.5 is not a percentage in 0..100"),
        (_mirror(percent=-0.1), "mirror percentage -0.1"),
        (_mirror(percent=math.nan), "mirror percentage nan"),
        (_mirror(percent=math.inf), "mirror percentage inf"),
        (_with_rule(mirrors=[route_pb2.MirrorFilter(percent=1.0)]), "a mirror has no backend"),
        (_mirror(backend=route_pb2.BackendRef(service_key="ab", port=80)), "backend service key 'ab'"),
        (_mirror(backend=route_pb2.BackendRef(service_key="a/b", port=0)), "backend port 0"),
        (
            _with_match(path=route_pb2.PathMatch(type=route_pb2.PATH_STRING_PREFIX, value="api")),
            "path 'api' is not absolute",
        ),
    ],
)
def test_bad_filters_are_rejected(pb: route_pb2.HttpRoute, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason):
        codec.decode_resource(packed(pb, NAME), codec.ROUTE_TYPE_URL)


def test_filter_values_without_a_wire_form_are_refused() -> None:
    far = dataclasses.replace(
        ROUTE, rules=(RouteRule(0, (), (), mirrors=(MirrorFilter(BackendRef(SVC, 70000)),)),)
    )
    with pytest.raises(codec.XdsEncodeError, match="backend port 70000 is out of range"):
        codec.encode_resource(resource_name(far), "v1", far)
