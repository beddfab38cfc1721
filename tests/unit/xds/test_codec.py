"""Wire ↔ model: exact round trips for every field, and every way a received resource is refused."""

from __future__ import annotations

import dataclasses
import ipaddress
import re

import pytest
from google.protobuf import any_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.model.policy import Action, Authorization, Clause, Match, MatchKind, Rule, Scope, StringMatch
from ambit.model.workload import (
    HealthStatus,
    Locality,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.protocol.xds import DeltaRequest, DeltaResponse, ErrorDetail, ResourceRef
from ambit.state import resource_name
from ambit.state.snapshot import Resource
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.security.v1 import authorization_pb2
from ambit.xds.pb.workload.v1 import workload_pb2

# -- strategies --------------------------------------------------------------------------------

segments = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True).filter(lambda s: s not in (".", ".."))
texts = st.text(max_size=12)
nonempty = st.text(min_size=1, max_size=12)
trust_domains = st.sampled_from(["cluster.local", "example.org", "td-2.internal"])
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
ips = st.one_of(ipv4, ipv6)
ports = st.integers(1, 65535)
keys = st.builds(lambda ns, name: f"{ns}/{name}", segments, segments)


@st.composite
def cidrs(draw: st.DrawFn) -> str:
    address = ipaddress.ip_address(draw(ips))
    length = draw(st.integers(0, address.max_prefixlen))
    return f"{address}/{length}"


waypoints = st.builds(WaypointRef, namespace=segments, hostname=nonempty, port=ports)


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    service_keys = draw(st.lists(keys, unique=True, max_size=3))
    return Workload(
        uid=draw(nonempty),
        name=draw(nonempty),
        namespace=draw(segments),
        service_account=draw(segments),
        node=draw(texts),
        addresses=tuple(draw(st.lists(ips, max_size=3))),
        tunnel_protocol=draw(st.sampled_from(TunnelProtocol)),
        status=draw(st.sampled_from(HealthStatus)),
        trust_domain=draw(trust_domains),
        waypoint=draw(st.none() | waypoints),
        services=tuple(
            (
                key,
                tuple(
                    draw(
                        st.lists(
                            st.builds(PortMapping, service_port=ports, target_port=st.integers(0, 65535)),
                            max_size=3,
                        )
                    )
                ),
            )
            for key in service_keys
        ),
        authorization_policies=tuple(draw(st.lists(keys, max_size=3))),
        locality=draw(st.builds(Locality, region=texts, zone=texts, subzone=texts)),
        workload_name=draw(texts),
        canonical_name=draw(texts),
        canonical_revision=draw(texts),
        capacity=draw(st.integers(0, 2**32 - 1)),
    )


services = st.builds(
    Service,
    name=segments,
    namespace=segments,
    hostname=nonempty,
    vips=st.lists(ips, max_size=3).map(tuple),
    ports=st.lists(
        st.builds(
            ServicePort,
            port=ports,
            target_port=st.integers(0, 65535),
            target_port_name=texts,
            name=texts,
            app_protocol=texts,
        ),
        max_size=3,
    ).map(tuple),
    waypoint=st.none() | waypoints,
)

string_matches = st.one_of(
    st.builds(
        StringMatch, kind=st.sampled_from([MatchKind.EXACT, MatchKind.PREFIX, MatchKind.SUFFIX]), value=texts
    ),
    st.just(StringMatch(MatchKind.PRESENCE)),
)


def _tuples(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=2).map(tuple)


matches = st.builds(
    Match,
    namespaces=_tuples(string_matches),
    not_namespaces=_tuples(string_matches),
    principals=_tuples(string_matches),
    not_principals=_tuples(string_matches),
    source_ips=_tuples(cidrs()),
    not_source_ips=_tuples(cidrs()),
    destination_ips=_tuples(cidrs()),
    not_destination_ips=_tuples(cidrs()),
    destination_ports=_tuples(ports),
    not_destination_ports=_tuples(ports),
)

authorizations = st.builds(
    Authorization,
    name=segments,
    namespace=segments,
    scope=st.sampled_from(Scope),
    action=st.sampled_from(Action),
    rules=_tuples(st.builds(Rule, clauses=_tuples(st.builds(Clause, matches=_tuples(matches))))),
    dry_run=st.booleans(),
)

resources = st.one_of(workloads(), services, authorizations)


def wire_round_trip(value: Resource) -> Resource:
    """model → Resource message → bytes → Resource message → model, the way it travels."""
    type_url = codec.type_url_for(value)
    encoded = codec.encode_resource(resource_name(value), "v1", value).SerializeToString()
    decoded = discovery_pb2.Resource.FromString(encoded)
    name, version, back = codec.decode_resource(decoded, type_url)
    assert (name, version) == (resource_name(value), "v1")
    return back


