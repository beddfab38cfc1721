"""ReferenceGrant schema (gateway.networking.k8s.io v1beta1 and v1): valid grants pass, bad fields fail with
their path (ambit.resources.schemas; what a grant permits is ambit.control.reference_grants)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ambit.resources import ManifestError, validate
from ambit.resources.kinds import is_namespaced, resolve_kind

GRANT: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1beta1",
    "kind": "ReferenceGrant",
    "metadata": {"name": "from-tm", "namespace": "other"},
    "spec": {
        "from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "tm"}],
        "to": [{"group": "", "kind": "Service", "name": "other"}],
    },
}


@pytest.mark.parametrize("version", ["v1beta1", "v1"])
def test_a_grant_validates_unchanged(version: str) -> None:
    obj = {**copy.deepcopy(GRANT), "apiVersion": f"gateway.networking.k8s.io/{version}"}
    assert validate(obj, "grant.yaml") == obj


def test_the_kind_is_known_and_namespaced() -> None:
    assert resolve_kind("refgrant") == resolve_kind("referencegrants") == "ReferenceGrant"
    assert is_namespaced("ReferenceGrant")


def test_another_version_is_refused() -> None:
    obj = {**copy.deepcopy(GRANT), "apiVersion": "gateway.networking.k8s.io/v1alpha2"}
    with pytest.raises(ManifestError) as info:
        validate(obj, "grant.yaml")
    assert info.value.path == "apiVersion"


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(GRANT)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return obj


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "where", "text"),
    [
        ("spec", _DELETE, "spec", "required"),
        ("spec.from", _DELETE, "spec.from", "required"),
        ("spec.to", _DELETE, "spec.to", "required"),
        ("spec.from", [], "spec.from", "between 1 and 16"),
        ("spec.to", [{"group": "", "kind": "Service"}] * 17, "spec.to", "between 1 and 16"),
        ("spec.from.0.namespace", _DELETE, "spec.from[0].namespace", "required"),
        ("spec.from.0.namespace", "Not_A_Label", "spec.from[0].namespace", "DNS-1123 label"),
        ("spec.from.0.group", "Bad_Group", "spec.from[0].group", "DNS-1123 subdomain"),
        ("spec.from.0.kind", "", "spec.from[0].kind", "between 1 and 63"),
        ("spec.from.0.kind", "HTTP Route", "spec.from[0].kind", "is not a kind"),
        ("spec.to.0.group", _DELETE, "spec.to[0].group", "required"),
        ("spec.to.0.kind", 5, "spec.to[0].kind", "string"),
        ("spec.to.0.name", "", "spec.to[0].name", "between 1 and 253"),
    ],
)
def test_bad_grant_fields_fail_with_their_path(path: str, value: Any, where: str, text: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate(_with(path, value), "bad.yaml")
    err = info.value
    assert str(err).startswith("bad.yaml: ReferenceGrant/other/from-tm: "), str(err)
    assert err.path == where
    assert text in str(err), str(err)
