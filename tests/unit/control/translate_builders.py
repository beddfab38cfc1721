"""Builders of store objects for the translation tests (imported by tests/unit/control/test_translate_*.py).

Every object goes through ``ambit.resources.validate`` in ``run``, so the tests feed translation exactly
what the store holds.
"""

from __future__ import annotations

from typing import Any

from ambit.control.translate import TranslationResult, translate
from ambit.resources import validate

JSON = dict[str, Any]


def namespace(name: str, **labels: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def node(name: str, **labels: str) -> JSON:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def pod(
    name: str,
    ns: str = "default",
    *,
    labels: dict[str, str] | None = None,
    ip: str | None = "10.244.1.2",
    ips: list[str] | None = None,
    ready: bool | None = True,
    node_name: str = "node-1",
    uid: str | None = None,
    sa: str | None = None,
    ports: list[tuple[str, int]] | None = None,
    phase: str = "Running",
    owner: tuple[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
) -> JSON:
    meta: JSON = {"name": name, "namespace": ns, "uid": uid or f"uid-{ns}-{name}", "labels": labels or {}}
    if owner is not None:
        meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "o-1", "controller": True}
        ]
    if annotations:
        meta["annotations"] = annotations
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    container_ports = [
        {"name": n, "containerPort": p} for n, p in (ports if ports is not None else [("http", 8080)])
    ]
    spec: JSON = {"containers": [{"name": "app", "image": "example/app:1", "ports": container_ports}]}
    if node_name:
        spec["nodeName"] = node_name
    if sa:
        spec["serviceAccountName"] = sa
    status: JSON = {"phase": phase}
    if ip is not None:
        status["podIP"] = ip
    if ips is not None:
        status["podIPs"] = [{"ip": i} for i in ips]
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": status}


def service(
    name: str,
    ns: str = "default",
    *,
    selector: dict[str, str] | None = None,
    ports: list[JSON] | None = None,
    cluster_ip: str | None = "10.96.0.10",
    labels: dict[str, str] | None = None,
) -> JSON:
    spec: JSON = {"ports": ports if ports is not None else [{"name": "http", "port": 80, "targetPort": 8080}]}
    if selector is not None:
        spec["selector"] = selector
    if cluster_ip is not None:
        spec["clusterIP"] = cluster_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "spec": spec,
    }


def waypoint(
    name: str = "waypoint",
    ns: str = "default",
    *,
    waypoint_for: str | None = None,
    allowed_from: str | None = None,
    ns_selector: dict[str, str] | None = None,
    class_name: str = "istio-waypoint",
) -> JSON:
    listener: JSON = {"name": "mesh", "port": 15008, "protocol": "HBONE"}
    if allowed_from is not None:
        namespaces: JSON = {"from": allowed_from}
        if ns_selector is not None:
            namespaces["selector"] = {"matchLabels": ns_selector}
        listener["allowedRoutes"] = {"namespaces": namespaces}
    labels = {"istio.io/waypoint-for": waypoint_for} if waypoint_for else {}
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"gatewayClassName": class_name, "listeners": [listener]},
    }


def authz(
    name: str = "p", ns: str = "default", spec: JSON | None = None, annotations: dict[str, str] | None = None
) -> JSON:
    meta: JSON = {"name": name, "namespace": ns}
    if annotations:
        meta["annotations"] = annotations
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "AuthorizationPolicy",
        "metadata": meta,
        "spec": spec or {},
    }


def peer_authn(
    name: str,
    ns: str,
    mode: str | None = None,
    *,
    selector: dict[str, str] | None = None,
    port_level: dict[int, str] | None = None,
    created: str | None = None,
) -> JSON:
    spec: JSON = {}
    if mode is not None:
        spec["mtls"] = {"mode": mode}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    if port_level is not None:
        spec["portLevelMtls"] = {str(p): {"mode": m} for p, m in port_level.items()}
    meta: JSON = {"name": name, "namespace": ns}
    if created is not None:
        meta["creationTimestamp"] = created
    return {
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": meta,
        "spec": spec,
    }


def store(*objects: JSON) -> list[JSON]:
    """The objects as the store holds them (validated, normalized)."""
    return [validate(o, "test") for o in objects]


def run(*objects: JSON, **kwargs: Any) -> TranslationResult:
    return translate(store(*objects), **kwargs)
