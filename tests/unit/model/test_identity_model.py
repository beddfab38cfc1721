"""SPIFFE identity parsing: round trips, every rejection class, and property tests."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ambit.model.identity import (
    DEFAULT_TRUST_DOMAIN,
    Identity,
    IdentityError,
    NodeIdentity,
    parse_spiffe_id,
)
from ambit.model.placement import PodPlacement

TD_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789.-_"
SEGMENT_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_"

trust_domains = st.text(TD_ALPHABET, min_size=1, max_size=60)
segments = st.text(SEGMENT_ALPHABET, min_size=1, max_size=60).filter(lambda s: s not in (".", ".."))
identities = st.builds(Identity, trust_domains, segments, segments)
node_identities = st.builds(NodeIdentity, trust_domains, segments)


def test_workload_identity_parses_and_formats() -> None:
    identity = Identity.parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
    assert identity == Identity("cluster.local", "default", "bookinfo-productpage")
    assert str(identity) == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"


def test_node_identity_parses_and_formats() -> None:
    node = NodeIdentity.parse("spiffe://cluster.local/node/node-2")
    assert node == NodeIdentity("cluster.local", "node-2")
    assert str(node) == "spiffe://cluster.local/node/node-2"


def test_parse_spiffe_id_returns_the_right_kind() -> None:
    assert isinstance(parse_spiffe_id("spiffe://td/ns/a/sa/b"), Identity)
    assert isinstance(parse_spiffe_id("spiffe://td/node/n1"), NodeIdentity)


def test_workload_and_node_identities_are_not_interchangeable() -> None:
    with pytest.raises(IdentityError, match="is a node identity"):
        Identity.parse("spiffe://td/node/n1")
    with pytest.raises(IdentityError, match="is a workload identity"):
        NodeIdentity.parse("spiffe://td/ns/a/sa/b")
    # Same trust domain and a segment that happens to match never makes them equal.
    assert NodeIdentity("td", "x") != Identity("td", "x", "x")  # type: ignore[comparison-overlap]


def test_identities_are_hashable_values() -> None:
    a = Identity.parse("spiffe://td/ns/a/sa/b")
    b = Identity("td", "a", "b")
    assert {a: 1}[b] == 1
    with pytest.raises(AttributeError):
        a.namespace = "other"  # type: ignore[misc]


def test_default_trust_domain() -> None:
    assert DEFAULT_TRUST_DOMAIN == "cluster.local"


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        # scheme
        ("SPIFFE://cluster.local/ns/a/sa/b", "lowercase 'spiffe://'"),
        ("Spiffe://cluster.local/ns/a/sa/b", "lowercase 'spiffe://'"),
        ("https://cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("spiffe:/cluster.local/ns/a/sa/b", "must start with 'spiffe://'"),
        ("", "must start with 'spiffe://'"),
        # trust domain
        ("spiffe:///ns/a/sa/b", "trust domain is empty"),
        ("spiffe://Cluster.local/ns/a/sa/b", "only lowercase letters"),
        ("spiffe://clu$ter/ns/a/sa/b", "only lowercase letters"),
        ("spiffe://cluster.local:8080/ns/a/sa/b", "contains a port"),
        ("spiffe://user@cluster.local/ns/a/sa/b", "contains userinfo"),
        ("spiffe://user:pw@cluster.local/ns/a/sa/b", "userinfo"),
        ("spiffe://" + "a" * 256 + "/ns/a/sa/b", "trust domain is 256 characters long"),
        # path shape
        ("spiffe://cluster.local", "has no path"),
        ("spiffe://cluster.local/", "has no path"),
        ("spiffe://cluster.local/ns/a/sa/b/", "trailing '/'"),
        ("spiffe://cluster.local/ns//sa/b", "empty path segment"),
        ("spiffe://cluster.local//ns/a/sa/b", "empty path segment"),
        ("spiffe://cluster.local/ns/a/sa/b/extra", "expected exactly"),
        ("spiffe://cluster.local/ns/a/sa", "expected exactly"),
        ("spiffe://cluster.local/namespace/a/sa/b", "expected exactly"),
        ("spiffe://cluster.local/ns/a/serviceaccount/b", "expected exactly"),
        ("spiffe://cluster.local/NS/a/SA/b", "expected exactly"),
        ("spiffe://cluster.local/node", "expected exactly"),
        ("spiffe://cluster.local/node/a/b", "expected exactly"),
        ("spiffe://cluster.local/sa/b/ns/a", "expected exactly"),
        # dot segments
        ("spiffe://cluster.local/ns/./sa/b", "dot segments"),
        ("spiffe://cluster.local/ns/../sa/b", "dot segments"),
        ("spiffe://cluster.local/node/..", "dot segments"),
        # segment characters
        ("spiffe://cluster.local/ns/a b/sa/b", "only letters, digits"),
        ("spiffe://cluster.local/ns/a/sa/b*", "only letters, digits"),
        ("spiffe://cluster.local/ns/a/sa/bé", "only letters, digits"),
        ("spiffe://cluster.local/ns/a/sa/b\\c", "only letters, digits"),
        # encodings and URI parts
        ("spiffe://cluster.local/ns/a%2Fb/sa/b", "percent-encoding"),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "query"),
        ("spiffe://cluster.local/ns/a/sa/b#frag", "fragment"),
        # control characters
        ("spiffe://cluster.local/ns/a\x00/sa/b", "NUL byte"),
        ("spiffe://cluster.local/ns/a/sa/b\n", "control character"),
        ("spiffe://cluster.local/ns/a\t/sa/b", "control character"),
        ("spiffe://cluster.local/ns/a\x7f/sa/b", "control character"),
        # total length
        ("spiffe://cluster.local/ns/" + "a" * 2048 + "/sa/b", "maximum is 2048"),
    ],
)
def test_rejections_carry_the_reason(uri: str, reason: str) -> None:
    with pytest.raises(IdentityError, match=re.escape(reason)) as info:
        parse_spiffe_id(uri)
    assert isinstance(info.value, ValueError)


def test_length_limit_counts_utf8_bytes_and_accepts_exactly_2048() -> None:
    prefix = "spiffe://td/ns/a/sa/"
    longest = prefix + "b" * (2048 - len(prefix))
    assert str(Identity.parse(longest)) == longest
    with pytest.raises(IdentityError, match="2049 bytes"):
        parse_spiffe_id(longest + "b")


def test_trust_domain_of_255_chars_is_accepted() -> None:
    assert Identity.parse("spiffe://" + "a" * 255 + "/ns/a/sa/b").trust_domain == "a" * 255


def test_non_string_input_is_an_identity_error() -> None:
    with pytest.raises(IdentityError, match="must be a string"):
        parse_spiffe_id(b"spiffe://td/ns/a/sa/b")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"trust_domain": "", "namespace": "a", "service_account": "b"}, "trust domain is empty"),
        ({"trust_domain": "TD", "namespace": "a", "service_account": "b"}, "only lowercase"),
        ({"trust_domain": "td", "namespace": "a/b", "service_account": "b"}, "namespace 'a/b'"),
        ({"trust_domain": "td", "namespace": "", "service_account": "b"}, "namespace is empty"),
        ({"trust_domain": "td", "namespace": "a", "service_account": ".."}, "dot segments"),
        ({"trust_domain": "td", "namespace": "a", "service_account": "b\x00"}, "service account"),
    ],
)
def test_invalid_identity_cannot_be_constructed(kwargs: dict[str, str], reason: str) -> None:
    with pytest.raises(IdentityError, match=reason):
        Identity(**kwargs)


def test_invalid_node_identity_cannot_be_constructed() -> None:
    with pytest.raises(IdentityError, match="node name"):
        NodeIdentity("td", "node/1")
    with pytest.raises(IdentityError, match="port"):
        NodeIdentity("td:1", "n")


def test_error_messages_truncate_huge_inputs() -> None:
    with pytest.raises(IdentityError) as info:
        parse_spiffe_id("spiffe://td/ns/" + "x" * 1000 + "$/sa/b")
    assert len(str(info.value)) < 400


@given(identities)
def test_workload_round_trip(identity: Identity) -> None:
    assert Identity.parse(str(identity)) == identity
    assert parse_spiffe_id(str(identity)) == identity


@given(node_identities)
def test_node_round_trip(identity: NodeIdentity) -> None:
    assert NodeIdentity.parse(str(identity)) == identity


@given(st.text(max_size=300))
def test_random_text_only_ever_raises_identity_error(text: str) -> None:
    try:
        parsed = parse_spiffe_id(text)
    except IdentityError:
        return
    assert str(parsed) == text


@given(
    st.text(max_size=80),
    st.sampled_from(["spiffe://", "spiffe://td/", "spiffe://td/ns/", "spiffe://td/ns/a/sa/"]),
)
def test_random_suffixes_after_valid_prefixes_never_crash(suffix: str, prefix: str) -> None:
    try:
        parsed = parse_spiffe_id(prefix + suffix)
    except IdentityError:
        return
    # Whatever parses must format back to exactly the input (no normalisation, no aliasing).
    assert str(parsed) == prefix + suffix


def test_pod_placement_validates_phase() -> None:
    pod = PodPlacement("default", "web-1", "uid-1", "web", "node-1", "Running")
    assert not pod.terminated
    assert PodPlacement("default", "job", "uid-2", "web", "node-1", "Succeeded").terminated
    assert PodPlacement("default", "job", "uid-3", "web", "node-1", "Failed").terminated
    with pytest.raises(ValueError, match="phase 'running'"):
        PodPlacement("default", "web-1", "uid-1", "web", "node-1", "running")
