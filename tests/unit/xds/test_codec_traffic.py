"""The TrafficPolicy resource type: exact round trips, refusals, and a proxy taking it end to end."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xds_wire import packed, proxy_state

from ambit.control.cache import SnapshotCache, versioned
from ambit.model.route import HTTP_ROUTE, HttpRoute, RouteMatch, RouteRule
from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, Subset, TrafficPolicy
from ambit.model.version import content_version
from ambit.model.workload import Service, ServicePort, Workload
from ambit.proxy.cache import decode_state, encode_state
from ambit.state import TRAFFIC_POLICY_PREFIX, resource_name
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.traffic.v1 import traffic_policy_pb2

segments = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
keys = st.builds(lambda ns, host: f"{ns}/{host}", segments, segments)
counts = st.none() | st.integers(1, 2**32 - 1)
seconds = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)
percents = st.integers(0, 100)

pools = st.builds(
    ConnectionPool,
    max_connections=counts,
    max_pending_requests=counts,
    max_requests_per_connection=counts,
    max_requests=counts,
)
detections = st.builds(
    OutlierDetection,
    consecutive_5xx=counts,
    consecutive_gateway_errors=counts,
    interval=seconds,
    base_ejection_time=seconds,
    max_ejection_percent=percents,
    min_health_percent=percents,
)
subsets = st.lists(
    st.builds(
        Subset,
        name=segments,
        workloads=st.lists(st.text(min_size=1, max_size=12), max_size=4, unique=True).map(
            lambda uids: tuple(sorted(uids))
        ),
    ),
    max_size=4,
    unique_by=lambda subset: subset.name,
).map(lambda found: tuple(sorted(found, key=lambda subset: subset.name)))
policies = st.builds(
    TrafficPolicy,
    name=segments,
    namespace=segments,
    service_key=keys,
    connection_pool=st.none() | pools,
    outlier_detection=st.none() | detections,
    subsets=subsets,
)

SVC = "default/web.default.svc.cluster.local"
POLICY = TrafficPolicy(
    "web",
    "default",
    SVC,
    ConnectionPool(max_connections=100, max_pending_requests=1),
    OutlierDetection(consecutive_5xx=7, interval=5.0, base_ejection_time=60.0, max_ejection_percent=50),
    (Subset("v1", ("uid-a", "uid-b")), Subset("v2")),
)
NAME = "tp/default/web"


def wire_round_trip(value: TrafficPolicy) -> object:
    encoded = codec.encode_resource(resource_name(value), "v1", value).SerializeToString()
    decoded = discovery_pb2.Resource.FromString(encoded)
    name, version, back = codec.decode_resource(decoded, codec.TRAFFIC_POLICY_TYPE_URL)
    assert (name, version) == (resource_name(value), "v1")
    return back


@settings(max_examples=150, deadline=None)
@given(policies)
def test_round_trip_is_exact(value: TrafficPolicy) -> None:
    assert wire_round_trip(value) == value


@settings(max_examples=30, deadline=None)
@given(policies)
def test_deterministic_bytes_and_versions_are_stable(value: TrafficPolicy) -> None:
    copy = dataclasses.replace(value)
    assert codec.deterministic_bytes(value) == codec.deterministic_bytes(copy)
    assert content_version(value) == content_version(copy)


def test_every_model_field_is_exercised() -> None:
    """Guard: a new model field must be added to the codec (and these strategies) before it ships."""
    fields = {cls.__name__: {f.name for f in dataclasses.fields(cls)} for cls in (
        TrafficPolicy, ConnectionPool, OutlierDetection, Subset,
    )}  # fmt: skip
    assert fields == {
        "TrafficPolicy": {
            "name", "namespace", "service_key", "connection_pool", "outlier_detection", "subsets",
        },
        "Subset": {"name", "workloads"},
        "ConnectionPool": {
            "max_connections", "max_pending_requests", "max_requests_per_connection", "max_requests",
        },
        "OutlierDetection": {
            "consecutive_5xx", "consecutive_gateway_errors", "interval", "base_ejection_time",
            "max_ejection_percent", "min_health_percent",
        },
    }  # fmt: skip


def test_names_and_type_urls() -> None:
    assert resource_name(POLICY) == TRAFFIC_POLICY_PREFIX + POLICY.key == NAME
    assert (
        "type.googleapis.com/" + traffic_policy_pb2.TrafficPolicy.DESCRIPTOR.full_name
        == codec.TRAFFIC_POLICY_TYPE_URL
        == "type.googleapis.com/ambit.traffic.v1.TrafficPolicy"
    )
    assert codec.type_url_for_name(NAME) == codec.TRAFFIC_POLICY_TYPE_URL
    assert codec.type_url_for(POLICY) == codec.TRAFFIC_POLICY_TYPE_URL
    assert codec.TYPE_URLS[-2] == codec.TRAFFIC_POLICY_TYPE_URL  # then RateLimitPolicy
    assert len(set(codec.TYPE_URLS)) == len(codec.TYPE_URLS) == 6


def test_none_stays_apart_from_unlimited_and_off() -> None:
    bare = TrafficPolicy("web", "default", SVC)
    assert wire_round_trip(bare) == bare
    pb = codec.traffic_policy_to_pb(bare)
    assert not pb.HasField("connection_pool") and not pb.HasField("outlier_detection")
    empty = TrafficPolicy("web", "default", SVC, ConnectionPool(), OutlierDetection(consecutive_5xx=None))
    assert wire_round_trip(empty) == empty
    pb = codec.traffic_policy_to_pb(empty)
    assert pb.HasField("connection_pool") and not pb.connection_pool.HasField("max_connections")
    assert not pb.outlier_detection.HasField("consecutive_5xx")


def test_subsets_are_decoded_in_order_whatever_the_wire_order() -> None:
    pb = codec.traffic_policy_to_pb(POLICY)
    assert [(s.name, list(s.workloads)) for s in pb.subsets] == [("v1", ["uid-a", "uid-b"]), ("v2", [])]
    del pb.subsets[:]
    pb.subsets.add(name="v2", workloads=["uid-c"])
    pb.subsets.add(name="v1", workloads=["uid-b", "uid-a"])
    _name, _version, back = codec.decode_resource(packed(pb, NAME), codec.TRAFFIC_POLICY_TYPE_URL)
    assert isinstance(back, TrafficPolicy)
    assert back.subsets == (Subset("v1", ("uid-a", "uid-b")), Subset("v2", ("uid-c",)))


def test_values_without_a_wire_form_are_refused() -> None:
    too_big = dataclasses.replace(POLICY, connection_pool=ConnectionPool(max_requests=2**32))
    with pytest.raises(codec.XdsEncodeError, match="max_requests 4294967296 is out of range"):
        codec.encode_resource(NAME, "v1", too_big)


def _with(**fields: object) -> traffic_policy_pb2.TrafficPolicy:
    pb = codec.traffic_policy_to_pb(POLICY)
    for name, value in fields.items():
        setattr(pb, name, value)
    return pb


def _pool(**fields: int) -> traffic_policy_pb2.TrafficPolicy:
    pb = codec.traffic_policy_to_pb(POLICY)
    pb.connection_pool.CopyFrom(traffic_policy_pb2.ConnectionPool(**fields))
    return pb


def _subsets(*subsets: tuple[str, list[str]]) -> traffic_policy_pb2.TrafficPolicy:
    pb = codec.traffic_policy_to_pb(POLICY)
    del pb.subsets[:]
    for name, workloads in subsets:
        pb.subsets.add(name=name, workloads=workloads)
    return pb


def _outlier(**fields: float) -> traffic_policy_pb2.TrafficPolicy:
    pb = codec.traffic_policy_to_pb(POLICY)
    for name, value in fields.items():
        setattr(pb.outlier_detection, name, value)
    return pb


@pytest.mark.parametrize(
    ("pb", "reason"),
    [
        (_pool(max_connections=0), "max_connections 0 is not at least 1"),
        (_pool(max_requests=0), "max_requests 0 is not at least 1"),
        (_outlier(consecutive_5xx=0), "consecutive_5xx 0 is not at least 1"),
        (_outlier(consecutive_gateway_errors=0), "consecutive_gateway_errors 0 is not at least 1"),
        (_outlier(interval=0.0), "outlier detection interval 0.0 is not a positive number of seconds"),
        (_outlier(interval=math.inf), "outlier detection interval inf"),
        (_outlier(base_ejection_time=-1.0), "base ejection time -1.0 is not a positive"),
        (_outlier(base_ejection_time=math.nan), "base ejection time nan"),
        (_outlier(max_ejection_percent=101), "max_ejection_percent 101 is out of range 0..100"),
        (_outlier(min_health_percent=200), "min_health_percent 200 is out of range 0..100"),
        (_with(service_key="web"), "service key 'web' is not of the form <namespace>/<name>"),
        (_with(name=""), "traffic policy name is empty"),
        (_with(namespace="a/b"), "namespace 'a/b' may contain only"),
        (_with(name="other"), "resource holds tp/default/other, not tp/default/web"),
        (_subsets(("", ["u1"])), "subset name is empty"),
        (_subsets(("v1", ["u1"]), ("v1", ["u2"])), "subset 'v1' is defined twice"),
        (_subsets(("v1", ["u1", ""])), "subset 'v1' workload uid is empty"),
        (_subsets(("v1", ["u1", "u1"])), "subset 'v1' lists a workload twice"),
    ],
)
def test_bad_resources_are_rejected(pb: traffic_policy_pb2.TrafficPolicy, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason):
        codec.decode_resource(packed(pb, NAME), codec.TRAFFIC_POLICY_TYPE_URL)


def test_names_belong_only_to_their_type() -> None:
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(packed(codec.traffic_policy_to_pb(POLICY), NAME), codec.ROUTE_TYPE_URL)
    route = HttpRoute(HTTP_ROUTE, "r", "default", "", SVC, None, (RouteRule(0, (RouteMatch(),), ()),))
    other = codec.encode_resource(resource_name(route), "v1", route)
    wrong = discovery_pb2.Resource(name=NAME, version="v1")
    wrong.resource.CopyFrom(other.resource)
    with pytest.raises(
        codec.XdsRejected, match=re.escape("expected type.googleapis.com/ambit.traffic.v1.TrafficPolicy")
    ):
        codec.decode_resource(wrong, codec.TRAFFIC_POLICY_TYPE_URL)


def test_a_proxy_takes_traffic_policies_without_nack() -> None:
    workload = Workload("u1", "web-0", "default", "web", "n1", ("10.244.1.5",), services=((SVC, ()),))
    service = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80),))
    store, nacks = proxy_state(versioned([workload, service, POLICY]))
    assert nacks == []
    snap = store.current
    assert dict(snap.traffic_policies) == {POLICY.key: POLICY}
    assert snap.traffic_policy_for(SVC) == POLICY
    assert snap.endpoints(SVC) == (workload,), "the rest of the config is unchanged"
    assert decode_state(encode_state(snap.entries)) == dict(snap.entries), "the on-disk cache keeps it"


def test_versions_are_deterministic_across_replicas() -> None:
    other = dataclasses.replace(POLICY, name="web-2", connection_pool=None)
    a, b = versioned([POLICY, other]), versioned([other, POLICY])
    assert a == b
    cache_a, cache_b = SnapshotCache(), SnapshotCache()
    assert cache_a.set(a).version == cache_b.set(b).version
    assert set(cache_a.current.versions(codec.TRAFFIC_POLICY_TYPE_URL)) == {NAME, "tp/default/web-2"}
    assert dict(cache_a.current.versions(codec.ROUTE_TYPE_URL)) == {}
