"""The defaults the Kubernetes API server (or a CRD's schema) applies to an object, applied in place.

``normalize`` runs on an object that passed validation (``ambit.resources.manifest.validate``), so
the store keeps what an API server would keep. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from ambit.resources.kinds import GATEWAY_GROUP, KindInfo
from ambit.resources.objects import items as _items

JSON = dict[str, Any]


def _set_default(obj: JSON, key: str, value: Any) -> None:
    if obj.get(key) is None:
        obj[key] = value


def _normalize_pod_spec(spec: Any) -> None:
    for group in ("initContainers", "containers"):
        for ctr in _items(spec, group):
            for port in _items(ctr, "ports"):
                _set_default(port, "protocol", "TCP")


def _normalize_parent_refs(spec: JSON) -> None:
    for ref in _items(spec, "parentRefs"):
        _set_default(ref, "group", GATEWAY_GROUP)
        _set_default(ref, "kind", "Gateway")


def _normalize_backend_refs(rule: JSON) -> None:
    for ref in _items(rule, "backendRefs"):
        _set_default(ref, "group", "")
        _set_default(ref, "kind", "Service")
        _set_default(ref, "weight", 1)


def normalize(info: KindInfo, data: JSON) -> None:
    """Apply the defaults the Kubernetes API server (or the CRD schema) would apply, in place.

    * namespaced kinds: ``metadata.namespace`` defaults to ``default``; cluster-scoped kinds lose it;
    * Pod / Deployment template: container ``ports[].protocol`` = TCP; Deployment ``replicas`` = 1;
    * Service: ``spec.type`` = ClusterIP, ``ports[].protocol`` = TCP, ``ports[].targetPort`` = port;
    * Gateway: ``listeners[].allowedRoutes`` = ``{namespaces: {from: Same}}``;
    * HTTPRoute / GRPCRoute / TCPRoute: parentRefs group/kind = gateway.networking.k8s.io/Gateway,
      backendRefs group/kind/weight = ""/Service/1; HTTPRoute rules = one ``PathPrefix /`` match,
      path match type PathPrefix and value ``/``, header and query matches type Exact;
      GRPCRoute method and header matches type Exact.
    """
    meta = data["metadata"]
    if info.namespaced:
        if not meta.get("namespace"):
            meta["namespace"] = "default"
    else:
        meta.pop("namespace", None)
    spec = data.get("spec")
    if info.kind == "Service" and spec is None:
        spec = data["spec"] = {}
    if not isinstance(spec, dict):
        return
    if info.kind == "Pod":
        _normalize_pod_spec(spec)
    elif info.kind == "Deployment":
        _set_default(spec, "replicas", 1)
        template = spec.get("template")
        _normalize_pod_spec(template.get("spec") if isinstance(template, dict) else None)
    elif info.kind == "Service":
        _set_default(spec, "type", "ClusterIP")
        for port in _items(spec, "ports"):
            _set_default(port, "protocol", "TCP")
            _set_default(port, "targetPort", port.get("port"))
    elif info.kind == "Gateway":
        for listener in _items(spec, "listeners"):
            _set_default(listener, "allowedRoutes", {"namespaces": {"from": "Same"}})
            routes = listener["allowedRoutes"]
            if isinstance(routes, dict):
                _set_default(routes, "namespaces", {"from": "Same"})
                if isinstance(routes["namespaces"], dict):
                    _set_default(routes["namespaces"], "from", "Same")
    elif info.kind == "HTTPRoute":
        _normalize_parent_refs(spec)
        if spec.get("rules") is None:
            spec["rules"] = [{}]
        for rule in _items(spec, "rules"):
            if rule.get("matches") is None:
                rule["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
            for match in _items(rule, "matches"):
                if isinstance(match.get("path"), dict):
                    _set_default(match["path"], "type", "PathPrefix")
                    _set_default(match["path"], "value", "/")
                elif match.get("path") is None:
                    match["path"] = {"type": "PathPrefix", "value": "/"}
                for header in _items(match, "headers") + _items(match, "queryParams"):
                    _set_default(header, "type", "Exact")
            _normalize_backend_refs(rule)
    elif info.kind == "GRPCRoute":
        _normalize_parent_refs(spec)
        for rule in _items(spec, "rules"):
            for match in _items(rule, "matches"):
                if isinstance(match.get("method"), dict):
                    _set_default(match["method"], "type", "Exact")
                for header in _items(match, "headers"):
                    _set_default(header, "type", "Exact")
            _normalize_backend_refs(rule)
    elif info.kind == "TCPRoute":
        _normalize_parent_refs(spec)
        for rule in _items(spec, "rules"):
            _normalize_backend_refs(rule)