# -- round trips -------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(resources)
def test_round_trip_is_exact(value: Resource) -> None:
    assert wire_round_trip(value) == value


@settings(max_examples=50, deadline=None)
@given(resources)
def test_deterministic_bytes_are_stable(value: Resource) -> None:
    assert codec.deterministic_bytes(value) == codec.deterministic_bytes(dataclasses.replace(value))


def test_every_model_field_is_exercised() -> None:
    """Guard: a new model field must be added to the codec (and these strategies) before it ships."""
    assert {f.name for f in dataclasses.fields(Workload)} == {
        "uid", "name", "namespace", "service_account", "node", "addresses", "tunnel_protocol", "status",
        "trust_domain", "waypoint", "services", "authorization_policies", "locality", "workload_name",
        "canonical_name", "canonical_revision", "capacity",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(Service)} == {
        "name", "namespace", "hostname", "vips", "ports", "waypoint",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(ServicePort)} == {
        "port", "target_port", "target_port_name", "name", "app_protocol",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(Match)} == {
        "namespaces", "not_namespaces", "principals", "not_principals", "source_ips", "not_source_ips",
        "destination_ips", "not_destination_ips", "destination_ports", "not_destination_ports",
    }  # fmt: skip
    assert {f.name for f in dataclasses.fields(Authorization)} == {
        "name", "namespace", "scope", "action", "rules", "dry_run",
    }  # fmt: skip


def test_type_urls_match_the_descriptors() -> None:
    assert "type.googleapis.com/" + workload_pb2.Address.DESCRIPTOR.full_name == codec.ADDRESS_TYPE_URL
    assert (
        "type.googleapis.com/" + authorization_pb2.Authorization.DESCRIPTOR.full_name
        == codec.AUTHORIZATION_TYPE_URL
    )
    assert codec.type_url_for_name("wl/x") == codec.ADDRESS_TYPE_URL
    assert codec.type_url_for_name("svc/ns/h") == codec.ADDRESS_TYPE_URL
    assert codec.type_url_for_name("ap/ns/p") == codec.AUTHORIZATION_TYPE_URL
    assert codec.type_url_for_name("other/x") is None


def test_default_trust_domain_and_capacity_are_elided() -> None:
    w = Workload("u", "p", "default", "sa", "n1", ("10.0.0.1",))
    pb = codec.workload_to_pb(w)
    assert pb.trust_domain == ""
    assert not pb.HasField("capacity")
    assert pb.addresses == [bytes([10, 0, 0, 1])]
    assert codec.workload_from_pb("wl/u", pb) == w


# -- refusals ----------------------------------------------------------------------------------

BASE = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))


def _packed_workload(pb: workload_pb2.Workload) -> discovery_pb2.Resource:
    packed = any_pb2.Any()
    packed.Pack(workload_pb2.Address(workload=pb))
    return discovery_pb2.Resource(name=f"wl/{pb.uid}", version="1", resource=packed)


def _mutated(**changes: object) -> discovery_pb2.Resource:
    pb = codec.workload_to_pb(BASE)
    for field_name, value in changes.items():
        if isinstance(value, list):
            del getattr(pb, field_name)[:]
            getattr(pb, field_name).extend(value)
        else:
            setattr(pb, field_name, value)
    return _packed_workload(pb)


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (_mutated(addresses=[b"\x0a\x00\x00\x01\x05"]), "address 0 has 5 bytes"),
        (_mutated(service_account="bad/sa"), "service account"),
        (_mutated(namespace=""), "namespace is empty"),
        (_mutated(trust_domain="Bad.Domain"), "trust domain"),
        (_mutated(tunnel_protocol=7), "unknown tunnel protocol 7"),
        (_mutated(status=9), "unknown workload status 9"),
        (_mutated(name=""), "name is empty"),
        (_mutated(authorization_policies=["no-slash"]), "authorization policy"),
    ],
)
def test_invalid_workloads_are_rejected(resource: discovery_pb2.Resource, reason: str) -> None:
    with pytest.raises(codec.XdsRejected, match=reason) as info:
        codec.decode_resource(resource, codec.ADDRESS_TYPE_URL)
    assert info.value.resource_name == "wl/u1"


