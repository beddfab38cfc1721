"""The object rules every layer shares (``ambit.resources.objects``), one table per rule."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.model.placement import PodPlacement
from ambit.resources.objects import (
    SelectorError,
    WaypointUse,
    annotations_of,
    condition,
    is_ambient,
    is_waypoint,
    labels,
    name_of,
    namespace_of,
    namespace_or_default,
    pod_placement,
    selector_matches,
    uid_of,
    use_waypoint,
    waypoint_for,
)

MODE = "istio.io/dataplane-mode"


def obj(kind: str = "Pod", namespace: str = "default", **meta: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": "x", "namespace": namespace, **meta}}


def ns(**labels_: str) -> dict[str, Any]:
    return {"kind": "Namespace", "metadata": {"name": "default", "labels": dict(labels_)}}


def pod(
    labels_: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "labels": labels_ or {},
            "annotations": annotations or {},
        },
        "spec": spec or {},
    }


# --- label selectors --------------------------------------------------------------------------------

WEB = {"app": "web", "tier": "front"}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


@pytest.mark.parametrize(
    ("selector", "target", "expected"),
    [
        (None, WEB, True),
        ({}, WEB, True),
        ({"matchLabels": {"app": "web"}}, WEB, True),
        ({"matchLabels": {"app": "db"}}, WEB, False),
        ({"matchLabels": {"app": "web", "zone": "a"}}, WEB, False),
        (expr("app", "In", "web", "db"), WEB, True),
        (expr("app", "In", "db"), WEB, False),
        (expr("missing", "In", "web"), WEB, False),
        (expr("app", "NotIn", "db"), WEB, True),
        (expr("app", "NotIn", "web"), WEB, False),
        (expr("missing", "NotIn", "web"), WEB, True),
        (expr("tier", "Exists"), WEB, True),
        (expr("missing", "Exists"), WEB, False),
        (expr("missing", "DoesNotExist"), WEB, True),
        (expr("tier", "DoesNotExist"), WEB, False),
        ({"matchLabels": {"app": "web"}, **expr("tier", "In", "back")}, WEB, False),  # AND
    ],
)
def test_selector_matches(selector: dict[str, Any] | None, target: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, target) is expected


def test_an_unknown_selector_operator_is_an_error_naming_it() -> None:
    with pytest.raises(SelectorError, match="'Near'"):
        selector_matches(expr("app", "Near", "web"), WEB)
    with pytest.raises(SelectorError, match="None"):
        selector_matches({"matchExpressions": [{"key": "app"}]}, WEB)


# --- ambient enrolment (Istio's PodRedirectionEnabled) ----------------------------------------------

SIDECAR = {"sidecar.istio.io/status": '{"containers":["istio-proxy"]}'}


@pytest.mark.parametrize(
    ("pod_labels", "namespace_labels", "extra", "expected"),
    [
        ({}, {}, {}, False),
        ({}, {MODE: "ambient"}, {}, True),
        ({MODE: "ambient"}, {}, {}, True),
        ({MODE: "none"}, {MODE: "ambient"}, {}, False),
        # the case the three copies disagreed on: any other pod value follows the namespace (Istio)
        ({MODE: "foo"}, {MODE: "ambient"}, {}, True),
        ({MODE: "foo"}, {}, {}, False),
        ({}, {MODE: "none"}, {}, False),
        ({MODE: "ambient"}, {MODE: "none"}, {}, True),
        ({}, {MODE: "ambient"}, {"annotations": SIDECAR}, False),  # a sidecar pod is never captured
        ({MODE: "ambient"}, {}, {"annotations": SIDECAR}, False),
        ({}, {MODE: "ambient"}, {"spec": {"hostNetwork": True}}, False),
        ({}, {MODE: "ambient"}, {"spec": {"hostNetwork": False}}, True),
    ],
)
def test_is_ambient(
    pod_labels: dict[str, str], namespace_labels: dict[str, str], extra: dict[str, Any], expected: bool
) -> None:
    assert is_ambient(pod(pod_labels, **extra), ns(**namespace_labels)) is expected


def test_is_ambient_without_a_namespace_object() -> None:
    assert is_ambient(pod({MODE: "ambient"}), None)
    assert not is_ambient(pod(), None)


# --- waypoint use -----------------------------------------------------------------------------------

USE = "istio.io/use-waypoint"
USE_NS = "istio.io/use-waypoint-namespace"


@pytest.mark.parametrize(
    ("own", "namespace_labels", "expected"),
    [
        ({}, {}, None),
        ({USE: "wp"}, {}, WaypointUse("default", "wp", inherited=False)),
        ({}, {USE: "wp"}, WaypointUse("default", "wp", inherited=True)),
        ({USE: "mine"}, {USE: "theirs"}, WaypointUse("default", "mine", inherited=False)),
        ({USE: "none"}, {USE: "wp"}, None),  # the object opts out
        ({}, {USE: "none"}, None),
        ({USE: "wp", USE_NS: "infra"}, {}, WaypointUse("infra", "wp", inherited=False)),
        ({}, {USE: "wp", USE_NS: "infra"}, WaypointUse("infra", "wp", inherited=True)),
        # the namespace label is read from the same object that carries use-waypoint
        ({USE: "wp"}, {USE_NS: "infra"}, WaypointUse("default", "wp", inherited=False)),
        ({USE_NS: "infra"}, {USE: "wp"}, WaypointUse("default", "wp", inherited=True)),
    ],
)
def test_use_waypoint(
    own: dict[str, str], namespace_labels: dict[str, str], expected: WaypointUse | None
) -> None:
    assert use_waypoint(obj(labels=own), ns(**namespace_labels)) == expected


@pytest.mark.parametrize(
    ("thing", "expected"),
    [
        ({"kind": "Gateway", "spec": {"gatewayClassName": "istio-waypoint"}}, True),
        ({"kind": "Gateway", "spec": {"gatewayClassName": "ambit-waypoint"}}, True),
        ({"kind": "Gateway", "spec": {"gatewayClassName": "istio"}}, False),
        ({"kind": "Gateway"}, False),
        ({"kind": "Service", "spec": {"gatewayClassName": "istio-waypoint"}}, False),
    ],
)
def test_is_waypoint(thing: dict[str, Any], expected: bool) -> None:
    assert is_waypoint(thing) is expected


FOR = "istio.io/waypoint-for"


@pytest.mark.parametrize(
    ("gateway_labels", "class_labels", "expected"),
    [
        ({}, None, "service"),  # Istio's default
        ({}, {FOR: "workload"}, "workload"),  # the GatewayClass's label when the Gateway has none
        ({FOR: "all"}, {FOR: "workload"}, "all"),  # the Gateway's own label wins
        ({FOR: "none"}, None, "none"),
        ({FOR: "bogus"}, None, "bogus"),  # returned as written; it serves nothing and is not Accepted
    ],
)
def test_waypoint_for(
    gateway_labels: dict[str, str], class_labels: dict[str, str] | None, expected: str
) -> None:
    gateway_class = None if class_labels is None else obj("GatewayClass", labels=class_labels)
    assert waypoint_for(obj("Gateway", labels=gateway_labels), gateway_class) == expected


def test_condition_finds_one_status_condition_and_tolerates_odd_shapes() -> None:
    ready = {"type": "Ready", "status": "True"}
    thing = {"status": {"conditions": ["junk", {"type": "Programmed", "status": "False"}, ready]}}
    assert condition(thing, "Ready") == ready
    assert condition(thing, "Accepted") is None
    for odd in (None, {}, {"status": "x"}, {"status": {"conditions": "x"}}):
        assert condition(odd, "Ready") is None


# --- placement and accessors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thing", "expected"),
    [
        (
            {
                "kind": "Pod",
                "metadata": {"name": "a", "namespace": "shop", "uid": "u1"},
                "spec": {"nodeName": "n1", "serviceAccountName": "web"},
                "status": {"phase": "Running"},
            },
            PodPlacement("shop", "a", "u1", "web", "n1", "Running"),
        ),
        (
            {"kind": "Pod", "metadata": {"name": "a"}, "spec": {"nodeName": "n1"}},
            PodPlacement("default", "a", "", "default", "n1", "Pending"),
        ),
        (
            {
                "kind": "Pod",
                "metadata": {"name": "a"},
                "spec": {"nodeName": "n1"},
                "status": {"phase": "Odd"},
            },
            PodPlacement("default", "a", "", "default", "n1", "Unknown"),
        ),
        ({"kind": "Pod", "metadata": {"name": "a"}, "spec": {}}, None),  # not scheduled
        ({"kind": "Service", "metadata": {"name": "a"}, "spec": {"nodeName": "n1"}}, None),
    ],
)
def test_pod_placement(thing: dict[str, Any], expected: PodPlacement | None) -> None:
    assert pod_placement(thing) == expected


@pytest.mark.parametrize("odd", [None, 3, "text", [], {"metadata": "nope"}, {"metadata": {"labels": [1]}}])
def test_accessors_never_raise_on_odd_objects(odd: Any) -> None:
    assert labels(odd) == {} and annotations_of(odd) == {}
    assert name_of(odd) == "" and namespace_of(odd) == "" and uid_of(odd) == ""
    assert namespace_or_default(odd) == "default"


def test_accessors_read_metadata() -> None:
    thing = obj(namespace="shop", uid="u", labels={"a": "1", "n": 2}, annotations={"b": "2"})
    assert (name_of(thing), namespace_of(thing), uid_of(thing)) == ("x", "shop", "u")
    assert labels(thing) == {"a": "1"}  # non-string values are not labels
    assert annotations_of(thing) == {"b": "2"}


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("web", ("ns", "web")),
        ("Web", ("ns", "web")),
        ("web.a", ("a", "web")),
        ("web.a.svc", ("a", "web")),
        ("web.a.svc.cluster.local", ("a", "web")),
        ("web.a.svc.cluster.local.", ("a", "web")),
        ("web.", None),
        ("web.a.", None),
        ("*.a.svc.cluster.local", None),
        ("example.com", ("com", "example")),  # a candidate only: callers check the Service exists
        ("10.96.0.10", None),
        ("web.a.svc.other.domain", None),
        ("", None),
    ],
)
def test_service_for_host(host: str, expected: tuple[str, str] | None) -> None:
    from ambit.resources.objects import service_for_host

    assert service_for_host(host, "ns") == expected
