"""Translation of Services (VIPs, ports, protocols) and waypoint binding of services and workloads."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import namespace, pod, run, service, waypoint

from ambit.control.translate_services import port_protocol
from ambit.model.workload import ServicePort, WaypointRef

KEY = "default/web.default.svc.cluster.local"
WP = WaypointRef("default", "waypoint.default.svc.cluster.local", 15008)


def test_service_fields() -> None:
    result = run(
        service(
            "web",
            selector={"app": "web"},
            ports=[
                {"name": "http", "port": 80, "targetPort": "http-alt"},
                {"name": "grpc-api", "port": 9090, "targetPort": 19090},
                {"name": "plain", "port": 5000, "appProtocol": "kubernetes.io/h2c"},
            ],
        ),
        cluster_domain="mesh.example",
    )
    svc = result.services["default/web.default.svc.mesh.example"]
    assert (svc.name, svc.namespace, svc.hostname) == ("web", "default", "web.default.svc.mesh.example")
    assert svc.vips == ("10.96.0.10",)
    assert svc.ports == (
        ServicePort(port=80, target_port=0, target_port_name="http-alt", name="http", app_protocol="HTTP"),
        ServicePort(port=9090, target_port=19090, name="grpc-api", app_protocol="GRPC"),
        ServicePort(port=5000, target_port=5000, name="plain", app_protocol="HTTP2"),
    )
    assert svc.waypoint is None


def test_headless_service_has_no_vip() -> None:
    result = run(service("web", cluster_ip="None"), service("pending", cluster_ip=None))
    assert result.services[KEY].vips == ()
    assert result.services["default/pending.default.svc.cluster.local"].vips == ()


def test_dual_stack_vips() -> None:
    svc = service("web")
    svc["spec"]["clusterIPs"] = ["10.96.0.10", "fd00:96::10"]
    assert run(svc).services[KEY].vips == ("10.96.0.10", "fd00:96::10")


@pytest.mark.parametrize(
    ("name", "app_protocol", "protocol", "port", "expected"),
    [
        ("http", "", "TCP", 80, "HTTP"),
        ("http-web", "", "TCP", 80, "HTTP"),
        ("HTTP2", "", "TCP", 80, "HTTP2"),
        ("grpc", "", "TCP", 80, "GRPC"),
        ("grpc-web", "", "TCP", 80, "GRPC-Web"),
        ("grpc-web-x", "", "TCP", 80, "GRPC-Web"),
        ("tcp-echo", "", "TCP", 9000, "TCP"),
        ("tls", "", "TCP", 443, "TLS"),
        ("https-admin", "", "TCP", 443, "HTTPS"),
        ("mongo", "", "TCP", 1, "Mongo"),
        ("redis", "", "TCP", 1, "Redis"),
        ("mysql", "", "TCP", 1, "MySQL"),
        ("web", "", "TCP", 8080, ""),
        ("", "", "TCP", 8080, ""),
        ("web", "", "TCP", 3306, "TCP"),
        ("", "", "TCP", 53, "TCP"),
        ("http", "", "UDP", 80, "UDP"),
        ("tcp", "http", "TCP", 80, "HTTP"),
        ("http", "tcp", "TCP", 80, "TCP"),
        ("x", "grpc", "TCP", 80, "GRPC"),
        ("x", "kubernetes.io/h2c", "TCP", 80, "HTTP2"),
        ("x", "kubernetes.io/ws", "TCP", 80, "HTTP"),
        ("x", "example.com/custom", "TCP", 80, ""),
    ],
)
def test_port_protocol(name: str, app_protocol: str, protocol: str, port: int, expected: str) -> None:
    assert port_protocol(name, app_protocol, protocol, port) == expected


# --- waypoints ------------------------------------------------------------------------------------

USE = "istio.io/use-waypoint"
USE_NS = "istio.io/use-waypoint-namespace"


def svc_with(**labels: str) -> dict[str, Any]:
    return service("web", selector={"app": "web"}, labels=labels)


@pytest.mark.parametrize(
    ("ns_labels", "svc_labels", "gateways", "expected", "warning"),
    [
        pytest.param({}, {}, [waypoint()], None, None, id="no label"),
        pytest.param({USE: "waypoint"}, {}, [waypoint()], WP, None, id="namespace label"),
        pytest.param({}, {USE: "waypoint"}, [waypoint()], WP, None, id="service label"),
        pytest.param(
            {USE: "none"}, {USE: "waypoint"}, [waypoint()], WP, None, id="service overrides ns none"
        ),
        pytest.param({USE: "waypoint"}, {USE: "none"}, [waypoint()], None, None, id="service opts out"),
        pytest.param(
            {USE: "ns-wp"},
            {USE: "svc-wp"},
            [waypoint("ns-wp"), waypoint("svc-wp")],
            WaypointRef("default", "svc-wp.default.svc.cluster.local"),
            None,
            id="service label wins over namespace label",
        ),
        pytest.param(
            {}, {USE: "missing"}, [waypoint()], None, "not a waypoint Gateway", id="missing gateway"
        ),
        pytest.param(
            {USE: "waypoint"},
            {USE: "missing"},
            [waypoint()],
            None,
            "not a waypoint Gateway",
            id="no fallback to ns",
        ),
        pytest.param(
            {USE: "missing"}, {}, [], None, "Namespace default: istio.io/use-waypoint", id="ns names missing"
        ),
        pytest.param(
            {USE: "waypoint"},
            {},
            [waypoint(class_name="istio")],
            None,
            "not a waypoint Gateway",
            id="gateway of another class",
        ),
        pytest.param(
            {}, {USE: "waypoint"}, [waypoint(class_name="ambit-waypoint")], WP, None, id="ambit class"
        ),
        pytest.param({}, {USE: "waypoint"}, [waypoint(waypoint_for="all")], WP, None, id="for all"),
        pytest.param({}, {USE: "waypoint"}, [waypoint(waypoint_for="service")], WP, None, id="for service"),
        pytest.param(
            {},
            {USE: "waypoint"},
            [waypoint(waypoint_for="workload")],
            None,
            "not service traffic",
            id="for workload",
        ),
        pytest.param(
            {USE: "waypoint"}, {}, [waypoint(waypoint_for="none")], None, "not service traffic", id="for none"
        ),
    ],
)
def test_service_waypoint(
    ns_labels: dict[str, str],
    svc_labels: dict[str, str],
    gateways: list[dict[str, Any]],
    expected: WaypointRef | None,
    warning: str | None,
) -> None:
    result = run(namespace("default", **ns_labels), svc_with(**svc_labels), *gateways)
    assert result.services[KEY].waypoint == expected
    if warning is None:
        assert not result.warnings
    else:
        assert any(warning in w for w in result.warnings), result.warnings


@pytest.mark.parametrize(
    ("gateway", "ns_labels", "expected"),
    [
        (waypoint("shared", "infra", allowed_from="All"), {}, True),
        (waypoint("shared", "infra"), {}, False),
        (waypoint("shared", "infra", allowed_from="Same"), {}, False),
        (
            waypoint("shared", "infra", allowed_from="Selector", ns_selector={"mesh": "yes"}),
            {"mesh": "yes"},
            True,
        ),
        (waypoint("shared", "infra", allowed_from="Selector", ns_selector={"mesh": "yes"}), {}, False),
    ],
)
def test_cross_namespace_waypoint(gateway: dict[str, Any], ns_labels: dict[str, str], expected: bool) -> None:
    result = run(
        namespace("default", **ns_labels),
        svc_with(**{USE: "shared", USE_NS: "infra"}),
        namespace("infra"),
        gateway,
    )
    ref = WaypointRef("infra", "shared.infra.svc.cluster.local")
    assert result.services[KEY].waypoint == (ref if expected else None)
    assert any("does not allow attachment" in w for w in result.warnings) is not expected


def test_namespace_label_with_waypoint_namespace() -> None:
    result = run(
        namespace("default", **{USE: "shared", USE_NS: "infra"}),
        svc_with(),
        waypoint("shared", "infra", allowed_from="All"),
    )
    assert result.services[KEY].waypoint == WaypointRef("infra", "shared.infra.svc.cluster.local")


def test_waypoint_own_service_and_pods_get_no_waypoint() -> None:
    gateway_label = {"gateway.networking.k8s.io/gateway-name": "waypoint"}
    wp_service = service("waypoint", labels=gateway_label, ports=[{"name": "mesh", "port": 15008}])
    managed = service("other", labels={"gateway.istio.io/managed": "istio.io-mesh-controller"})
    result = run(
        namespace("default", **{USE: "waypoint"}),
        waypoint(waypoint_for="all"),
        wp_service,
        managed,
        pod("waypoint-1", labels=gateway_label),
    )
    assert result.services["default/waypoint.default.svc.cluster.local"].waypoint is None
    assert result.services["default/other.default.svc.cluster.local"].waypoint is None
    assert result.workloads["uid-default-waypoint-1"].waypoint is None


@pytest.mark.parametrize(
    ("ns_labels", "pod_labels", "waypoint_for", "expected", "warns"),
    [
        pytest.param({}, {USE: "waypoint"}, "workload", WP, False, id="pod label, for workload"),
        pytest.param({}, {USE: "waypoint"}, "all", WP, False, id="pod label, for all"),
        pytest.param({}, {USE: "waypoint"}, None, None, True, id="pod label, service-only waypoint"),
        pytest.param({USE: "waypoint"}, {}, None, None, False, id="ns label, service-only: silently none"),
        pytest.param({USE: "waypoint"}, {}, "all", WP, False, id="ns label, for all"),
        pytest.param({USE: "waypoint"}, {}, "workload", WP, False, id="ns label, for workload"),
        pytest.param({USE: "waypoint"}, {USE: "none"}, "all", None, False, id="pod opts out"),
    ],
)
def test_workload_waypoint(
    ns_labels: dict[str, str],
    pod_labels: dict[str, str],
    waypoint_for: str | None,
    expected: WaypointRef | None,
    warns: bool,
) -> None:
    result = run(
        namespace("default", **ns_labels), pod("a", labels=pod_labels), waypoint(waypoint_for=waypoint_for)
    )
    assert result.workloads["uid-default-a"].waypoint == expected
    assert any("not workload traffic" in w for w in result.warnings) is warns


def test_waypoint_for_from_gateway_class() -> None:
    gateway_class = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "istio-waypoint", "labels": {"istio.io/waypoint-for": "all"}},
        "spec": {"controllerName": "istio.io/mesh-controller"},
    }
    result = run(gateway_class, pod("a", labels={USE: "waypoint"}), waypoint())
    assert result.workloads["uid-default-a"].waypoint == WP
    overridden = run(gateway_class, pod("a", labels={USE: "waypoint"}), waypoint(waypoint_for="service"))
    assert overridden.workloads["uid-default-a"].waypoint is None