def test_invalid_service_port_and_duplicate_service_are_rejected() -> None:
    pb = codec.workload_to_pb(BASE)
    entry = pb.services.add(service_key="default/web")
    entry.ports.ports.add(service_port=70000, target_port=1)
    with pytest.raises(codec.XdsRejected, match="service port 70000"):
        codec.decode_resource(_packed_workload(pb), codec.ADDRESS_TYPE_URL)
    pb = codec.workload_to_pb(BASE)
    pb.services.add(service_key="default/web")
    pb.services.add(service_key="default/web")
    with pytest.raises(codec.XdsRejected, match="listed twice"):
        codec.decode_resource(_packed_workload(pb), codec.ADDRESS_TYPE_URL)


def test_envelope_level_refusals() -> None:
    good = codec.encode_resource("wl/u1", "1", BASE)
    # name and value disagree
    renamed = discovery_pb2.Resource()
    renamed.CopyFrom(good)
    renamed.name = "wl/other"
    with pytest.raises(codec.XdsRejected, match="holds wl/u1"):
        codec.decode_resource(renamed, codec.ADDRESS_TYPE_URL)
    # resource of the wrong type for the response
    with pytest.raises(codec.XdsRejected, match="does not belong"):
        codec.decode_resource(good, codec.AUTHORIZATION_TYPE_URL)
    # no version, no payload, no name
    for field_name, reason in (("version", "no version"), ("resource", "no payload"), ("name", "no name")):
        broken = discovery_pb2.Resource()
        broken.CopyFrom(good)
        broken.ClearField(field_name)
        with pytest.raises(codec.XdsRejected, match=reason):
            codec.decode_resource(broken, codec.ADDRESS_TYPE_URL)
    # payload of the wrong message type
    wrong = discovery_pb2.Resource(name="wl/u1", version="1")
    wrong.resource.Pack(authorization_pb2.Authorization(name="x", namespace="y"))
    with pytest.raises(
        codec.XdsRejected, match=re.escape("expected type.googleapis.com/ambit.workload.v1.Address")
    ):
        codec.decode_resource(wrong, codec.ADDRESS_TYPE_URL)
    # garbage bytes
    garbage = discovery_pb2.Resource(name="wl/u1", version="1")
    garbage.resource.type_url = codec.ADDRESS_TYPE_URL
    garbage.resource.value = b"\xff\xff\xff"
    with pytest.raises(codec.XdsRejected, match="does not parse"):
        codec.decode_resource(garbage, codec.ADDRESS_TYPE_URL)
    # an empty Address
    empty = discovery_pb2.Resource(name="wl/u1", version="1")
    empty.resource.Pack(workload_pb2.Address())
    with pytest.raises(codec.XdsRejected, match="neither a workload nor a service"):
        codec.decode_resource(empty, codec.ADDRESS_TYPE_URL)


def test_invalid_policies_are_rejected() -> None:
    def packed(pb: authorization_pb2.Authorization) -> discovery_pb2.Resource:
        resource = discovery_pb2.Resource(name=f"ap/{pb.namespace}/{pb.name}", version="1")
        resource.resource.Pack(pb)
        return resource

    base = Authorization("p", "ns", Scope.NAMESPACE, Action.DENY, (Rule((Clause((Match(),)),)),))
    pb = codec.authorization_to_pb(base)
    pb.rules[0].clauses[0].matches[0].source_ips.add(address=b"\x01\x02\x03\x04", length=33)
    with pytest.raises(codec.XdsRejected, match="longer than 32 bits"):
        codec.decode_resource(packed(pb), codec.AUTHORIZATION_TYPE_URL)
    pb = codec.authorization_to_pb(base)
    pb.rules[0].clauses[0].matches[0].principals.add()
    with pytest.raises(codec.XdsRejected, match="no match type"):
        codec.decode_resource(packed(pb), codec.AUTHORIZATION_TYPE_URL)
    pb = codec.authorization_to_pb(base)
    pb.scope = 5
    with pytest.raises(codec.XdsRejected, match="unknown policy scope 5"):
        codec.decode_resource(packed(pb), codec.AUTHORIZATION_TYPE_URL)
    pb = codec.authorization_to_pb(base)
    pb.rules[0].clauses[0].matches[0].destination_ports.append(0)
    with pytest.raises(codec.XdsRejected, match="destination port 0"):
        codec.decode_resource(packed(pb), codec.AUTHORIZATION_TYPE_URL)


