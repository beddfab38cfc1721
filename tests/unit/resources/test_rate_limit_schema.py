"""The HTTPLocalRateLimitPolicy schema (policy.ambit.dev/v1alpha1): Linkerd-shaped policies validate, fields
ambit does not read are kept, and every bad field fails naming the file, the object and the field
(ambit.resources.schemas and rules; the translation is ambit.control.translate_rate_limit)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ambit.resources import ManifestError, kind_info, parse_manifests, resolve_kind, validate

FULL: dict[str, Any] = {
    "apiVersion": "policy.ambit.dev/v1alpha1",
    "kind": "HTTPLocalRateLimitPolicy",
    "metadata": {"name": "httpbin-rl", "namespace": "httpbin"},
    "spec": {
        "targetRefs": [
            {"group": "", "kind": "Service", "name": "httpbin"},
            {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"},
        ],
        "total": {"requestsPerSecond": 100, "burst": 20},
        "identity": {"requestsPerSecond": 10, "burst": 10},
        "overrides": [
            {
                "requestsPerSecond": 50,
                "burst": 50,
                "clientRefs": [{"kind": "ServiceAccount", "namespace": "sleep", "name": "sleep"}],
            }
        ],
    },
}

YAML = """\
apiVersion: policy.ambit.dev/v1alpha1
kind: HTTPLocalRateLimitPolicy
metadata: {name: web-rl, namespace: emojivoto}
spec:
  targetRefs:
  - {group: "", kind: Service, name: web-svc}
  total:
    requestsPerSecond: 100
  identity:
    requestsPerSecond: 20
  overrides:
  - requestsPerSecond: 25
    clientRefs:
    - {kind: ServiceAccount, name: special-client}
"""


def test_the_spec_example_validates_unchanged() -> None:
    assert validate(copy.deepcopy(FULL), "rl.yaml") == FULL


def test_linkerds_reference_example_validates() -> None:
    """Linkerd's reference example (web-rl: 100 total, 20 per identity, 25 for special-client), with our
    group and targetRefs; bursts left out default in translation, a clientRef without a namespace is the
    policy's."""
    (obj,) = parse_manifests(YAML, "web-rl.yaml")
    assert obj["spec"]["overrides"][0]["clientRefs"] == [{"kind": "ServiceAccount", "name": "special-client"}]
    assert obj["spec"]["total"] == {"requestsPerSecond": 100}


@pytest.mark.parametrize(
    "spec",
    [
        {"targetRefs": [{"kind": "Service", "name": "web"}], "total": {"requestsPerSecond": 1}},
        {
            "targetRefs": [{"group": "core", "kind": "Service", "name": "web"}],
            "identity": {"requestsPerSecond": 5},
        },
        {
            "targetRefs": [{"kind": "Service", "name": "web", "namespace": "default"}],
            "overrides": [
                {
                    "requestsPerSecond": 1,
                    "clientRefs": [{"group": "", "kind": "ServiceAccount", "name": "a", "namespace": ""}],
                }
            ],
        },
        {"targetRefs": [{"kind": "Service", "name": "web"}], "total": {"requestsPerSecond": 2**32 - 1}},
    ],
)
def test_minimal_specs_validate(spec: dict[str, Any]) -> None:
    obj = {
        "apiVersion": "policy.ambit.dev/v1alpha1",
        "kind": "HTTPLocalRateLimitPolicy",
        "metadata": {"name": "r"},
    }
    out = validate({**obj, "spec": spec}, "rl.yaml")
    assert out["metadata"]["namespace"] == "default"


def test_the_kind_is_known() -> None:
    info = kind_info("HTTPLocalRateLimitPolicy")
    assert info is not None and info.namespaced and info.api_versions == ("policy.ambit.dev/v1alpha1",)
    assert (
        resolve_kind("httplocalratelimitpolicies")
        == resolve_kind("httplocalratelimitpolicies.policy.ambit.dev")
        == "HTTPLocalRateLimitPolicy"
    )


