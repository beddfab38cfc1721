"""Reading manifests: YAML/JSON streams, error messages with positions, kind names, hostile input."""

from __future__ import annotations

import contextlib
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ambit.resources import (
    ManifestError,
    format_path,
    is_namespaced,
    parse_manifests,
    resolve_kind,
    unknown_kind,
)

SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  ports:
  - port: 80
"""

NAMESPACE = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
"""


def test_multi_document_stream_skips_empty_documents() -> None:
    text = f"---\n# only a comment\n---\n{SERVICE}---\n---\n{NAMESPACE}...\n"
    objs = parse_manifests(text, "app.yaml")
    assert [o["kind"] for o in objs] == ["Service", "Namespace"]
    assert objs[0]["metadata"]["namespace"] == "default"
    assert objs[0]["spec"]["ports"][0]["targetPort"] == 80  # normalized


def test_empty_text_is_no_objects() -> None:
    assert parse_manifests("", "empty.yaml") == []
    assert parse_manifests("# nothing\n---\n", "empty.yaml") == []


def test_json_object_and_array() -> None:
    obj = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}}
    assert parse_manifests(json.dumps(obj), "a.json") == [obj]
    objs = parse_manifests(json.dumps([obj, {**obj, "metadata": {"name": "b"}}]), "ab.json")
    assert [o["metadata"]["name"] for o in objs] == ["a", "b"]


def test_yaml_flow_mapping_is_read_as_yaml() -> None:
    objs = parse_manifests("{apiVersion: v1, kind: Namespace, metadata: {name: a}}", "flow.yaml")
    assert objs[0]["metadata"]["name"] == "a"


def test_kind_list_is_flattened() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: a}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: sa, namespace: a}}
"""
    objs = parse_manifests(text, "list.yaml")
    assert [o["kind"] for o in objs] == ["Namespace", "ServiceAccount"]
    typed = parse_manifests("apiVersion: v1\nkind: ServiceList\nitems: []\n", "l.yaml")
    assert typed == []


def test_list_item_error_names_its_position() -> None:
    text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {}}\n"
    with pytest.raises(ManifestError) as info:
        parse_manifests(text, "list.yaml")
    assert (
        str(info.value) == "list.yaml: document 1, items[0] (Pod): metadata.name: required field is missing"
    )


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("apiVersion: v1\nkind: Service\nmetadata:\n  name: [web\n", 5, "invalid YAML"),
        ("apiVersion: v1\nkind: Service\n  metadata: x\n", 3, "invalid YAML"),
        ('a: "unterminated\n', 2, "invalid YAML"),
        ("a: 1\n\tb: 2\n", 2, "invalid YAML"),
        (f"{SERVICE}---\nkey: value\n bad: indent\n", 10, "invalid YAML"),
    ],
)
def test_yaml_syntax_error_has_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifests(text, "broken.yaml")
    assert info.value.line == line
    assert str(info.value).startswith(f"broken.yaml: line {line}, column ")
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("- a\n- b\n", "bad.yaml: document 1: expected an object"),
        ("just a string\n", "bad.yaml: document 1: expected an object"),
        (f"{NAMESPACE}---\n42\n", "bad.yaml: document 2: expected an object"),
        (
            f"{NAMESPACE}---\n{NAMESPACE}---\nkind: Pod\n",
            "bad.yaml: document 3 (Pod): apiVersion: required field is missing",
        ),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: 7}\n",
            "bad.yaml: document 1 (Pod): metadata.name: expected a string",
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
            "spec: {ports: [{port: '80'}]}\n",
            "bad.yaml: Service/shop/web: spec.ports[0].port: expected an integer, got string '80'",
        ),
        (
            "apiVersion: apps/v1\nkind: Service\nmetadata: {name: web}\n",
            "bad.yaml: Service/default/web: apiVersion: Service is served as v1, not 'apps/v1'",
        ),
    ],
)
def test_document_errors(text: str, expected: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifests(text, "bad.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_kubernetes_yaml_reading() -> None:
    text = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: p
  creationTimestamp: 2024-05-01T10:00:00Z
  annotations:
    note: =
spec:
  selector: {matchLabels: {app: a}}
  portLevelMtls:
    8080: {mode: PERMISSIVE}
"""
    (obj,) = parse_manifests(text, "pa.yaml")
    assert obj["metadata"]["creationTimestamp"] == "2024-05-01T10:00:00Z"  # a string, not a datetime
    assert obj["metadata"]["annotations"] == {"note": "="}
    assert obj["spec"]["portLevelMtls"] == {"8080": {"mode": "PERMISSIVE"}}  # int key -> string key
    json.dumps(obj)  # plain JSON data


def test_recursive_alias_is_rejected() -> None:
    with pytest.raises(ManifestError, match="refers to itself"):
        parse_manifests("a: &x [*x]\n", "loop.yaml")


def test_alias_bomb_is_bounded() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    with pytest.raises(ManifestError, match="too large"):
        parse_manifests("\n".join(lines) + "\n", "bomb.yaml")


def test_deep_nesting_is_rejected() -> None:
    with pytest.raises(ManifestError):
        parse_manifests("a: " + "[" * 5000 + "]" * 5000 + "\n", "deep.yaml")
    with pytest.raises(ManifestError):
        parse_manifests("[" * 5000 + "]" * 5000, "deep.json")


