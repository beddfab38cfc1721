"""The RateLimitPolicy resource type: exact round trips, refusals, and a proxy taking it end to end."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xds_wire import packed, proxy_state

from ambit.control.cache import SnapshotCache, versioned
from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.version import content_version
from ambit.model.workload import Service, ServicePort, Workload
from ambit.proxy.cache import decode_state, encode_state
from ambit.state import RATE_LIMIT_PREFIX, resource_name
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.ratelimit.v1 import rate_limit_pb2

segments = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
counts = st.integers(1, 2**32 - 1)
limits = st.builds(RateLimit, counts, counts)
principals = st.builds(
    lambda td, ns, sa: f"{td}/ns/{ns}/sa/{sa}",
    st.sampled_from(["cluster.local", "td.io"]),
    segments,
    segments,
)


@st.composite
def policies(draw: st.DrawFn) -> RateLimitPolicy:
    namespace = draw(segments)
    targets = draw(
        st.lists(
            st.builds(
                PolicyTarget, st.sampled_from([GATEWAY_TARGET, SERVICE_TARGET]), st.just(namespace), segments
            ),
            min_size=1,
            max_size=3,
        )
    )
    clients = draw(st.lists(principals, unique=True, max_size=6))
    overrides: list[ClientOverride] = []
    while clients:
        size = draw(st.integers(1, len(clients)))
        overrides.append(ClientOverride(draw(limits), tuple(clients[:size])))
        clients = clients[size:]
    total = draw(st.none() | limits)
    identity = draw(st.none() | limits)
    if total is None and identity is None and not overrides:
        total = draw(limits)
    return RateLimitPolicy(draw(segments), namespace, tuple(targets), total, identity, tuple(overrides))


SLEEP = "cluster.local/ns/sleep/sa/sleep"
POLICY = RateLimitPolicy(
    "web-rl",
    "default",
    (PolicyTarget(SERVICE_TARGET, "default", "web"), PolicyTarget(GATEWAY_TARGET, "default", "waypoint")),
    total=RateLimit(100, 20),
    identity=RateLimit(10, 10),
    overrides=(ClientOverride(RateLimit(50, 50), (SLEEP, "cluster.local/ns/default/sa/curl")),),
)
NAME = "rl/default/web-rl"
SVC = "default/web.default.svc.cluster.local"


def wire_round_trip(value: RateLimitPolicy) -> object:
    encoded = codec.encode_resource(resource_name(value), "v1", value).SerializeToString()
    decoded = discovery_pb2.Resource.FromString(encoded)
    name, version, back = codec.decode_resource(decoded, codec.RATE_LIMIT_TYPE_URL)
    assert (name, version) == (resource_name(value), "v1")
    return back


@settings(max_examples=150, deadline=None)
@given(policies())
def test_round_trip_is_exact(value: RateLimitPolicy) -> None:
    assert wire_round_trip(value) == value


@settings(max_examples=30, deadline=None)
@given(policies())
def test_deterministic_bytes_and_versions_are_stable(value: RateLimitPolicy) -> None:
    copy = dataclasses.replace(value)
    assert codec.deterministic_bytes(value) == codec.deterministic_bytes(copy)
    assert content_version(value) == content_version(copy)


def test_every_model_field_is_exercised() -> None:
    """Guard: a new model field must be added to the codec (and these strategies) before it ships."""
    fields = {cls.__name__: {f.name for f in dataclasses.fields(cls)} for cls in (
        RateLimitPolicy, RateLimit, ClientOverride, PolicyTarget,
    )}  # fmt: skip
    assert fields == {
        "RateLimitPolicy": {"name", "namespace", "targets", "total", "identity", "overrides"},
        "RateLimit": {"requests_per_second", "burst"},
        "ClientOverride": {"limit", "principals"},
        "PolicyTarget": {"kind", "namespace", "name"},
    }


def test_names_and_type_urls() -> None:
    assert resource_name(POLICY) == RATE_LIMIT_PREFIX + POLICY.key == NAME
    assert (
        "type.googleapis.com/" + rate_limit_pb2.RateLimitPolicy.DESCRIPTOR.full_name
        == codec.RATE_LIMIT_TYPE_URL
        == "type.googleapis.com/ambit.ratelimit.v1.RateLimitPolicy"
    )
    assert codec.type_url_for_name(NAME) == codec.RATE_LIMIT_TYPE_URL
    assert codec.type_url_for(POLICY) == codec.RATE_LIMIT_TYPE_URL
    assert codec.TYPE_URLS[-1] == codec.RATE_LIMIT_TYPE_URL
    assert len(set(codec.TYPE_URLS)) == len(codec.TYPE_URLS) == 6


def test_unset_limits_stay_unset() -> None:
    bare = RateLimitPolicy("r", "default", POLICY.targets, identity=RateLimit(1, 2))
    assert wire_round_trip(bare) == bare
    pb = codec.rate_limit_to_pb(bare)
    assert not pb.HasField("total") and pb.HasField("identity") and not pb.overrides


def test_values_without_a_wire_form_are_refused() -> None:
    too_big = dataclasses.replace(POLICY, total=RateLimit(2**32, 1))
    with pytest.raises(codec.XdsEncodeError, match="total requests_per_second 4294967296 is out of range"):
        codec.encode_resource(NAME, "v1", too_big)


def _pb(**fields: object) -> rate_limit_pb2.RateLimitPolicy:
    pb = codec.rate_limit_to_pb(POLICY)
    for name, value in fields.items():
        setattr(pb, name, value)
    return pb


def _edit(change: Callable[[rate_limit_pb2.RateLimitPolicy], object]) -> rate_limit_pb2.RateLimitPolicy:
    pb = codec.rate_limit_to_pb(POLICY)
    change(pb)
    return pb


def _no_targets(pb: rate_limit_pb2.RateLimitPolicy) -> None:
    del pb.targets[:]


def _none(pb: rate_limit_pb2.RateLimitPolicy) -> None:
    pb.ClearField("total")
    pb.ClearField("identity")
    del pb.overrides[:]


@pytest.mark.parametrize(
    ("pb", "reason"),
    [
        (
            _edit(lambda pb: setattr(pb.total, "requests_per_second", 0)),
            "total requests_per_second 0 is not at least 1",
        ),
        (_edit(lambda pb: setattr(pb.total, "burst", 0)), "total burst 0 is not at least 1"),
        (
            _edit(lambda pb: pb.identity.CopyFrom(rate_limit_pb2.RateLimit(burst=5))),
            "identity requests_per_second 0",
        ),
        (_edit(lambda pb: setattr(pb.identity, "burst", 0)), "identity burst 0 is not at least 1"),
        (
            _edit(lambda pb: setattr(pb.overrides[0].limit, "requests_per_second", 0)),
            "override 0 requests_per_second 0",
        ),
        (
            _edit(lambda pb: setattr(pb.overrides[0].limit, "burst", 0)),
            "override 0 burst 0 is not at least 1",
        ),
        (_edit(lambda pb: pb.overrides[0].ClearField("limit")), "override 0 has no limit"),
        (_edit(lambda pb: pb.overrides[0].ClearField("principals")), "override 0 names no client"),
        (_edit(lambda pb: pb.overrides[0].principals.append(SLEEP)), "override 0 names a client twice"),
        (
            _edit(lambda pb: pb.overrides[0].principals.append("spiffe://cluster.local/ns/a/sa/b")),
            "is not of the form",
        ),
        (_edit(lambda pb: pb.overrides[0].principals.append("cluster.local/ns/a")), "is not of the form"),
        (_edit(lambda pb: pb.overrides[0].principals.append("Bad!/ns/a/sa/b")), "trust domain"),
        (_edit(lambda pb: pb.overrides[0].principals.append("cluster.local/ns/../sa/b")), "dot segments"),
        (
            _edit(
                lambda pb: pb.overrides.add(
                    limit=rate_limit_pb2.RateLimit(requests_per_second=1, burst=1), principals=[SLEEP]
                )
            ),
            re.escape("['cluster.local/ns/sleep/sa/sleep'] named by two overrides"),
        ),
        (_edit(_no_targets), "rate limit policy has no target"),
        (
            _edit(lambda pb: setattr(pb.targets[0], "kind", rate_limit_pb2.TARGET_KIND_UNSPECIFIED)),
            "unknown rate limit target kind 0",
        ),
        (_edit(lambda pb: setattr(pb.targets[0], "kind", 7)), "unknown rate limit target kind 7"),
        (_edit(lambda pb: setattr(pb.targets[0], "name", "")), "target name is empty"),
        (
            _edit(lambda pb: setattr(pb.targets[0], "namespace", "other")),
            "target Service other/web is in another namespace",
        ),
        (
            _edit(lambda pb: setattr(pb.targets[0], "namespace", "a/b")),
            "target namespace 'a/b' may contain only",
        ),
        (_edit(_none), "sets none of total, identity and overrides"),
        (_pb(name=""), "rate limit policy name is empty"),
        (_pb(namespace="a/b"), "namespace 'a/b' may contain only"),
        (_pb(name="other"), "resource holds rl/default/other, not rl/default/web-rl"),
    ],
)
def test_bad_resources_are_rejected(pb: rate_limit_pb2.RateLimitPolicy, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason):
        codec.decode_resource(packed(pb, NAME), codec.RATE_LIMIT_TYPE_URL)


def test_the_good_resource_decodes() -> None:
    """Control for the refusals above: the unedited message decodes to the policy."""
    wire = packed(codec.rate_limit_to_pb(POLICY), NAME)
    assert codec.decode_resource(wire, codec.RATE_LIMIT_TYPE_URL)[2] == POLICY


def test_names_belong_only_to_their_type() -> None:
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(packed(codec.rate_limit_to_pb(POLICY), NAME), codec.TRAFFIC_POLICY_TYPE_URL)
    traffic = TrafficPolicy("web", "default", SVC)
    other = codec.encode_resource(resource_name(traffic), "v1", traffic)
    wrong = discovery_pb2.Resource(name=NAME, version="v1")
    wrong.resource.CopyFrom(other.resource)
    with pytest.raises(
        codec.XdsRejected, match=re.escape("expected type.googleapis.com/ambit.ratelimit.v1.RateLimitPolicy")
    ):
        codec.decode_resource(wrong, codec.RATE_LIMIT_TYPE_URL)


def test_a_proxy_takes_rate_limits_without_nack() -> None:
    workload = Workload("u1", "web-0", "default", "web", "n1", ("10.244.1.5",), services=((SVC, ()),))
    service = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80),))
    store, nacks = proxy_state(versioned([workload, service, POLICY]))
    assert nacks == []
    snap = store.current
    assert dict(snap.rate_limits) == {POLICY.key: POLICY}
    assert snap.rate_limits_for(SERVICE_TARGET, "default", "web") == (POLICY,)
    assert snap.endpoints(SVC) == (workload,), "the rest of the config is unchanged"
    assert decode_state(encode_state(snap.entries)) == dict(snap.entries), "the on-disk cache keeps it"


def test_versions_are_deterministic_across_replicas() -> None:
    other = dataclasses.replace(POLICY, name="web-2", overrides=())
    a, b = versioned([POLICY, other]), versioned([other, POLICY])
    assert a == b
    cache_a, cache_b = SnapshotCache(), SnapshotCache()
    assert cache_a.set(a).version == cache_b.set(b).version
    assert set(cache_a.current.versions(codec.RATE_LIMIT_TYPE_URL)) == {NAME, "rl/default/web-2"}
    assert dict(cache_a.current.versions(codec.TRAFFIC_POLICY_TYPE_URL)) == {}
