"""Translation: the store's objects → the workloads, services and policies proxies consume.

A pure function of the cluster state (Istio's ambient index, ``pilot/pkg/serviceregistry/ambient``):
``translate(objects)`` takes the store's objects (normalized dicts as ``ambit.resources.validate``
returns them) and returns a ``TranslationResult``. Every replica of the control plane computes the
same result, with the same versions, from the same objects.

Workloads (one per Pod with an IP that is not Succeeded/Failed)
  * ``uid`` = ``metadata.uid`` (``<namespace>/<name>`` if a pod has none); addresses =
    ``status.podIPs`` (else ``status.podIP``); ``service_account`` = ``spec.serviceAccountName``
    or ``default``; ``node`` = ``spec.nodeName``; ``trust_domain`` = the ``trust_domain`` argument;
  * ``tunnel_protocol`` HBONE iff the pod is ambient-enrolled: its ``istio.io/dataplane-mode``
    label is ``ambient``, or its namespace's is and the pod's is not ``none``. Also HBONE (Istio's
    native-tunnel cases): pods annotated ``ambient.istio.io/redirection: enabled`` or labelled
    ``networking.istio.io/tunnel: http`` (waypoints, which speak HBONE themselves);
  * ``status`` HEALTHY iff the ``Ready`` condition is ``True`` and the pod is not being deleted
    (no ``deletionTimestamp``), as Istio;
  * ``waypoint``: see ``ambit.control.translate_waypoint`` (workload traffic);
  * ``services``: every Service of the pod's namespace with a non-empty selector that matches the
    pod's labels, each with its ports for this pod: a numeric ``targetPort`` as is; a named one
    resolved against the pod's containers' ports (same name and protocol); a name the pod does
    not have omits that port for this pod (the service is still listed);
  * ``authorization_policies``: see ``ambit.control.translate_policy``; only keys of policies
    that exist in the result are listed;
  * ``locality``: the node's ``topology.kubernetes.io/region`` / ``zone`` and
    ``topology.istio.io/subzone`` labels, unless the pod has an ``istio-locality`` label
    (``region.zone.subzone``);
  * ``workload_name``: the controlling owner (a ReplicaSet counts as its Deployment: the
    ``-<pod-template-hash>`` suffix is removed); without owner references, the first Deployment
    (by name) of the namespace whose selector matches the pod; else the pod's name;
  * ``canonical_name`` / ``canonical_revision``: labels ``service.istio.io/canonical-name``,
    ``app.kubernetes.io/name``, ``app`` (else the workload name) and
    ``service.istio.io/canonical-revision``, ``app.kubernetes.io/version``, ``version`` (else
    ``latest``), as Istio.

Services (one per Service)
  * hostname ``<name>.<namespace>.svc.<cluster_domain>``, key ``<namespace>/<hostname>``;
  * ``vips`` = ``spec.clusterIPs`` (else ``spec.clusterIP``) minus ``None``/empty: a headless
    Service has no VIP;
  * ports: port, numeric ``target_port`` or ``target_port_name``, name, and ``app_protocol``:
    the port's protocol as Istio infers it (``port_protocol``), spelled as Istio's protocol names
    (``HTTP``, ``HTTP2``, ``GRPC``, ``GRPC-Web``, ``HTTPS``, ``TLS``, ``TCP``, ``UDP``, ``Mongo``,
    ``Redis``, ``MySQL``, ``HTTP_PROXY``), or ``""`` when Istio would sniff the protocol;
  * ``waypoint``: see ``ambit.control.translate_waypoint`` (service traffic).

Versions
  ``versions[name]`` is the SHA-256 (hex) of a canonical JSON serialization of the resource
  (sorted keys, enums by value, no timestamps or resourceVersions, since resources carry none),
  for names ``wl/<uid>``, ``svc/<namespace>/<hostname>`` and ``ap/<namespace>/<name>``. So a change
  to one pod changes exactly that workload's version (plus whatever that pod really changes).

Warnings: one line per problem, like istiod's status messages; sorted, without duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ambit.control.translate_common import (
    DATAPLANE_MODE,
    JSON,
    LOCALITY_LABEL,
    REDIRECTION_ANNOTATION,
    REGION_LABEL,
    SUBZONE_LABEL,
    TUNNEL_LABEL,
    ZONE_LABEL,
    Index,
    ObjectKey,
    annotations_of,
    build_objects,
    items,
    label_selector_matches,
    labels,
    mapping,
    name_of,
    namespace_of,
    string_map,
    strings,
    subset,
    text,
)
from ambit.control.translate_policy import PolicySet, convert_policies, workload_policy_keys
from ambit.control.translate_waypoint import Waypoint, collect_waypoints, resolve_waypoint
from ambit.model.policy import Authorization
from ambit.model.workload import (
    HealthStatus,
    Locality,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    Workload,
    service_hostname,
)

__all__ = [
    "ClusterState",
    "TranslationResult",
    "canonical_json",
    "content_version",
    "port_protocol",
    "translate",
]

VERSION_HEX_CHARS = 64
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})  # SMTP, DNS, MySQL, MongoDB: never sniffed
_PROTOCOLS = {
    "tcp": "TCP",
    "udp": "UDP",
    "grpc": "GRPC",
    "grpc-web": "GRPC-Web",
    "http": "HTTP",
    "http_proxy": "HTTP_PROXY",
    "http2": "HTTP2",
    "https": "HTTPS",
    "tls": "TLS",
    "mongo": "Mongo",
    "redis": "Redis",
    "mysql": "MySQL",
}
# Gateway API's standard appProtocol values (beyond Istio's ConvertProtocol, which ignores them).
_APP_PROTOCOL_ALIASES = {"kubernetes.io/h2c": "HTTP2", "kubernetes.io/ws": "HTTP"}
_HASH_SUFFIX = re.compile(r"-[a-z0-9]+$")


@dataclass(frozen=True)
class ClusterState:
    """The store's objects by (kind, namespace, name); namespace is "" for cluster-scoped kinds."""

    objects: Mapping[ObjectKey, JSON]

    @classmethod
    def from_objects(cls, objects: Iterable[JSON]) -> ClusterState:
        """Build from a list of objects (later duplicates of a key win; objects without kind/name skipped)."""
        return cls(build_objects(objects))


