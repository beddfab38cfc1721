"""Translation of Pods into Workloads: enrollment, health, services and ports, locality, names."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import namespace, node, pod, run, service

from ambit.model.workload import HealthStatus, Locality, PortMapping, TunnelProtocol

MODE = "istio.io/dataplane-mode"


@pytest.mark.parametrize(
    ("ns_mode", "pod_mode", "tunnel"),
    [
        ("ambient", None, TunnelProtocol.HBONE),
        ("ambient", "none", TunnelProtocol.NONE),
        ("ambient", "ambient", TunnelProtocol.HBONE),
        ("ambient", "something-else", TunnelProtocol.HBONE),
        (None, "ambient", TunnelProtocol.HBONE),
        (None, None, TunnelProtocol.NONE),
        (None, "none", TunnelProtocol.NONE),
        ("none", "ambient", TunnelProtocol.HBONE),
        ("sidecar", None, TunnelProtocol.NONE),
    ],
)
def test_enrollment(ns_mode: str | None, pod_mode: str | None, tunnel: TunnelProtocol) -> None:
    ns_labels = {MODE: ns_mode} if ns_mode else {}
    pod_labels = {MODE: pod_mode} if pod_mode else {}
    result = run(namespace("shop", **ns_labels), pod("a", "shop", labels=pod_labels))
    assert result.workloads["uid-shop-a"].tunnel_protocol is tunnel


def test_sidecar_and_host_network_pods_are_not_enrolled() -> None:
    """Istio's PodRedirectionEnabled excludes them even in an ambient namespace."""
    host = pod("host", "shop", ip="10.244.1.4")
    host["spec"]["hostNetwork"] = True
    result = run(
        namespace("shop", **{MODE: "ambient"}),
        pod("sidecar", "shop", ip="10.244.1.3", annotations={"sidecar.istio.io/status": "{}"}),
        host,
        pod("plain", "shop"),
    )
    assert result.workloads["uid-shop-sidecar"].tunnel_protocol is TunnelProtocol.NONE
    assert result.workloads["uid-shop-host"].tunnel_protocol is TunnelProtocol.NONE
    assert result.workloads["uid-shop-plain"].tunnel_protocol is TunnelProtocol.HBONE


def test_native_tunnel_pods_speak_hbone() -> None:
    result = run(
        pod("wp", labels={"networking.istio.io/tunnel": "http"}),
        pod("cni", ip="10.244.1.3", annotations={"ambient.istio.io/redirection": "enabled"}),
    )
    assert result.workloads["uid-default-wp"].tunnel_protocol is TunnelProtocol.HBONE
    assert result.workloads["uid-default-cni"].tunnel_protocol is TunnelProtocol.HBONE


@pytest.mark.parametrize(
    ("ready", "deleting", "status"),
    [
        (True, False, HealthStatus.HEALTHY),
        (False, False, HealthStatus.UNHEALTHY),
        (None, False, HealthStatus.UNHEALTHY),
        (True, True, HealthStatus.UNHEALTHY),
    ],
)
def test_readiness(ready: bool | None, deleting: bool, status: HealthStatus) -> None:
    result = run(pod("a", ready=ready, deleting=deleting))
    assert result.workloads["uid-default-a"].status is status


@pytest.mark.parametrize(
    ("phase", "ip", "present"),
    [
        ("Running", "10.244.1.2", True),
        ("Pending", "10.244.1.2", True),
        ("Unknown", "10.244.1.2", True),
        ("Succeeded", "10.244.1.2", False),
        ("Failed", "10.244.1.2", False),
        ("Pending", None, False),
    ],
)
def test_which_pods_become_workloads(phase: str, ip: str | None, present: bool) -> None:
    result = run(pod("a", phase=phase, ip=ip))
    assert ("uid-default-a" in result.workloads) is present


def test_workload_fields() -> None:
    result = run(
        node("node-2", **{"topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-1"}),
        pod(
            "a",
            "shop",
            sa="reviews",
            node_name="node-2",
            uid="1234",
            ip="10.244.2.7",
            ips=["10.244.2.7", "fd00::7"],
        ),
        trust_domain="example.org",
    )
    w = result.workloads["1234"]
    assert (w.name, w.namespace, w.service_account, w.node) == ("a", "shop", "reviews", "node-2")
    assert w.addresses == ("10.244.2.7", "fd00::7")
    assert w.trust_domain == "example.org"
    assert str(w.identity) == "spiffe://example.org/ns/shop/sa/reviews"
    assert w.locality == Locality(region="eu", zone="eu-1")
    assert w.capacity == 1


def test_service_account_defaults_to_default() -> None:
    assert run(pod("a")).workloads["uid-default-a"].service_account == "default"


def test_locality_label_overrides_node() -> None:
    result = run(
        node("node-1", **{"topology.kubernetes.io/region": "eu"}),
        pod("a", labels={"istio-locality": "us.us-1.rack-9"}),
    )
    assert result.workloads["uid-default-a"].locality == Locality("us", "us-1", "rack-9")


def test_services_of_a_workload() -> None:
    result = run(
        pod("a", labels={"app": "web", "version": "v1"}, ports=[("http", 8080), ("metrics", 9090)]),
        service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}]),
        service(
            "web-v1",
            selector={"app": "web", "version": "v1"},
            ports=[
                {"name": "http", "port": 80, "targetPort": 8081},
                {"name": "admin", "port": 81, "targetPort": "admin"},
                {"name": "metrics", "port": 90, "targetPort": "metrics"},
            ],
        ),
        service("web-v2", selector={"app": "web", "version": "v2"}),
        service("other-ns", "elsewhere", selector={"app": "web"}),
        service("no-selector", selector=None),
    )
    w = result.workloads["uid-default-a"]
    assert w.services == (
        ("default/web-v1.default.svc.cluster.local", (PortMapping(80, 8081), PortMapping(90, 9090))),
        ("default/web.default.svc.cluster.local", (PortMapping(80, 8080),)),
    )
    assert w.ports_for("default/web-v2.default.svc.cluster.local") == ()


