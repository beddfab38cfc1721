"""Schemas of the modelled kinds: valid objects pass, each wrong field fails with its exact path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ambit.resources import ManifestError, parse_manifests, validate

SAMPLES = Path(__file__).resolve().parents[3].parent / "shared/samples/istio"
SAMPLE_FILES = sorted(SAMPLES.glob("*.yaml")) if SAMPLES.is_dir() else []


def pod_spec() -> dict[str, Any]:
    return {
        "containers": [
            {
                "name": "app",
                "image": "example/app:1",
                "command": ["/bin/app"],
                "args": ["--port", "8080"],
                "ports": [{"containerPort": 8080, "name": "http"}],
                "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
            }
        ],
        "serviceAccountName": "app",
        "nodeSelector": {"kubernetes.io/hostname": "node-1"},
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app": "web"}},
            }
        ],
    }


VALID: dict[str, dict[str, Any]] = {
    "Namespace": {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "shop", "labels": {"istio.io/dataplane-mode": "ambient"}},
    },
    "Node": {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "node-1",
            "labels": {"kubernetes.io/hostname": "node-1", "topology.kubernetes.io/zone": "zone-a"},
        },
    },
    "ServiceAccount": {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app"}},
    "Pod": {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
        "spec": {**pod_spec(), "nodeName": "node-1"},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "podIPs": [{"ip": "10.244.1.5"}],
            "hostIP": "172.30.0.10",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    },
    "Deployment": {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web", "version": "v1"}}, "spec": pod_spec()},
        },
    },
    "Service": {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http", "appProtocol": "http"},
                {"name": "grpc", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
            ],
        },
    },
    "PodDisruptionBudget": {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}},
    },
    "Gateway": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "waypoint", "labels": {"istio.io/waypoint-for": "service"}},
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [
                {
                    "name": "mesh",
                    "port": 15008,
                    "protocol": "HBONE",
                    "allowedRoutes": {"namespaces": {"from": "All"}},
                }
            ],
        },
    },
    "HTTPRoute": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "reviews"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "reviews", "port": 9080}],
            "hostnames": ["reviews.default.svc.cluster.local"],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/api"}, "method": "GET"}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}]},
                        }
                    ],
                    "backendRefs": [{"name": "reviews-v1", "port": 9080, "weight": 90}],
                    "timeouts": {"request": "10s"},
                }
            ],
        },
    },
    "GRPCRoute": {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "echo"},
        "spec": {
            "parentRefs": [{"name": "echo", "kind": "Service", "group": ""}],
            "rules": [
                {
                    "matches": [{"method": {"service": "echo.Echo", "method": "Say"}}],
                    "backendRefs": [{"name": "echo", "port": 7070}],
                }
            ],
        },
    },
    "AuthorizationPolicy": {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": {"name": "allow-curl", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "action": "ALLOW",
            "rules": [
                {
                    "from": [
                        {
                            "source": {
                                "principals": ["cluster.local/ns/shop/sa/curl"],
                                "ipBlocks": ["10.0.0.0/8"],
                            }
                        }
                    ],
                    "to": [{"operation": {"ports": ["8080"], "methods": ["GET"]}}],
                    "when": [{"key": "source.ip", "values": ["10.244.1.5"]}],
                }
            ],
        },
    },
    "PeerAuthentication": {
        "apiVersion": "security.istio.io/v1beta1",
        "kind": "PeerAuthentication",
        "metadata": {"name": "strict", "namespace": "shop"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "mtls": {"mode": "STRICT"},
            "portLevelMtls": {"8080": {"mode": "PERMISSIVE"}},
        },
    },
}


def mutate(kind: str, path: str, value: Any) -> dict[str, Any]:
    """A copy of VALID[kind] with the dotted ``path`` (indexes as numbers) set, or deleted for DELETE."""
    obj = copy.deepcopy(VALID[kind])
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    if value is DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return obj


DELETE = object()


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_objects_pass(kind: str) -> None:
    out = validate(VALID[kind], "test.yaml")
    assert out["kind"] == kind
    assert out is not VALID[kind]


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_istio_samples_validate_unchanged(path: Path) -> None:
    objects = parse_manifests(path.read_text(), path.name)
    assert objects
    for obj in objects:
        assert validate(obj, path.name) == obj  # normalized objects are a fixed point


def test_samples_present_or_skipped() -> None:
    if not SAMPLE_FILES:
        pytest.skip(f"no samples at {SAMPLES}")
    assert len(SAMPLE_FILES) >= 9


INVALID = [
    # (kind, path to set, value, expected field path in the message, expected text in the message)
    ("Service", "spec.ports.0.port", "80", "spec.ports[0].port", "expected an integer, got string '80'"),
    ("Service", "spec.ports.0.port", 0, "spec.ports[0].port", "between 1 and 65535"),
    ("Service", "spec.ports.0.port", 65536, "spec.ports[0].port", "between 1 and 65535"),
    ("Service", "spec.ports.0.port", True, "spec.ports[0].port", "expected an integer, got true"),
    ("Service", "spec.ports.0.port", DELETE, "spec.ports[0].port", "required field is missing"),
    ("Service", "spec.ports.0.targetPort", "8080", "spec.ports[0].targetPort", "at least one letter"),
    ("Service", "spec.ports.0.targetPort", "Http", "spec.ports[0].targetPort", "lowercase"),
    ("Service", "spec.ports.0.targetPort", "a-very-long-port-name", "spec.ports[0].targetPort", "15"),
    ("Service", "spec.ports.0.targetPort", "-http", "spec.ports[0].targetPort", "begin or end"),
    ("Service", "spec.ports.0.targetPort", "ht--tp", "spec.ports[0].targetPort", "consecutive"),
    ("Service", "spec.ports.0.targetPort", 70000, "spec.ports[0].targetPort", "between 1 and 65535"),
    ("Service", "spec.ports.0.targetPort", 1.5, "spec.ports[0].targetPort", "port number or name"),
    ("Service", "spec.ports.0.protocol", "HTTP", "spec.ports[0].protocol", "'TCP', 'UDP' or 'SCTP'"),
    ("Service", "spec.ports.0.name", "Http", "spec.ports[0].name", "DNS-1123 label"),
    ("Service", "spec.ports.1.name", DELETE, "spec.ports[1].name", "more than one port"),
    ("Service", "spec.ports.1.name", "http", "spec.ports[1].name", "duplicate port name"),
    ("Service", "spec.ports.1.port", 80, "spec.ports[1]", "duplicate port 80/TCP"),
    ("Service", "spec.ports", [], "spec.ports", "at least one port"),
    ("Service", "spec.type", "Internal", "spec.type", "'ClusterIP'"),
    ("Service", "spec.clusterIP", "10.96.0.300", "spec.clusterIP", "not a valid IP"),
    ("Service", "spec.selector", {"app": 1}, "spec.selector.app", "expected a string, got 1"),
    ("Service", "spec.selector", {"app": "-web"}, "spec.selector.app", "not a valid label value"),
    ("Service", "spec.selector", "app=web", "spec.selector", "expected an object"),
    ("Service", "metadata.name", "9web", "metadata.name", "DNS-1035 label"),
    ("Service", "metadata.name", "web.shop", "metadata.name", "DNS-1035 label"),
    ("Service", "metadata.namespace", "Shop", "metadata.namespace", "DNS-1123 label"),
    ("Service", "metadata.labels", {"bad key!": "x"}, 'metadata.labels["bad key!"] (key)', "name part"),
    ("Service", "metadata.labels", {"app": "x" * 64}, "metadata.labels.app", "63"),
    ("Service", "metadata.annotations", {"note": 5}, "metadata.annotations.note", "expected a string"),
    ("Service", "apiVersion", "apps/v1", "apiVersion", "Service is served as v1, not 'apps/v1'"),
    ("Deployment", "apiVersion", "v1", "apiVersion", "apps/v1"),
    ("Namespace", "metadata.name", "Shop", "metadata.name", "DNS-1123 label"),
    (
        "Node",
        "metadata.labels",
        {"topology.kubernetes.io/zone": 3},
        'metadata.labels["topology.kubernetes.io/zone"]',
        "string",
    ),
    ("Pod", "metadata.name", "Web_1", "metadata.name", "DNS-1123 subdomain"),
    ("Pod", "spec.containers", [], "spec.containers", "at least one container"),
    ("Pod", "spec.containers.0.name", "App", "spec.containers[0].name", "DNS-1123 label"),
    ("Pod", "spec.containers.0.image", DELETE, "spec.containers[0].image", "required field is missing"),
    ("Pod", "spec.containers.0.command", "/bin/app", "spec.containers[0].command", "expected a list"),
    (
        "Pod",
        "spec.containers.0.args",
        ["--port", 8080],
        "spec.containers[0].args[1]",
        "expected a string, got 8080",
    ),
    (
        "Pod",
        "spec.containers.0.ports.0.containerPort",
        "8080",
        "spec.containers[0].ports[0].containerPort",
        "integer",
    ),
    ("Pod", "spec.containers.0.ports.0.name", "http_1", "spec.containers[0].ports[0].name", "lowercase"),
    ("Pod", "spec.containers.0.ports.0.protocol", "tcp", "spec.containers[0].ports[0].protocol", "'TCP'"),
    (
        "Pod",
        "spec.containers.0.readinessProbe",
        {"periodSeconds": 1},
        "spec.containers[0].readinessProbe",
        "exactly one",
    ),
    (
        "Pod",
        "spec.containers.0.readinessProbe.periodSeconds",
        0,
        "spec.containers[0].readinessProbe.periodSeconds",
        "greater than or equal to 1",
    ),
    ("Pod", "spec.nodeName", "Node_1", "spec.nodeName", "DNS-1123 subdomain"),
    ("Pod", "spec.nodeSelector", {"zone": 1}, "spec.nodeSelector.zone", "string"),
    ("Pod", "spec.serviceAccountName", "App", "spec.serviceAccountName", "DNS-1123 subdomain"),
    (
        "Pod",
        "spec.topologySpreadConstraints.0.maxSkew",
        0,
        "spec.topologySpreadConstraints[0].maxSkew",
        "greater than or equal to 1",
    ),
    (
        "Pod",
        "spec.topologySpreadConstraints.0.whenUnsatisfiable",
        "Never",
        "spec.topologySpreadConstraints[0].whenUnsatisfiable",
        "'DoNotSchedule'",
    ),
    ("Pod", "status.phase", "Started", "status.phase", "'Running'"),
    ("Pod", "status.podIP", "10.244.1", "status.podIP", "not a valid IP"),
    ("Pod", "status.podIPs.0.ip", "x", "status.podIPs[0].ip", "not a valid IP"),
    (
        "Pod",
        "status.conditions.0.status",
        True,
        "status.conditions[0].status",
        "'True', 'False' or 'Unknown'",
    ),
    ("Pod", "spec", DELETE, "spec", "required field is missing"),
    ("Deployment", "spec.replicas", -1, "spec.replicas", "greater than or equal to 0"),
    ("Deployment", "spec.replicas", "2", "spec.replicas", "integer"),
    ("Deployment", "spec.selector", {}, "spec.selector", "empty selector"),
    (
        "Deployment",
        "spec.selector.matchLabels",
        {"app": "api"},
        "spec.template.metadata.labels",
        "does not match",
    ),
    (
        "Deployment",
        "spec.template.spec.containers.0.ports.0.containerPort",
        0,
        "spec.template.spec.containers[0].ports[0].containerPort",
        "between 1",
    ),
    ("Deployment", "spec.template", DELETE, "spec.template", "required field is missing"),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "In"}],
        "spec.selector.matchExpressions[0].values",
        "must be specified",
    ),
    (
        "Deployment",
        "spec.selector.matchExpressions",
        [{"key": "app", "operator": "Has"}],
        "spec.selector.matchExpressions[0].operator",
        "'In'",
    ),
    ("PodDisruptionBudget", "spec.minAvailable", "50", "spec.minAvailable", "percentage"),
    ("PodDisruptionBudget", "spec.minAvailable", -1, "spec.minAvailable", "greater than or equal to 0"),
    ("PodDisruptionBudget", "spec.maxUnavailable", 1, "spec", "cannot both be set"),
    ("Gateway", "spec.gatewayClassName", DELETE, "spec.gatewayClassName", "required field is missing"),
    ("Gateway", "spec.listeners", [], "spec.listeners", "between 1 and 64"),
    ("Gateway", "spec.listeners.0.port", "15008", "spec.listeners[0].port", "integer"),
    ("Gateway", "spec.listeners.0.protocol", "HB ONE", "spec.listeners[0].protocol", "listener protocol"),
    ("Gateway", "spec.listeners.0.name", "Mesh", "spec.listeners[0].name", "DNS-1123 subdomain"),
    ("Gateway", "spec.listeners.0.hostname", "a_b", "spec.listeners[0].hostname", "hostname"),
    (
        "Gateway",
        "spec.listeners.0.allowedRoutes.namespaces.from",
        "Any",
        "spec.listeners[0].allowedRoutes.namespaces.from",
        "'All'",
    ),
    (
        "Gateway",
        "spec.listeners.0.allowedRoutes.namespaces.from",
        "Selector",
        "spec.listeners[0].allowedRoutes.namespaces.selector",
        "required",
    ),
    ("HTTPRoute", "spec.parentRefs.0.name", DELETE, "spec.parentRefs[0].name", "required field is missing"),
    ("HTTPRoute", "spec.parentRefs.0.port", "9080", "spec.parentRefs[0].port", "integer"),
    ("HTTPRoute", "spec.hostnames.0", "Reviews", "spec.hostnames[0]", "hostname"),
    (
        "HTTPRoute",
        "spec.rules.0.matches.0.path.type",
        "Prefix",
        "spec.rules[0].matches[0].path.type",
        "'PathPrefix'",
    ),
    (
        "HTTPRoute",
        "spec.rules.0.matches.0.path.value",
        "api",
        "spec.rules[0].matches[0].path.value",
        "absolute path",
    ),
    ("HTTPRoute", "spec.rules.0.matches.0.method", "get", "spec.rules[0].matches[0].method", "'GET'"),
    (
        "HTTPRoute",
        "spec.rules.0.backendRefs.0.weight",
        -1,
        "spec.rules[0].backendRefs[0].weight",
        "between 0 and 1000000",
    ),
    ("HTTPRoute", "spec.rules.0.backendRefs.0.port", "9080", "spec.rules[0].backendRefs[0].port", "integer"),
    ("HTTPRoute", "spec.rules.0.filters.0.type", "Rewrite", "spec.rules[0].filters[0].type", "'URLRewrite'"),
    (
        "HTTPRoute",
        "spec.rules.0.filters.0.requestHeaderModifier",
        DELETE,
        "spec.rules[0].filters[0].requestHeaderModifier",
        "required when type",
    ),
    (
        "HTTPRoute",
        "spec.rules.0.timeouts.request",
        "10 seconds",
        "spec.rules[0].timeouts.request",
        "duration",
    ),
    ("HTTPRoute", "spec.rules", [{}] * 17, "spec.rules", "at most 16"),
    ("HTTPRoute", "spec", DELETE, "spec", "required field is missing"),
    (
        "GRPCRoute",
        "spec.rules.0.matches.0.method",
        {"type": "Exact"},
        "spec.rules[0].matches[0].method",
        "service and method",
    ),
    ("GRPCRoute", "spec.rules.0.backendRefs.0.port", 0, "spec.rules[0].backendRefs[0].port", "between 1"),
    ("AuthorizationPolicy", "spec.action", "REJECT", "spec.action", "'ALLOW', 'DENY', 'AUDIT' or 'CUSTOM'"),
    ("AuthorizationPolicy", "spec.action", "CUSTOM", "spec.provider", "required when action is CUSTOM"),
    (
        "AuthorizationPolicy",
        "spec.provider",
        {"name": "ext"},
        "spec.provider",
        "only allowed when action is CUSTOM",
    ),
    (
        "AuthorizationPolicy",
        "spec.selector.matchLabels",
        ["app"],
        "spec.selector.matchLabels",
        "expected an object",
    ),
    (
        "AuthorizationPolicy",
        "spec.targetRefs",
        [{"kind": "Gateway", "name": "wp"}],
        "spec.selector",
        "only one of selector",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.from.0.source",
        {},
        "spec.rules[0].from[0].source",
        "must not be empty",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.from.0.source.principals",
        "cluster.local/ns/a/sa/b",
        "spec.rules[0].from[0].source.principals",
        "expected a list",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.from.0.source.principals",
        [""],
        "spec.rules[0].from[0].source.principals[0]",
        "must not be empty",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.from.0.source.ipBlocks",
        ["10.0.0.0/33"],
        "spec.rules[0].from[0].source.ipBlocks[0]",
        "CIDR",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.from.0.source.serviceAccounts",
        ["curl"],
        "spec.rules[0].from[0].source",
        "serviceAccounts cannot be used together",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.to.0.operation.ports",
        [8080],
        "spec.rules[0].to[0].operation.ports[0]",
        "expected a string, got 8080",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.to.0.operation.ports",
        ["http"],
        "spec.rules[0].to[0].operation.ports[0]",
        "not a valid port",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.to.0.operation",
        {},
        "spec.rules[0].to[0].operation",
        "must not be empty",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.when.0",
        {"key": "source.ip"},
        "spec.rules[0].when[0]",
        "at least one of values",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.when.0.values",
        ["nope"],
        "spec.rules[0].when[0].values[0]",
        "not a valid IP",
    ),
    (
        "AuthorizationPolicy",
        "spec.rules.0.when.0",
        {"key": "destination.port", "notValues": ["x"]},
        "spec.rules[0].when[0].notValues[0]",
        "not a valid port",
    ),
    ("PeerAuthentication", "spec.mtls.mode", "ON", "spec.mtls.mode", "'STRICT'"),
    (
        "PeerAuthentication",
        "spec.portLevelMtls",
        {"http": {"mode": "STRICT"}},
        "spec.portLevelMtls.http",
        "not a valid port",
    ),
    (
        "PeerAuthentication",
        "spec.portLevelMtls",
        {"8080": {"mode": "OFF"}},
        'spec.portLevelMtls["8080"].mode',
        "'PERMISSIVE'",
    ),
    ("PeerAuthentication", "spec.selector", DELETE, "spec.portLevelMtls", "requires a workload selector"),
]


@pytest.mark.parametrize(("kind", "path", "value", "where", "text"), INVALID)
def test_invalid_field_fails_with_its_path(kind: str, path: str, value: Any, where: str, text: str) -> None:
    obj = mutate(kind, path, value)
    with pytest.raises(ManifestError) as info:
        validate(obj, "bad.yaml")
    err = info.value
    message = str(err)
    assert message.startswith("bad.yaml: ")
    assert f": {where}: " in message, message
    assert text in message, message
    assert err.path == where
    assert err.kind == kind


def test_error_names_the_object() -> None:
    obj = mutate("Service", "spec.ports.0.port", "80")
    with pytest.raises(ManifestError) as info:
        validate(obj, "svc.yaml")
    assert (
        str(info.value)
        == "svc.yaml: Service/shop/web: spec.ports[0].port: expected an integer, got string '80'"
    )
    assert (info.value.kind, info.value.namespace, info.value.name) == ("Service", "shop", "web")


def test_cluster_scoped_error_has_no_namespace() -> None:
    obj = mutate("Node", "metadata.labels", {"zone": 1})
    with pytest.raises(ManifestError, match=r"^n\.yaml: Node/node-1: metadata\.labels\.zone: "):
        validate(obj, "n.yaml")


def test_all_problems_are_reported() -> None:
    obj = mutate("Service", "spec.ports.0.port", "80")
    obj["spec"]["ports"][1]["protocol"] = "HTTP"
    with pytest.raises(ManifestError) as info:
        validate(obj)
    paths = [p for p, _ in info.value.problems]
    assert paths == ["spec.ports[0].port", "spec.ports[1].protocol"]
    assert "spec.ports[1].protocol" in str(info.value)


def test_unknown_fields_are_kept() -> None:
    obj = mutate("Pod", "spec.containers.0.securityContext", {"runAsUser": 1000})
    obj["spec"]["priorityClassName"] = "high"
    out = validate(obj)
    assert out["spec"]["containers"][0]["securityContext"] == {"runAsUser": 1000}
    assert out["spec"]["priorityClassName"] == "high"


def test_unknown_kind_is_returned_as_is() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "L"}}
    out = validate(obj)
    assert out == obj
    assert out is not obj


@pytest.mark.parametrize(
    ("obj", "where"),
    [
        ({"kind": "Pod", "metadata": {"name": "p"}}, "apiVersion"),
        ({"apiVersion": "v1", "metadata": {"name": "p"}}, "kind"),
        ({"apiVersion": "v1", "kind": "Pod"}, "metadata"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {}}, "metadata.name"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": ""}}, "metadata.name"),
        ({"apiVersion": 1, "kind": "Pod", "metadata": {"name": "p"}}, "apiVersion"),
        ({"apiVersion": "v1", "kind": "Pod", "metadata": "p"}, "metadata"),
        ({"apiVersion": "x/v1", "kind": "Widget", "metadata": {}}, "metadata.name"),
    ],
)
def test_envelope(obj: dict[str, Any], where: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate(obj)
    assert info.value.path == where


def test_wrong_kind_type_is_error() -> None:
    with pytest.raises(ManifestError, match="expected an object"):
        validate(["not", "a", "mapping"])  # type: ignore[arg-type]


# --- normalization ------------------------------------------------------------------------------


def test_namespace_defaults_and_cluster_scope_drops_it() -> None:
    sa = validate(VALID["ServiceAccount"])
    assert sa["metadata"]["namespace"] == "default"
    ns = validate({**VALID["Namespace"], "metadata": {"name": "shop", "namespace": "x"}})
    assert "namespace" not in ns["metadata"]


def test_service_defaults() -> None:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80}]},
    }
    out = validate(obj)
    assert out["spec"]["type"] == "ClusterIP"
    assert out["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert obj["spec"]["ports"] == [{"port": 80}]  # the input is not modified


def test_headless_service_needs_no_ports() -> None:
    out = validate(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}
    )
    assert out["spec"]["clusterIP"] == "None"


def test_deployment_and_pod_defaults() -> None:
    dep = mutate("Deployment", "spec.replicas", DELETE)
    out = validate(dep)
    assert out["spec"]["replicas"] == 1
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"
    pod = validate(VALID["Pod"])
    assert pod["spec"]["containers"][0]["ports"][0]["protocol"] == "TCP"


def test_route_defaults() -> None:
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "r"},
        "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "a", "port": 80}]}]},
    }
    out = validate(route)
    assert out["spec"]["parentRefs"] == [
        {"name": "gw", "group": "gateway.networking.k8s.io", "kind": "Gateway"}
    ]
    rule = out["spec"]["rules"][0]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"name": "a", "port": 80, "group": "", "kind": "Service", "weight": 1}]
    no_rules = validate({**route, "spec": {"parentRefs": [{"name": "gw"}]}})
    assert no_rules["spec"]["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}]


def test_gateway_listener_defaults_to_same_namespace() -> None:
    gw = mutate("Gateway", "spec.listeners.0.allowedRoutes", DELETE)
    out = validate(gw)
    assert out["spec"]["listeners"][0]["allowedRoutes"] == {"namespaces": {"from": "Same"}}


def test_v1beta1_security_and_gateway_versions() -> None:
    assert validate(mutate("AuthorizationPolicy", "apiVersion", "security.istio.io/v1beta1"))
    assert validate(mutate("Gateway", "apiVersion", "gateway.networking.k8s.io/v1beta1"))
    with pytest.raises(ManifestError, match="apiVersion"):
        validate(mutate("AuthorizationPolicy", "apiVersion", "security.istio.io/v2"))


def test_authorization_policy_empty_spec_is_valid() -> None:
    spec: dict[str, Any] | None
    for spec in ({}, None):
        obj = {**VALID["AuthorizationPolicy"], "spec": spec}
        assert validate(obj)["kind"] == "AuthorizationPolicy"
    assert validate({**VALID["AuthorizationPolicy"], "spec": {"rules": [{}]}})
