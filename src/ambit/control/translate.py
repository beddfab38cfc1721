"""Translation: the store's objects → the workloads, services and policies proxies consume.

A pure function of the cluster state (Istio's ambient index, ``pilot/pkg/serviceregistry/ambient``):
``translate(objects)`` takes the store's objects (normalized dicts as ``ambit.resources.validate``
returns them) and returns a ``TranslationResult``. Every replica of the control plane computes the
same result, with the same versions, from the same objects.

Workloads (one per Pod with an IP that is not Succeeded/Failed)
  * ``uid`` = ``metadata.uid`` (``<namespace>/<name>`` if a pod has none); addresses =
    ``status.podIPs`` (else ``status.podIP``); ``service_account`` = ``spec.serviceAccountName``
    or ``default``; ``node`` = ``spec.nodeName``; ``trust_domain`` = the ``trust_domain`` argument;
  * ``tunnel_protocol`` HBONE iff the pod is ambient-enrolled (``ambit.resources.objects.is_ambient``,
    Istio's rule: its or its namespace's ``istio.io/dataplane-mode`` is ``ambient``, and the pod is
    not labelled ``none``, has no sidecar and is not ``hostNetwork``). Also HBONE (Istio's
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

Services (one per Service; ``ambit.control.translate_services``)
  * hostname ``<name>.<namespace>.svc.<cluster_domain>``, key ``<namespace>/<hostname>``;
  * ``vips`` = ``spec.clusterIPs`` (else ``spec.clusterIP``) minus ``None``/empty: a headless
    Service has no VIP;
  * ports: port, numeric ``target_port`` or ``target_port_name``, name, and ``app_protocol``:
    the port's protocol as Istio infers it (``port_protocol``), spelled as Istio's protocol names
    (``HTTP``, ``HTTP2``, ``GRPC``, ``GRPC-Web``, ``HTTPS``, ``TLS``, ``TCP``, ``UDP``, ``Mongo``,
    ``Redis``, ``MySQL``, ``HTTP_PROXY``), or ``""`` when Istio would sniff the protocol;
  * ``waypoint``: see ``ambit.control.translate_waypoint`` (service traffic).

Versions
  ``versions[name]`` is ``ambit.model.version.content_version``: the SHA-256 (hex) of a canonical
  JSON serialization of the resource (sorted keys, enums by value, no timestamps or
  resourceVersions, since resources carry none),
  for names ``wl/<uid>``, ``svc/<namespace>/<hostname>``, ``ap/<namespace>/<name>``,
  ``l7/<namespace>/<name>`` (a waypoint's policy, ``ambit.control.translate_policy_l7``) and
  ``rt/<route key>`` (a Gateway API route on a Service, ``ambit.control.translate_routes``, or a
  VirtualService on a Service host, ``ambit.control.translate_virtualservice``, which sets aside the
  Gateway API routes of a Service it covers: ``merge_routes``), and ``tp/<namespace>/<name>`` (the
  DestinationRules of a Service: connection pool, outlier detection, and subsets resolved against the
  workloads above and their Services, ``ambit.control.translate_destination_rule``),
  and ``rl/<namespace>/<name>`` (an HTTPLocalRateLimitPolicy, ``ambit.control.translate_rate_limit``).
  So a
  change to one pod changes exactly that workload's version (plus whatever that pod really changes).

Warnings: one line per problem, like istiod's status messages; sorted, without duplicates.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ambit.control.reference_grants import ReferenceGrants
from ambit.control.translate_common import (
    LOCALITY_LABEL,
    REDIRECTION_ANNOTATION,
    REGION_LABEL,
    SUBZONE_LABEL,
    TUNNEL_LABEL,
    ZONE_LABEL,
    Index,
    ObjectKey,
    build_objects,
    selects,
)
from ambit.control.translate_destination_rule import Endpoint, convert_destination_rules, defined_subsets
from ambit.control.translate_policy import PolicySet, convert_policies, workload_policy_keys
from ambit.control.translate_policy_l7 import convert_l7_policies
from ambit.control.translate_rate_limit import convert_rate_limits
from ambit.control.translate_routes import convert_routes
from ambit.control.translate_services import (
    SelectorIndex,
    ServiceInfo,
    service_info,
    workload_services,
)
from ambit.control.translate_virtualservice import convert_virtual_services, merge_routes
from ambit.control.translate_waypoint import Waypoint, collect_waypoints, resolve_waypoint
from ambit.model.policy import Authorization, L7Authorization
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.version import content_version
from ambit.model.workload import HealthStatus, Locality, Service, TunnelProtocol, Workload
from ambit.resources.objects import (
    JSON,
    annotations_of,
    is_ambient,
    items,
    labels,
    mapping,
    name_of,
    namespace_of,
    text,
)

__all__ = [
    "ClusterState",
    "TranslationResult",
    "translate",
]

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
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
    l7_policies: Mapping[str, L7Authorization] = field(default_factory=dict)  # by <namespace>/<name>
    routes: Mapping[str, HttpRoute] = field(default_factory=dict)  # by HttpRoute.key
    traffic_policies: Mapping[str, TrafficPolicy] = field(default_factory=dict)  # by TrafficPolicy.key
    rate_limits: Mapping[str, RateLimitPolicy] = field(default_factory=dict)  # by RateLimitPolicy.key

    @functools.cached_property
    def versions(self) -> Mapping[str, str]:
        """wl/<uid>, svc/<ns>/<hostname>, ap/<ns>/<name>, l7/<ns>/<name>, rt/<key>, tp/<ns>/<name>,
        rl/<ns>/<name> -> sha256 hex of canonical JSON.

        Computed on first access (the control plane versions what it serves itself, see
        ``ambit.control.cache``), then kept."""
        versions: dict[str, str] = {}
        for uid, workload in self.workloads.items():
            versions[f"wl/{uid}"] = content_version(workload)
        for key, service in self.services.items():
            versions[f"svc/{key}"] = content_version(service)
        for key, policy in self.policies.items():
            versions[f"ap/{key}"] = content_version(policy)
        for key, l7_policy in self.l7_policies.items():
            versions[f"l7/{key}"] = content_version(l7_policy)
        for key, route in self.routes.items():
            versions[f"rt/{key}"] = content_version(route)
        for key, traffic_policy in self.traffic_policies.items():
            versions[f"tp/{key}"] = content_version(traffic_policy)
        for key, rate_limit in self.rate_limits.items():
            versions[f"rl/{key}"] = content_version(rate_limit)
        return versions


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


def _workload_name(pod: JSON, index: Index, warnings: list[str]) -> str:
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
        what = f"Deployment {namespace_of(deployment)}/{name_of(deployment)}: spec.selector"
        if selector and selects(selector, pod_labels, what, warnings):
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


def _workload(
    pod: JSON,
    *,
    index: Index,
    services: dict[str, SelectorIndex],
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
        is_ambient(pod, index.get("Namespace", "", ns))
        or annotations_of(pod).get(REDIRECTION_ANNOTATION) == "enabled"
        or pod_labels.get(TUNNEL_LABEL) == "http"
    )
    healthy = _ready(status) and meta.get("deletionTimestamp") is None
    workload_name = _workload_name(pod, index, warnings)
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
        services=workload_services(pod, services.get(ns)),
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
    l7_policies = convert_l7_policies(
        index.kind("AuthorizationPolicy"), trust_domain=trust_domain, warnings=warnings
    )

    service_infos: list[ServiceInfo] = []
    for obj in index.kind("Service"):
        try:
            service_infos.append(service_info(obj, index, waypoints, cluster_domain, warnings))
        except Exception as exc:  # one odd object must not stop translation for everyone
            warnings.append(f"Service {namespace_of(obj)}/{name_of(obj)}: not translated: {exc!r}")
    services = {info.service.key: info.service for info in service_infos}
    routes = convert_routes(
        [*index.kind("HTTPRoute"), *index.kind("GRPCRoute"), *index.kind("TCPRoute")],
        services,
        waypoints=waypoints.keys(),
        grants=ReferenceGrants.from_objects(index.kind("ReferenceGrant")),
        cluster_domain=cluster_domain,
        warnings=warnings,
    )
    rate_limits = convert_rate_limits(
        index.kind("HTTPLocalRateLimitPolicy"),
        services,
        waypoints=waypoints.keys(),
        trust_domain=trust_domain,
        cluster_domain=cluster_domain,
        warnings=warnings,
    )
    services_by_namespace: dict[str, SelectorIndex] = {}
    for info in service_infos:
        services_by_namespace.setdefault(info.service.namespace, SelectorIndex()).add(info)

    workloads: dict[str, Workload] = {}
    endpoints: dict[str, list[Endpoint]] = {}  # service key -> (uid, pod labels) of its workloads
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
        pod_labels = labels(pod)
        for service_key, _ports in workload.services:
            endpoints.setdefault(service_key, []).append((workload.uid, pod_labels))

    traffic_policies = convert_destination_rules(
        index.kind("DestinationRule"),
        services,
        cluster_domain=cluster_domain,
        warnings=warnings,
        endpoints=endpoints,
    )
    virtual_services = convert_virtual_services(
        index.kind("VirtualService"),
        services,
        cluster_domain=cluster_domain,
        warnings=warnings,
        subsets=defined_subsets(traffic_policies.values()),
    )
    routes = merge_routes(routes, virtual_services, warnings)

    return TranslationResult(
        workloads=workloads,
        services=services,
        policies=dict(policies.policies),
        warnings=tuple(sorted(set(warnings))),
        l7_policies=l7_policies,
        routes=routes,
        traffic_policies=traffic_policies,
        rate_limits=rate_limits,
    )