def test_named_target_port_resolves_per_pod() -> None:
    result = run(
        pod("new", labels={"app": "web"}, ports=[("http", 9000)], ip="10.244.1.2"),
        pod("old", labels={"app": "web"}, ports=[("web", 8080)], ip="10.244.1.3"),
        service("web", selector={"app": "web"}, ports=[{"name": "http", "port": 80, "targetPort": "http"}]),
    )
    key = "default/web.default.svc.cluster.local"
    assert result.workloads["uid-default-new"].ports_for(key) == (PortMapping(80, 9000),)
    assert result.workloads["uid-default-old"].services == ((key, ()),)  # listed, but the port is omitted


def test_named_target_port_matches_protocol() -> None:
    p = pod("a", labels={"app": "dns"}, ports=[("dns", 5353)])
    p["spec"]["containers"][0]["ports"][0]["protocol"] = "UDP"
    result = run(
        p,
        service(
            "dns",
            selector={"app": "dns"},
            ports=[
                {"name": "dns-udp", "port": 53, "targetPort": "dns", "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "targetPort": "dns", "protocol": "TCP"},
            ],
        ),
    )
    assert result.workloads["uid-default-a"].ports_for("default/dns.default.svc.cluster.local") == (
        PortMapping(53, 5353),
    )


def test_target_port_defaults_to_port() -> None:
    result = run(
        pod("a", labels={"app": "web"}), service("web", selector={"app": "web"}, ports=[{"port": 8000}])
    )
    assert result.workloads["uid-default-a"].ports_for("default/web.default.svc.cluster.local") == (
        PortMapping(8000, 8000),
    )


DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "reviews-v2", "namespace": "default"},
    "spec": {
        "selector": {"matchLabels": {"app": "reviews", "version": "v2"}},
        "template": {
            "metadata": {"labels": {"app": "reviews", "version": "v2"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    },
}


@pytest.mark.parametrize(
    ("labels", "owner", "workload_name"),
    [
        ({"pod-template-hash": "5d8f7"}, ("ReplicaSet", "ratings-v1-5d8f7"), "ratings-v1"),
        ({}, ("ReplicaSet", "ratings-v1-5d8f7"), "ratings-v1"),
        ({}, ("Deployment", "ratings-v1"), "ratings-v1"),
        ({}, ("StatefulSet", "db"), "db"),
        ({"app": "reviews", "version": "v2"}, None, "reviews-v2"),
        ({"app": "reviews", "version": "v3"}, None, "a"),
    ],
)
def test_workload_name(labels: dict[str, str], owner: tuple[str, str] | None, workload_name: str) -> None:
    result = run(DEPLOYMENT, pod("a", labels=labels, owner=owner))
    assert result.workloads["uid-default-a"].workload_name == workload_name


@pytest.mark.parametrize(
    ("labels", "canonical"),
    [
        ({}, ("a", "latest")),
        ({"app": "web", "version": "v1"}, ("web", "v1")),
        ({"app": "web", "app.kubernetes.io/name": "shop", "app.kubernetes.io/version": "2"}, ("shop", "2")),
        (
            {
                "app": "web",
                "service.istio.io/canonical-name": "c",
                "service.istio.io/canonical-revision": "r",
            },
            ("c", "r"),
        ),
    ],
)
def test_canonical_service(labels: dict[str, str], canonical: tuple[str, str]) -> None:
    w = run(pod("a", labels=labels)).workloads["uid-default-a"]
    assert (w.canonical_name, w.canonical_revision) == canonical


def test_duplicate_uid_is_skipped_with_warning() -> None:
    result = run(pod("a", uid="same"), pod("b", uid="same", ip="10.244.1.3"))
    assert list(result.workloads) == ["same"]
    assert any("not unique" in w for w in result.warnings)


def test_unvalidated_odd_objects_do_not_crash() -> None:
    from ambit.control.translate import translate

    odd: list[dict[str, Any]] = [
        {"kind": "Pod", "metadata": {"name": "x", "namespace": "default"}, "status": {"podIP": "10.0.0.1"}},
        {"kind": "Pod", "metadata": {"name": "y", "namespace": "default"}, "spec": [], "status": "?"},
        {
            "kind": "Service",
            "metadata": {"name": "s", "namespace": "default"},
            "spec": {"ports": [{"port": "x"}]},
        },
        {"kind": "Gateway", "metadata": {"name": "g", "namespace": "default"}, "spec": {"listeners": "?"}},
        {
            "kind": "AuthorizationPolicy",
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"rules": [1]},
        },
        {
            "kind": "PeerAuthentication",
            "metadata": {"name": "q", "namespace": "default"},
            "spec": {"mtls": 3},
        },
        {"no": "kind"},
    ]
    result = translate(odd)
    assert set(result.workloads) == {"default/x"}
    assert result.services["default/s.default.svc.cluster.local"].ports == ()


def test_a_selector_with_an_unknown_operator_selects_nothing_with_a_warning() -> None:
    """Validation refuses it at apply time; an object in the store anyway must not stop translation."""
    from ambit.control.translate import translate

    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchExpressions": [{"key": "app", "operator": "Near", "values": ["web"]}]}},
    }
    result = translate([deployment, pod("a", labels={"app": "web"})])
    assert result.workloads["uid-default-a"].workload_name == "a"
    assert any("'Near'" in w and "Deployment default/web" in w for w in result.warnings)
