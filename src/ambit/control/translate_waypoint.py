"""Waypoint binding: which waypoint, if any, a Service or a Pod sends its traffic through.

Follows Istio (pilot/pkg/serviceregistry/ambient/waypoints.go):

* a waypoint is a Gateway whose ``gatewayClassName`` is ``istio-waypoint`` or ``ambit-waypoint``;
  its traffic type is the Gateway's ``istio.io/waypoint-for`` label, else its GatewayClass's, else
  ``service``; one of ``service``, ``workload``, ``all``, ``none``;
* which Gateway an object asks for is ``ambit.resources.objects.use_waypoint``: the object's own
  ``istio.io/use-waypoint`` label wins, else the namespace's; ``none`` opts out. An object label
  that names a missing Gateway gives *no* waypoint: it does not fall back to the namespace's label
  (as Istio);
* cross-namespace use must be allowed by the waypoint's HBONE listener
  (``allowedRoutes.namespaces.from``: ``All``, ``Selector`` on the using object's namespace's
  labels, or ``Same``, the default);
* a Service binds only to a waypoint for ``service`` or ``all`` traffic, a Pod only to one for
  ``workload`` or ``all``; a Pod that inherits a service-only waypoint from its namespace simply
  has no workload waypoint (no warning, as Istio);
* a waypoint's own pods and Service never get a waypoint (pods labelled
  ``gateway.networking.k8s.io/gateway-name: <gateway>``, services labelled
  ``gateway.istio.io/managed: istio.io-mesh-controller`` or with that gateway-name label).

Istio also waits for the Gateway to be programmed (``status.addresses``); ambit binds as soon as the
Gateway exists, since its waypoint Service name is known in advance (``<gateway>.<ns>.svc.<domain>``).
Problems become warnings (Istio writes them as status conditions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ambit.control.translate_common import Index, selects
from ambit.model.workload import HBONE_PORT, WaypointRef, service_hostname
from ambit.resources.objects import (
    GATEWAY_MANAGED_LABEL,
    GATEWAY_NAME_LABEL,
    MESH_CONTROLLER,
    USE_WAYPOINT,
    WAYPOINT_CLASSES,
    WAYPOINT_FOR,
    hbone_listener,
    is_waypoint,
    labels,
    mapping,
    name_of,
    namespace_of,
    text,
    use_waypoint,
    waypoint_for,
)


@dataclass(frozen=True)
class Waypoint:
    namespace: str
    name: str
    traffic_type: str
    allowed_from: str  # All | Same | Selector
    namespace_selector: Any
    ref: WaypointRef

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def serves(self, target: str) -> bool:
        return self.traffic_type in (target, "all")


def collect_waypoints(index: Index, cluster_domain: str) -> dict[tuple[str, str], Waypoint]:
    out: dict[tuple[str, str], Waypoint] = {}
    for gw in index.kind("Gateway"):
        if not is_waypoint(gw):
            continue
        spec = mapping(gw, "spec")
        class_name = text(spec, "gatewayClassName")
        ns, name = namespace_of(gw), name_of(gw)
        traffic = waypoint_for(gw, index.get("GatewayClass", "", class_name))
        routes = mapping(hbone_listener(gw), "allowedRoutes", "namespaces")
        out[(ns, name)] = Waypoint(
            namespace=ns,
            name=name,
            traffic_type=traffic,
            allowed_from=text(routes, "from", "Same"),
            namespace_selector=routes.get("selector"),
            ref=WaypointRef(
                namespace=ns, hostname=service_hostname(name, ns, cluster_domain), port=HBONE_PORT
            ),
        )
    return out


def _is_waypoint_instance(obj: Any, waypoints: dict[tuple[str, str], Waypoint], *, service: bool) -> bool:
    own = labels(obj)
    if service and own.get(GATEWAY_MANAGED_LABEL) == MESH_CONTROLLER:
        return True
    gateway = own.get(GATEWAY_NAME_LABEL)
    return gateway is not None and (namespace_of(obj), gateway) in waypoints


def _allows(waypoint: Waypoint, namespace: str, index: Index, warnings: list[str]) -> bool:
    if waypoint.allowed_from == "All":
        return True
    if waypoint.allowed_from == "Selector":
        what = f"waypoint {waypoint.key}: allowedRoutes.namespaces.selector"
        return selects(waypoint.namespace_selector, index.namespace_labels(namespace), what, warnings)
    return waypoint.namespace == namespace


def resolve_waypoint(
    obj: Any,
    *,
    target: str,  # "service" or "workload"
    index: Index,
    waypoints: dict[tuple[str, str], Waypoint],
    warnings: list[str],
) -> WaypointRef | None:
    """The waypoint ``obj`` (a Service or a Pod) is bound to, or None; problems go to ``warnings``."""
    if _is_waypoint_instance(obj, waypoints, service=target == "service"):
        return None
    ns = namespace_of(obj)
    what = f"{'Service' if target == 'service' else 'Pod'} {ns}/{name_of(obj)}"
    wanted = use_waypoint(obj, index.get("Namespace", "", ns))
    if wanted is None:
        return None
    inherited, where = wanted.inherited, (f"Namespace {ns}" if wanted.inherited else what)
    wp_ns, wanted_name = wanted.namespace, wanted.name
    waypoint = waypoints.get((wp_ns, wanted_name))
    if waypoint is None:
        warnings.append(
            f"{where}: {USE_WAYPOINT}={wanted_name} names {wp_ns}/{wanted_name}, "
            "which is not a waypoint Gateway "
            f"(a Gateway of class {' or '.join(sorted(WAYPOINT_CLASSES))}); no waypoint is used"
        )
        return None
    if not _allows(waypoint, ns, index, warnings):
        warnings.append(
            f"{what}: waypoint {waypoint.key} does not allow attachment from namespace {ns} "
            "(its HBONE listener's allowedRoutes); no waypoint is used"
        )
        return None
    if not waypoint.serves(target):
        if target == "service" or not inherited:
            warnings.append(
                f"{what}: waypoint {waypoint.key} is for {waypoint.traffic_type} traffic "
                f"({WAYPOINT_FOR}), not {target} traffic; no waypoint is used"
            )
        return None
    return waypoint.ref