@dataclass(frozen=True)
class TranslationResult:
    workloads: Mapping[str, Workload]  # by uid
    services: Mapping[str, Service]  # by key <namespace>/<hostname>
    policies: Mapping[str, Authorization]  # by <namespace>/<name>
    warnings: tuple[str, ...]

    @functools.cached_property
    def versions(self) -> Mapping[str, str]:
        """wl/<uid>, svc/<namespace>/<hostname>, ap/<namespace>/<name> -> sha256 hex of its canonical JSON.

        Computed on first access (the control plane versions what it serves itself, see
        ``ambit.control.cache``), then kept."""
        versions: dict[str, str] = {}
        for uid, workload in self.workloads.items():
            versions[f"wl/{uid}"] = content_version(workload)
        for key, service in self.services.items():
            versions[f"svc/{key}"] = content_version(service)
        for key, policy in self.policies.items():
            versions[f"ap/{key}"] = content_version(policy)
        return versions


# --- canonical form and versions --------------------------------------------------------------------


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return _canonical(value.value)
    names = getattr(type(value), "__dataclass_fields__", None)
    if names is not None:
        return {name: _canonical(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def canonical_json(value: Any) -> str:
    """The canonical serialization a version hashes: JSON, sorted keys, no whitespace."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_version(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:VERSION_HEX_CHARS]


# --- protocols --------------------------------------------------------------------------------


def port_protocol(name: str, app_protocol: str = "", protocol: str = "TCP", port: int = 0) -> str:
    """The application protocol of a Service port, as Istio infers it (kube.ConvertProtocol).

    UDP ports are UDP; else ``appProtocol`` if set, else the port name's prefix before the first
    ``-`` (``http-api`` → HTTP; ``grpc-web*`` → GRPC-Web), case-insensitive; the Gateway API values
    ``kubernetes.io/h2c`` → HTTP2 and ``kubernetes.io/ws`` → HTTP; unknown → TCP for the well-known
    ports 25, 53, 3306 and 27017, else ``""`` (Istio sniffs the protocol).
    """
    if protocol == "UDP":
        return "UDP"
    candidate = app_protocol or name
    if candidate in _APP_PROTOCOL_ALIASES:
        return _APP_PROTOCOL_ALIASES[candidate]
    if candidate[:8].lower() == "grpc-web":
        return "GRPC-Web"
    found = _PROTOCOLS.get(candidate.split("-", 1)[0].lower(), "")
    if not found and port in _WELL_KNOWN_TCP_PORTS:
        return "TCP"
    return found


# --- services ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ServiceInfo:
    service: Service
    selector: dict[str, str]
    protocols: tuple[str, ...]  # each port's transport protocol (TCP/UDP/SCTP), same order as ports


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _service(
    obj: JSON,
    index: Index,
    waypoints: dict[tuple[str, str], Waypoint],
    cluster_domain: str,
    warnings: list[str],
) -> _ServiceInfo:
    ns, name = namespace_of(obj), name_of(obj)
    spec = mapping(obj, "spec")
    ips = strings(spec, "clusterIPs") or [text(spec, "clusterIP")]
    vips = tuple(ip for ip in ips if ip and ip != "None")
    ports: list[ServicePort] = []
    protocols: list[str] = []
    for port in items(spec, "ports"):
        number = _int(port.get("port"))
        if number is None:
            continue
        target = port.get("targetPort", number)
        target_int = _int(target)
        target_name = target if isinstance(target, str) else ""
        transport = text(port, "protocol", "TCP") or "TCP"
        port_name = text(port, "name")
        ports.append(
            ServicePort(
                port=number,
                target_port=target_int if target_int is not None else (0 if target_name else number),
                target_port_name=target_name,
                name=port_name,
                app_protocol=port_protocol(port_name, text(port, "appProtocol"), transport, number),
            )
        )
        protocols.append(transport)
    service = Service(
        name=name,
        namespace=ns,
        hostname=service_hostname(name, ns, cluster_domain),
        vips=vips,
        ports=tuple(ports),
        waypoint=resolve_waypoint(obj, target="service", index=index, waypoints=waypoints, warnings=warnings),
    )
    return _ServiceInfo(service, string_map(spec.get("selector")), tuple(protocols))


# --- workloads --------------------------------------------------------------------------------


def _pod_ips(status: JSON) -> tuple[str, ...]:
    candidates = [text(entry, "ip") for entry in items(status, "podIPs")] or [text(status, "podIP")]
    out: list[str] = []
    for ip in candidates:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            continue
        out.append(ip)
    return tuple(out)


def _ambient(pod_labels: dict[str, str], ns_labels: dict[str, str]) -> bool:
    mode = pod_labels.get(DATAPLANE_MODE)
    if mode == "ambient":
        return True
    return ns_labels.get(DATAPLANE_MODE) == "ambient" and mode != "none"


def _ready(status: JSON) -> bool:
    return any(
        text(cond, "type") == "Ready" and text(cond, "status") == "True"
        for cond in items(status, "conditions")
    )


def _locality(pod: JSON, index: Index) -> Locality:
    override = labels(pod).get(LOCALITY_LABEL)
    if override:
        parts = [*override.split(".", 2), "", ""]
        return Locality(region=parts[0], zone=parts[1], subzone=parts[2])
    node_labels = labels(index.get("Node", "", text(mapping(pod, "spec"), "nodeName")))
    return Locality(
        region=node_labels.get(REGION_LABEL, ""),
        zone=node_labels.get(ZONE_LABEL, ""),
        subzone=node_labels.get(SUBZONE_LABEL, ""),
    )


def _workload_name(pod: JSON, index: Index) -> str:
    owners = items(mapping(pod, "metadata"), "ownerReferences")
    owner = next((o for o in owners if o.get("controller") is True), owners[0] if owners else None)
    if owner is not None:
        kind, name = text(owner, "kind"), text(owner, "name")
        if kind == "ReplicaSet" and name:
            pod_hash = labels(pod).get("pod-template-hash")
            if pod_hash and name.endswith(f"-{pod_hash}"):
                return name[: -len(pod_hash) - 1]
            return _HASH_SUFFIX.sub("", name) or name
        if name:
            return name
    pod_labels = labels(pod)
    for deployment in index.in_namespace("Deployment", namespace_of(pod)):
        selector = mapping(deployment, "spec", "selector")
        if selector and label_selector_matches(selector, pod_labels):
            return name_of(deployment)
    return name_of(pod)


def _canonical_service(pod_labels: dict[str, str], workload_name: str) -> tuple[str, str]:
    name = next(
        (
            pod_labels[k]
            for k in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
            if pod_labels.get(k)
        ),
        workload_name,
    )
    revision = next(
        (
            pod_labels[k]
            for k in ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version")
            if pod_labels.get(k)
        ),
        "latest",
    )
    return name, revision


def _container_port(pod: JSON, port_name: str, protocol: str) -> int | None:
    for ctr in items(mapping(pod, "spec"), "containers"):
        for port in items(ctr, "ports"):
            if text(port, "name") == port_name and (text(port, "protocol", "TCP") or "TCP") == protocol:
                return _int(port.get("containerPort"))
    return None


class _SelectorIndex:
    """One namespace's Services, indexed by one (label key, value) pair of their selector.

    A Service can only select a pod that has that pair, so a pod is matched against the Services
    indexed under its own labels instead of every Service of its namespace. Services with an empty
    selector select nothing (they have no endpoints from pods) and are left out.
    """

    __slots__ = ("_by_label",)

    def __init__(self) -> None:
        self._by_label: dict[tuple[str, str], list[_ServiceInfo]] = {}

    def add(self, info: _ServiceInfo) -> None:
        if info.selector:
            self._by_label.setdefault(min(info.selector.items()), []).append(info)

    def matching(self, pod_labels: Mapping[str, str]) -> list[_ServiceInfo]:
        """Every Service whose selector is a subset of ``pod_labels`` (Istio's matchLabels)."""
        by_label = self._by_label
        found: list[_ServiceInfo] = []
        for pair in pod_labels.items():
            for info in by_label.get(pair, ()):
                if subset(info.selector, pod_labels):
                    found.append(info)
        return found


def _workload_services(
    pod: JSON, services: _SelectorIndex | None
) -> tuple[tuple[str, tuple[PortMapping, ...]], ...]:
    if services is None:
        return ()
    pod_labels = labels(pod)
    out: list[tuple[str, tuple[PortMapping, ...]]] = []
    for info in services.matching(pod_labels):
        mappings: list[PortMapping] = []
        for port, protocol in zip(info.service.ports, info.protocols, strict=True):
            if port.target_port_name:
                target = _container_port(pod, port.target_port_name, protocol)
                if target is None:
                    continue  # this pod does not serve the named port
            else:
                target = port.target_port
            mappings.append(PortMapping(service_port=port.port, target_port=target))
        out.append((info.service.key, tuple(sorted(mappings, key=lambda m: (m.service_port, m.target_port)))))
    return tuple(sorted(out))


def _workload(
    pod: JSON,
    *,
    index: Index,
    services: dict[str, _SelectorIndex],
    policies: PolicySet,
    waypoints: dict[tuple[str, str], Waypoint],
    root_namespace: str,
    trust_domain: str,
    warnings: list[str],
) -> Workload | None:
    status = mapping(pod, "status")
    if text(status, "phase") in TERMINAL_PHASES:
        return None
    addresses = _pod_ips(status)
    if not addresses:
        return None
    ns, name = namespace_of(pod), name_of(pod)
    meta = mapping(pod, "metadata")
    spec = mapping(pod, "spec")
    pod_labels = labels(pod)
    hbone = (
        _ambient(pod_labels, index.namespace_labels(ns))
        or annotations_of(pod).get(REDIRECTION_ANNOTATION) == "enabled"
        or pod_labels.get(TUNNEL_LABEL) == "http"
    )
    healthy = _ready(status) and meta.get("deletionTimestamp") is None
    workload_name = _workload_name(pod, index)
    canonical_name, canonical_revision = _canonical_service(pod_labels, workload_name)
    return Workload(
        uid=text(meta, "uid") or f"{ns}/{name}",
        name=name,
        namespace=ns,
        service_account=text(spec, "serviceAccountName") or "default",
        node=text(spec, "nodeName"),
        addresses=addresses,
        tunnel_protocol=TunnelProtocol.HBONE if hbone else TunnelProtocol.NONE,
        status=HealthStatus.HEALTHY if healthy else HealthStatus.UNHEALTHY,
        trust_domain=trust_domain,
        waypoint=resolve_waypoint(
            pod, target="workload", index=index, waypoints=waypoints, warnings=warnings
        ),
        services=_workload_services(pod, services.get(ns)),
        authorization_policies=workload_policy_keys(policies, ns, pod_labels, root_namespace),
        locality=_locality(pod, index),
        workload_name=workload_name,
        canonical_name=canonical_name,
        canonical_revision=canonical_revision,
    )


# --- entry point --------------------------------------------------------------------------------


def translate(
    objects: Iterable[JSON] | ClusterState,
    *,
    root_namespace: str = "istio-system",
    trust_domain: str = "cluster.local",
    cluster_domain: str = "cluster.local",
) -> TranslationResult:
    """Translate the store's objects into proxy resources (pure, deterministic)."""
    state = objects if isinstance(objects, ClusterState) else ClusterState.from_objects(objects)
    index = Index.build(state.objects)
    warnings: list[str] = []
    waypoints = collect_waypoints(index, cluster_domain)

    policies = convert_policies(
        index.kind("AuthorizationPolicy"),
        index.kind("PeerAuthentication"),
        root_namespace=root_namespace,
        trust_domain=trust_domain,
    )
    warnings.extend(policies.warnings)

    service_infos: list[_ServiceInfo] = []
    for obj in index.kind("Service"):
        try:
            service_infos.append(_service(obj, index, waypoints, cluster_domain, warnings))
        except Exception as exc:  # one odd object must not stop translation for everyone
            warnings.append(f"Service {namespace_of(obj)}/{name_of(obj)}: not translated: {exc!r}")
    services = {info.service.key: info.service for info in service_infos}
    services_by_namespace: dict[str, _SelectorIndex] = {}
    for info in service_infos:
        services_by_namespace.setdefault(info.service.namespace, _SelectorIndex()).add(info)

    workloads: dict[str, Workload] = {}
    for pod in index.kind("Pod"):
        try:
            workload = _workload(
                pod,
                index=index,
                services=services_by_namespace,
                policies=policies,
                waypoints=waypoints,
                root_namespace=root_namespace,
                trust_domain=trust_domain,
                warnings=warnings,
            )
        except Exception as exc:  # one odd object must not stop translation for everyone
            warnings.append(f"Pod {namespace_of(pod)}/{name_of(pod)}: not translated: {exc!r}")
            continue
        if workload is None:
            continue
        if workload.uid in workloads:
            warnings.append(
                f"Pod {workload.namespace}/{workload.name}: uid {workload.uid} is not unique; skipped"
            )
            continue
        workloads[workload.uid] = workload

    return TranslationResult(
        workloads=workloads,
        services=services,
        policies=dict(policies.policies),
        warnings=tuple(sorted(set(warnings))),
    )