def test_encoding_refuses_values_without_a_wire_form() -> None:
    with pytest.raises(codec.XdsEncodeError, match="not an IP address") as info:
        codec.encode_resource("wl/u1", "1", dataclasses.replace(BASE, addresses=("not-an-ip",)))
    assert info.value.resource_name == "wl/u1"
    bad_cidr = Authorization(
        "p", "ns", Scope.GLOBAL, Action.ALLOW, (Rule((Clause((Match(source_ips=("x/8",)),)),)),)
    )
    with pytest.raises(codec.XdsEncodeError, match="CIDR"):
        codec.encode_resource("ap/ns/p", "1", bad_cidr)
    with pytest.raises(codec.XdsEncodeError, match="holds a value named"):
        codec.encode_resource("wl/other", "1", BASE)
    with pytest.raises(codec.XdsEncodeError, match="out of range"):
        codec.encode_resource("wl/u1", "1", dataclasses.replace(BASE, waypoint=WaypointRef("ns", "h", 70000)))


def test_unprefixed_cidr_encodes_as_a_host_route() -> None:
    policy = Authorization(
        "p", "ns", Scope.GLOBAL, Action.ALLOW, (Rule((Clause((Match(source_ips=("10.1.2.3",)),)),)),)
    )
    back = wire_round_trip(policy)
    assert isinstance(back, Authorization)
    assert back.rules[0].clauses[0].matches[0].source_ips == ("10.1.2.3/32",)


def test_waypoint_port_zero_means_hbone_port() -> None:
    pb = codec.workload_to_pb(BASE)
    pb.waypoint.hostname.namespace = "ns"
    pb.waypoint.hostname.hostname = "wp.ns.svc.cluster.local"
    assert codec.workload_from_pb("wl/u1", pb).waypoint == WaypointRef("ns", "wp.ns.svc.cluster.local", 15008)


# -- envelopes ---------------------------------------------------------------------------------


def test_request_round_trip() -> None:
    request = DeltaRequest(
        type_url=codec.ADDRESS_TYPE_URL,
        subscribe=("*",),
        unsubscribe=("wl/x",),
        initial_versions={"wl/a": "1"},
        response_nonce="7",
        error=ErrorDetail(3, "rejected", ("wl/a", "wl/b")),
        node_id="ztunnel-n1",
    )
    wire = discovery_pb2.DeltaDiscoveryRequest.FromString(codec.request_to_pb(request).SerializeToString())
    assert wire.node.id == "ztunnel-n1"
    assert codec.request_from_pb(wire) == request
    plain = DeltaRequest(type_url=codec.AUTHORIZATION_TYPE_URL, response_nonce="8")
    assert codec.request_from_pb(codec.request_to_pb(plain)) == plain
    assert not codec.request_to_pb(plain).HasField("error_detail")


def test_nack_from_a_client_that_names_nothing() -> None:
    pb = discovery_pb2.DeltaDiscoveryRequest(type_url="t", response_nonce="1")
    pb.error_detail.code = 13
    pb.error_detail.message = "no"
    pb.error_detail.details.add().Pack(discovery_pb2.Status(code=1))  # an unrelated detail is ignored
    assert codec.request_from_pb(pb).error == ErrorDetail(13, "no", ())


def test_response_encode_and_decode_with_a_bad_resource() -> None:
    good = Workload("u1", "pod", "default", "sa", "n1", ("10.0.0.1",))
    bad = _mutated(addresses=[b"\x01"])
    bad.name, bad.version = "wl/u2", "9"
    bad_value = workload_pb2.Address()
    bad.resource.Unpack(bad_value)
    bad_value.workload.uid = "u2"
    bad.resource.Pack(bad_value)
    response = DeltaResponse(
        codec.ADDRESS_TYPE_URL,
        "n1",
        (ResourceRef("wl/u1", "1"), ResourceRef("wl/u2", "9")),
        ("wl/old",),
        "sv",
    )
    pb = codec.response_to_pb(response, {"wl/u1": codec.encode_resource("wl/u1", "1", good), "wl/u2": bad})
    back, decoded, rejected = codec.decode_response(
        discovery_pb2.DeltaDiscoveryResponse.FromString(pb.SerializeToString())
    )
    assert back == response
    assert decoded == {"wl/u1": ("1", good)}
    assert set(rejected) == {"wl/u2"} and "has 1 bytes" in rejected["wl/u2"]


def test_duplicate_resource_in_one_response_is_rejected() -> None:
    resource = codec.encode_resource("wl/u1", "1", BASE)
    pb = discovery_pb2.DeltaDiscoveryResponse(
        type_url=codec.ADDRESS_TYPE_URL, nonce="1", resources=[resource, resource]
    )
    _response, decoded, rejected = codec.decode_response(pb)
    assert decoded == {}
    assert rejected == {"wl/u1": "resource appears twice in one response"}