def test_another_version_or_group_is_refused() -> None:
    with pytest.raises(ManifestError, match=r"served as policy\.ambit\.dev/v1alpha1"):
        validate({**FULL, "apiVersion": "policy.linkerd.io/v1alpha1"}, "rl.yaml")


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(FULL)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    if value is _DROP:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return obj


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "where", "text"),
    [
        ("spec.targetRefs", [], "spec.targetRefs", "at least one"),
        ("spec.targetRefs", _DROP, "spec.targetRefs", "required field is missing"),
        ("spec.targetRefs.0.kind", "Deployment", "spec.targetRefs[0].kind", "'Service' or 'Gateway'"),
        ("spec.targetRefs.0.name", "Web_1", "spec.targetRefs[0].name", "DNS-1123"),
        ("spec.targetRefs.0.group", "apps", "spec.targetRefs[0].group", "core group"),
        ("spec.targetRefs.1.group", "", "spec.targetRefs[1].group", "gateway.networking.k8s.io"),
        ("spec.targetRefs.0.namespace", "other", "spec.targetRefs[0].namespace", "its own namespace"),
        ("spec.total.requestsPerSecond", 0, "spec.total.requestsPerSecond", "between 1 and 4294967295"),
        ("spec.total.requestsPerSecond", "100", "spec.total.requestsPerSecond", "integer"),
        ("spec.total.requestsPerSecond", _DROP, "spec.total.requestsPerSecond", "required field is missing"),
        ("spec.total.burst", 0, "spec.total.burst", "between 1 and 4294967295"),
        ("spec.total.burst", 2**32, "spec.total.burst", "between 1 and 4294967295"),
        ("spec.identity.burst", -1, "spec.identity.burst", "between 1"),
        (
            "spec.identity.requestsPerSecond",
            101,
            "spec.identity.requestsPerSecond",
            "not be greater than total",
        ),
        ("spec.overrides.0.requestsPerSecond", 500, "spec.overrides[0].requestsPerSecond", "not be greater"),
        ("spec.overrides.0.burst", 1.5, "spec.overrides[0].burst", "integer"),
        ("spec.overrides.0.clientRefs", [], "spec.overrides[0].clientRefs", "at least one"),
        (
            "spec.overrides.0.clientRefs.0.kind",
            "User",
            "spec.overrides[0].clientRefs[0].kind",
            "ServiceAccount",
        ),
        ("spec.overrides.0.clientRefs.0.name", "", "spec.overrides[0].clientRefs[0].name", "DNS-1123"),
        (
            "spec.overrides.0.clientRefs.0.namespace",
            "Sleep",
            "spec.overrides[0].clientRefs[0].namespace",
            "DNS",
        ),
        (
            "spec.overrides.0.clientRefs.0.group",
            "rbac",
            "spec.overrides[0].clientRefs[0].group",
            "core group",
        ),
        ("spec.overrides", {"a": 1}, "spec.overrides", "list"),
        (
            "spec",
            {"targetRefs": [{"kind": "Service", "name": "w"}]},
            "spec",
            "at least one of total, identity",
        ),
    ],
)
def test_bad_fields_fail_naming_file_object_and_field(path: str, value: Any, where: str, text: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate(_with(path, value), "rl.yaml")
    problems = dict(info.value.problems)
    assert where in problems, problems
    assert text in problems[where], problems[where]
    assert str(info.value).startswith(f"rl.yaml: HTTPLocalRateLimitPolicy/httpbin/httpbin-rl: {where}: ")


def test_identity_and_overrides_may_equal_total_and_exceed_it_without_one() -> None:
    """Linkerd's rule compares with total only when total is set (control: the same values pass)."""
    obj = _with("spec.identity.requestsPerSecond", 100)
    assert validate(obj)["spec"]["identity"]["requestsPerSecond"] == 100
    del obj["spec"]["total"]
    obj["spec"]["identity"]["requestsPerSecond"] = 1000
    assert validate(obj)["spec"]["identity"]["requestsPerSecond"] == 1000