def test_python_tags_are_refused() -> None:
    with pytest.raises(ManifestError):
        parse_manifests("a: !!python/object/apply:os.system ['true']\n", "evil.yaml")


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_manifests("[", "x.yaml")


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        (("spec", "ports", 0, "port"), "spec.ports[0].port"),
        (("metadata", "labels", "app.kubernetes.io/name"), 'metadata.labels["app.kubernetes.io/name"]'),
        (("metadata", "labels", "bad key", "[key]"), 'metadata.labels["bad key"] (key)'),
        (("spec", "rules", 0, "from", 1, "source"), "spec.rules[0].from[1].source"),
        ((), ""),
    ],
)
def test_format_path(loc: tuple[str | int, ...], text: str) -> None:
    assert format_path(loc) == text


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("pods", "Pod"),
        ("pod", "Pod"),
        ("po", "Pod"),
        ("Pod", "Pod"),
        ("PODS", "Pod"),
        ("svc", "Service"),
        ("services", "Service"),
        ("service", "Service"),
        ("deploy", "Deployment"),
        ("deployments", "Deployment"),
        ("deployment.apps", "Deployment"),
        ("ns", "Namespace"),
        ("namespaces", "Namespace"),
        ("no", "Node"),
        ("nodes", "Node"),
        ("sa", "ServiceAccount"),
        ("serviceaccounts", "ServiceAccount"),
        ("pdb", "PodDisruptionBudget"),
        ("poddisruptionbudgets", "PodDisruptionBudget"),
        ("gtw", "Gateway"),
        ("gateways", "Gateway"),
        ("gateways.gateway.networking.k8s.io", "Gateway"),
        ("gatewayclasses", "GatewayClass"),
        ("httproute", "HTTPRoute"),
        ("httproutes", "HTTPRoute"),
        ("HTTPRoute", "HTTPRoute"),
        ("grpcroute", "GRPCRoute"),
        ("grpcroutes", "GRPCRoute"),
        ("tcproutes", "TCPRoute"),
        ("ap", "AuthorizationPolicy"),
        ("authorizationpolicies", "AuthorizationPolicy"),
        ("authorizationpolicy", "AuthorizationPolicy"),
        ("authorizationpolicies.security.istio.io", "AuthorizationPolicy"),
        ("pa", "PeerAuthentication"),
        ("peerauthentications", "PeerAuthentication"),
        ("widgets", "widgets"),
        ("Widget", "Widget"),
    ],
)
def test_resolve_kind(text: str, kind: str) -> None:
    assert resolve_kind(text) == kind


@pytest.mark.parametrize(
    ("kind", "namespaced"),
    [
        ("Namespace", False),
        ("Node", False),
        ("GatewayClass", False),
        ("Pod", True),
        ("Service", True),
        ("AuthorizationPolicy", True),
        ("Widget", True),
    ],
)
def test_is_namespaced(kind: str, namespaced: bool) -> None:
    assert is_namespaced(kind) is namespaced


def test_unknown_kind() -> None:
    assert not unknown_kind({"kind": "Pod"})
    assert unknown_kind({"kind": "Widget"})
    assert unknown_kind({})
    assert unknown_kind({"kind": 3})


def test_unknown_kinds_pass_through_parse() -> None:
    text = "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: L}\n"
    (obj,) = parse_manifests(text, "w.yaml")
    assert obj == {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": "L"},
    }


# --- hostile input ---------------------------------------------------------------------------------

_FRAGMENTS = [
    *(string.ascii_letters + string.digits + " -:{}[],&*!|>'\"#%@`?.=\n\t/\\"),
    "---\n",
    "apiVersion: v1\n",
    "kind: Service\n",
    "kind: List\n",
    "metadata:\n",
    "  name: a\n",
    "items:\n",
    "- ",
    "  ",
    "!!binary ",
    "!!set ",
    "!!timestamp ",
    "&a ",
    "*a",
    "? ",
]
_YAMLISH = st.lists(st.sampled_from(_FRAGMENTS), max_size=80).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_YAMLISH)
def test_random_text_raises_only_manifest_error(text: str) -> None:
    try:
        parse_manifests(text, "fuzz.yaml")
    except ManifestError as exc:
        assert str(exc).startswith("fuzz.yaml")


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(
        [
            "Pod",
            "Service",
            "Deployment",
            "Gateway",
            "HTTPRoute",
            "AuthorizationPolicy",
            "PeerAuthentication",
            "Node",
        ]
    ),
    spec=_VALUES,
    meta=_VALUES,
)
def test_random_objects_raise_only_manifest_error(kind: str, spec: object, meta: object) -> None:
    api = {
        "Deployment": "apps/v1",
        "Gateway": "gateway.networking.k8s.io/v1",
        "HTTPRoute": "gateway.networking.k8s.io/v1",
        "AuthorizationPolicy": "security.istio.io/v1",
        "PeerAuthentication": "security.istio.io/v1",
    }.get(kind, "v1")
    doc = json.dumps({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec})
    with contextlib.suppress(ManifestError):
        parse_manifests(doc, "fuzz.json")
