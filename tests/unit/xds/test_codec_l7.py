"""The L7Authorization resource type: exact round trips, refusals, and a proxy taking it end to end."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xds_wire import packed, proxy_state

from ambit.control.cache import SnapshotCache, versioned
from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    Authorization,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    MatchKind,
    PolicyTarget,
    Scope,
    StringMatch,
)
from ambit.model.version import content_version
from ambit.model.workload import Workload
from ambit.proxy.cache import decode_state, encode_state
from ambit.state import L7_POLICY_PREFIX, resource_name
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.security.v1 import authorization_pb2, l7_authorization_pb2

segments = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
texts = st.text(max_size=12)
nonempty = st.text(min_size=1, max_size=12)
ports = st.integers(1, 65535)


@st.composite
def cidrs(draw: st.DrawFn) -> str:
    address = ipaddress.ip_address(draw(st.ip_addresses().map(str)))
    length = draw(st.integers(0, address.max_prefixlen))
    return f"{address}/{length}"


string_matches = st.one_of(
    st.builds(
        StringMatch, kind=st.sampled_from([MatchKind.EXACT, MatchKind.PREFIX, MatchKind.SUFFIX]), value=texts
    ),
    st.just(StringMatch(MatchKind.PRESENCE)),
)


def _tuples(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=2).map(tuple)


header_matches = st.builds(HeaderMatch, name=nonempty, values=_tuples(string_matches))
l7_matches = st.builds(
    L7Match,
    principals=_tuples(string_matches),
    not_principals=_tuples(string_matches),
    namespaces=_tuples(string_matches),
    not_namespaces=_tuples(string_matches),
    source_ips=_tuples(cidrs()),
    not_source_ips=_tuples(cidrs()),
    hosts=_tuples(string_matches),
    not_hosts=_tuples(string_matches),
    methods=_tuples(string_matches),
    not_methods=_tuples(string_matches),
    paths=_tuples(string_matches),
    not_paths=_tuples(string_matches),
    destination_ports=_tuples(ports),
    not_destination_ports=_tuples(ports),
    headers=_tuples(header_matches),
    not_headers=_tuples(header_matches),
)
targets = st.builds(
    PolicyTarget, kind=st.sampled_from([GATEWAY_TARGET, SERVICE_TARGET]), namespace=segments, name=nonempty
)
l7_policies = st.builds(
    L7Authorization,
    name=segments,
    namespace=segments,
    action=st.sampled_from(Action),
    targets=_tuples(targets),
    rules=_tuples(st.builds(L7Rule, clauses=_tuples(st.builds(L7Clause, matches=_tuples(l7_matches))))),
    dry_run=st.booleans(),
)

GW = PolicyTarget(GATEWAY_TARGET, "default", "waypoint")
POLICY = L7Authorization(
    "deny-admin",
    "default",
    Action.DENY,
    (GW,),
    (
        L7Rule(
            (
                L7Clause((L7Match(paths=(StringMatch(MatchKind.PREFIX, "/admin"),)),)),
                L7Clause((L7Match(headers=(HeaderMatch("x-user", (StringMatch(MatchKind.PRESENCE),)),)),)),
            )
        ),
    ),
)
NAME = "l7/default/deny-admin"


def wire_round_trip(value: L7Authorization) -> object:
    encoded = codec.encode_resource(resource_name(value), "v1", value).SerializeToString()
    decoded = discovery_pb2.Resource.FromString(encoded)
    name, version, back = codec.decode_resource(decoded, codec.L7_AUTHORIZATION_TYPE_URL)
    assert (name, version) == (resource_name(value), "v1")
    return back


@settings(max_examples=150, deadline=None)
@given(l7_policies)
def test_round_trip_is_exact(value: L7Authorization) -> None:
    assert wire_round_trip(value) == value


@settings(max_examples=30, deadline=None)
@given(l7_policies)
def test_deterministic_bytes_and_versions_are_stable(value: L7Authorization) -> None:
    copy = dataclasses.replace(value)
    assert codec.deterministic_bytes(value) == codec.deterministic_bytes(copy)
    assert content_version(value) == content_version(copy)


def test_every_model_field_is_exercised() -> None:
    """Guard: a new model field must be added to the codec (and these strategies) before it ships."""
    assert {f.name for f in dataclasses.fields(L7Match)} == {
        "principals", "not_principals", "namespaces", "not_namespaces", "source_ips", "not_source_ips",
        "hosts", "not_hosts", "methods", "not_methods", "paths", "not_paths", "destination_ports",
        "not_destination_ports", "headers", "not_headers",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(L7Authorization)} == {
        "name", "namespace", "action", "targets", "rules", "dry_run",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(PolicyTarget)} == {"kind", "namespace", "name"}
    assert {f.name for f in dataclasses.fields(HeaderMatch)} == {"name", "values"}


def test_names_and_type_urls() -> None:
    assert resource_name(POLICY) == L7_POLICY_PREFIX + "default/deny-admin" == NAME
    assert "type.googleapis.com/" + l7_authorization_pb2.L7Authorization.DESCRIPTOR.full_name == (
        codec.L7_AUTHORIZATION_TYPE_URL
    )
    assert codec.type_url_for_name(NAME) == codec.L7_AUTHORIZATION_TYPE_URL
    assert codec.type_url_for(POLICY) == codec.L7_AUTHORIZATION_TYPE_URL
    assert codec.L7_AUTHORIZATION_TYPE_URL in codec.TYPE_URLS
    assert len(set(codec.TYPE_URLS)) == len(codec.TYPE_URLS)


def _good() -> l7_authorization_pb2.L7Authorization:
    return codec.l7_authorization_to_pb(POLICY)


def _with_match(**fields: object) -> l7_authorization_pb2.L7Authorization:
    pb = _good()
    pb.rules[0].clauses[0].matches[0].CopyFrom(l7_authorization_pb2.L7Match(**fields))
    return pb


@pytest.mark.parametrize(
    ("pb", "reason"),
    [
        (
            l7_authorization_pb2.L7Authorization(
                name="deny-admin",
                namespace="default",
                targets=[l7_authorization_pb2.PolicyTarget(namespace="default", name="w")],
            ),
            "unknown policy target kind 0",
        ),
        (
            l7_authorization_pb2.L7Authorization(
                name="deny-admin",
                namespace="default",
                targets=[l7_authorization_pb2.PolicyTarget(kind=7, namespace="default", name="w")],
            ),
            "unknown policy target kind 7",
        ),
        (
            l7_authorization_pb2.L7Authorization(
                name="deny-admin",
                namespace="default",
                targets=[
                    l7_authorization_pb2.PolicyTarget(kind=l7_authorization_pb2.GATEWAY, namespace="default")
                ],
            ),
            "target name is empty",
        ),
        (
            l7_authorization_pb2.L7Authorization(name="deny-admin", namespace="default", action=5),
            "unknown policy action 5",
        ),
        (_with_match(headers=[l7_authorization_pb2.HeaderMatch(name="")]), "header match name is empty"),
        (_with_match(destination_ports=[70000]), "destination port 70000 is out of range"),
        (_with_match(not_destination_ports=[0]), "destination port 0 is out of range"),
        (
            _with_match(source_ips=[authorization_pb2.Address(address=b"\x01\x02\x03", length=8)]),
            "CIDR address has 3 bytes",
        ),
        (_with_match(hosts=[authorization_pb2.StringMatch()]), "a string match has no match type"),
        (
            l7_authorization_pb2.L7Authorization(name="other", namespace="default"),
            "resource holds l7/default/other",
        ),
    ],
)
def test_bad_resources_are_rejected(pb: l7_authorization_pb2.L7Authorization, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason):
        codec.decode_resource(packed(pb, NAME), codec.L7_AUTHORIZATION_TYPE_URL)


def test_l7_names_belong_only_to_their_type() -> None:
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(packed(_good(), NAME), codec.AUTHORIZATION_TYPE_URL)
    l4 = codec.encode_resource(
        "ap/default/deny-admin",
        "v1",
        Authorization("deny-admin", "default", Scope.NAMESPACE, Action.DENY, ()),
    )
    with pytest.raises(codec.XdsRejected, match="does not belong to type"):
        codec.decode_resource(l4, codec.L7_AUTHORIZATION_TYPE_URL)
    # an L4 payload under an l7/ name
    wrong = discovery_pb2.Resource(name=NAME, version="v1")
    wrong.resource.CopyFrom(l4.resource)
    with pytest.raises(
        codec.XdsRejected, match=re.escape("expected type.googleapis.com/ambit.security.v1.L7Authorization")
    ):
        codec.decode_resource(wrong, codec.L7_AUTHORIZATION_TYPE_URL)


def test_a_proxy_takes_l7_policies_without_nack_and_keeps_its_l4_view() -> None:
    workload = Workload("u1", "web-0", "default", "web", "n1", ("10.244.1.5",))
    l4 = Authorization("allow-all", "default", Scope.NAMESPACE, Action.ALLOW, ())
    store, nacks = proxy_state(versioned([workload, l4, POLICY]))
    assert nacks == []
    snap = store.current
    assert dict(snap.l7_policies) == {"default/deny-admin": POLICY}
    assert snap.l7_policies_for(GATEWAY_TARGET, "default", "waypoint") == (POLICY,)
    # what a ztunnel reads is unchanged by the L7 policy it holds
    assert dict(snap.policies) == {"default/allow-all": l4}
    assert snap.policies_for(workload) == (l4,)
    # and the proxy's on-disk cache keeps it across a restart
    assert decode_state(encode_state(snap.entries)) == dict(snap.entries)


def test_versions_are_deterministic_across_replicas() -> None:
    other = dataclasses.replace(POLICY, name="allow-get", action=Action.ALLOW)
    a = versioned([POLICY, other])
    b = versioned([other, POLICY])
    assert a == b
    cache_a, cache_b = SnapshotCache(), SnapshotCache()
    assert cache_a.set(a).version == cache_b.set(b).version
    assert dict(cache_a.current.versions(codec.L7_AUTHORIZATION_TYPE_URL)) == {
        "l7/default/allow-get": a["l7/default/allow-get"][0],
        NAME: a[NAME][0],
    }
    assert dict(cache_a.current.versions(codec.AUTHORIZATION_TYPE_URL)) == {}
