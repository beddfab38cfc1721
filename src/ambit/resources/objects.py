"""The Kubernetes-object rules every layer shares: typed accessors, label selectors, enrolment, waypoints.

One definition of each rule, imported by the store, the control plane, the runtime and the CLI:

* tolerant accessors (:func:`labels`, :func:`annotations_of`, :func:`name_of`, :func:`namespace_of`,
  :func:`uid_of`, :func:`mapping`, :func:`items`, :func:`text`, ...): never raise on an object of an
  unexpected shape, they fall back to an empty value (a control plane that dies on one odd object
  fails every proxy);
* :func:`selector_matches`: a Kubernetes ``LabelSelector`` (``matchLabels`` AND every
  ``matchExpressions`` requirement: ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``). An unknown
  operator raises :class:`SelectorError` naming it (``metav1.LabelSelectorAsSelector`` refuses it
  too); manifests never carry one, since validation reports it as a ``ManifestError`` at apply time;
* :func:`is_ambient`: whether a pod is enrolled in the ambient mesh, Istio's rule;
* :func:`is_waypoint`: whether a Gateway is a waypoint (its class); :func:`waypoint_for`: the
  traffic it serves; :func:`use_waypoint`: which waypoint an object's (or its namespace's)
  ``istio.io/use-waypoint`` label names; :func:`condition`: one status condition of an object;
* :func:`pod_placement`: where a scheduled pod runs, for node authorization.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ambit.model.placement import POD_PHASES, PodPlacement
from ambit.model.workload import HBONE_PORT

JSON = dict[str, Any]

# Labels and annotations ambit reads (Istio's names, so Istio manifests and habits carry over).
DATAPLANE_MODE = "istio.io/dataplane-mode"
DATAPLANE_MODE_AMBIENT = "ambient"
DATAPLANE_MODE_NONE = "none"
SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
USE_WAYPOINT_NONE = "none"
WAYPOINT_FOR = "istio.io/waypoint-for"
WAYPOINT_TRAFFIC_TYPES = frozenset({"service", "workload", "all", "none"})
DEFAULT_WAYPOINT_FOR = "service"
WAYPOINT_REPLICAS = "ambit.dev/replicas"  # Gateway annotation: the waypoint Deployment's replicas
WAYPOINT_AUTOSCALE_MAX = "ambit.dev/autoscale-max-replicas"  # Gateway annotation: an HPA, 2..N replicas
WAYPOINT_AUTOSCALE_RPS = "ambit.dev/autoscale-target-rps"  # ... scaling on requests/s per replica
WAYPOINT_CLASSES = frozenset({"istio-waypoint", "ambit-waypoint"})
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"
GATEWAY_MANAGED_LABEL = "gateway.istio.io/managed"
MESH_CONTROLLER = "istio.io-mesh-controller"

SELECTOR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


# --- tolerant accessors -------------------------------------------------------------------------


def mapping(value: Any, *keys: str) -> JSON:
    """``value[k1][k2]...`` if every step is a mapping, else ``{}``."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def items(value: Any, key: str) -> list[JSON]:
    """The mappings in the list ``value[key]`` (anything else skipped)."""
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def strings(value: Any, key: str) -> list[str]:
    """The strings in the list ``value[key]`` (anything else skipped)."""
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, str)] if isinstance(found, list) else []


def text(value: Any, key: str, default: str = "") -> str:
    """``value[key]`` if it is a string, else ``default``."""
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else default


def string_map(value: Any) -> dict[str, str]:
    """The string-to-string entries of a mapping (``{}`` for anything else)."""
    return (
        {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(value, dict)
        else {}
    )


def metadata(obj: Any) -> JSON:
    return mapping(obj, "metadata")


def labels(obj: Any) -> dict[str, str]:
    return string_map(metadata(obj).get("labels"))


def annotations_of(obj: Any) -> dict[str, str]:
    return string_map(metadata(obj).get("annotations"))


def kind_of(obj: Any) -> str:
    return text(obj, "kind")


def name_of(obj: Any) -> str:
    return text(metadata(obj), "name")


def namespace_of(obj: Any) -> str:
    """``metadata.namespace`` as written ("" when absent; see :func:`namespace_or_default`)."""
    return text(metadata(obj), "namespace")


def namespace_or_default(obj: Any) -> str:
    """``metadata.namespace``, or ``default`` when absent (the API server's defaulting)."""
    return namespace_of(obj) or "default"


def uid_of(obj: Any) -> str:
    return text(metadata(obj), "uid")


def node_name(pod: Any) -> str:
    return text(mapping(pod, "spec"), "nodeName")


def service_account(pod: Any) -> str:
    """``spec.serviceAccountName``, or ``default`` as Kubernetes assigns."""
    return text(mapping(pod, "spec"), "serviceAccountName") or "default"


def phase(pod: Any) -> str:
    """``status.phase``, or ``Pending`` before the kubelet has written one."""
    return text(mapping(pod, "status"), "phase") or "Pending"


# --- label selectors ----------------------------------------------------------------------------


class SelectorError(ValueError):
    """A label selector that cannot be evaluated (an unknown operator, a malformed string form)."""


def selector_matches(selector: Mapping[str, Any] | None, target: Mapping[str, str]) -> bool:
    """Kubernetes ``LabelSelector`` semantics: ``matchLabels`` AND every ``matchExpressions`` entry.

    ``None`` and ``{}`` match every label set. ``In`` needs the key with one of the values;
    ``NotIn`` matches when the key is absent or has none of them; ``Exists`` / ``DoesNotExist`` test
    the key only. Raises :class:`SelectorError` for any other operator.
    """
    if not selector:
        return True
    for key, value in string_map(selector.get("matchLabels")).items():
        if target.get(key) != value:
            return False
    for req in items(selector, "matchExpressions"):
        key, op, values = text(req, "key"), req.get("operator"), strings(req, "values")
        present = key in target
        if op == "In":
            ok = present and target[key] in values
        elif op == "NotIn":
            ok = not present or target[key] not in values
        elif op == "Exists":
            ok = present
        elif op == "DoesNotExist":
            ok = not present
        else:
            raise SelectorError(f"unknown label selector operator {op!r} (key {key!r})")
        if not ok:
            return False
    return True


def labels_subset(selector: Mapping[str, str], target: Mapping[str, str]) -> bool:
    """Every label of ``selector`` is in ``target`` with the same value (a Service's ``spec.selector``)."""
    return all(target.get(k) == v for k, v in selector.items())


# --- ambient enrolment --------------------------------------------------------------------------


def is_ambient(pod: Any, namespace_obj: Any) -> bool:
    """Whether ``pod`` is enrolled in the ambient mesh (its traffic is redirected through ztunnel).

    Istio's rule, ``PodRedirectionEnabled`` in istio/istio ``cni/pkg/util/podutil.go``:

    1. the namespace's or the pod's ``istio.io/dataplane-mode`` label must be ``ambient``;
    2. a pod with a sidecar (annotation ``sidecar.istio.io/status``) is never enrolled;
    3. a pod labelled ``istio.io/dataplane-mode: none`` has opted out;
    4. a ``hostNetwork`` pod cannot be captured;
    5. otherwise the pod is enrolled.

    So any other value of the pod's label (``foo``) neither enrols nor opts out: the pod follows its
    namespace. ``namespace_obj`` is the pod's Namespace object (None when it does not exist).
    """
    pod_mode = labels(pod).get(DATAPLANE_MODE)
    if DATAPLANE_MODE_AMBIENT not in (labels(namespace_obj).get(DATAPLANE_MODE), pod_mode):
        return False
    if SIDECAR_STATUS_ANNOTATION in annotations_of(pod):
        return False
    if pod_mode == DATAPLANE_MODE_NONE:
        return False
    return mapping(pod, "spec").get("hostNetwork") is not True


# --- waypoint use -------------------------------------------------------------------------------


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``ownerReference`` marked ``controller: true`` (the object's managing controller), if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            return ref
    return None


def is_waypoint(gateway: Any) -> bool:
    """A Gateway of class ``istio-waypoint`` (Istio's) or ``ambit-waypoint``."""
    return (
        kind_of(gateway) == "Gateway"
        and text(mapping(gateway, "spec"), "gatewayClassName") in WAYPOINT_CLASSES
    )


def hbone_listener(gateway: Any) -> JSON | None:
    """The Gateway's listener a waypoint receives on: protocol ``HBONE`` on port 15008, or None."""
    return next(
        (
            listener
            for listener in items(mapping(gateway, "spec"), "listeners")
            if text(listener, "protocol") == "HBONE" and listener.get("port") == HBONE_PORT
        ),
        None,
    )


def waypoint_for(gateway: Any, gateway_class: Any = None) -> str:
    """The traffic a waypoint serves: its ``istio.io/waypoint-for`` label, else its class's, else service.

    Istio's order (``pilot/pkg/serviceregistry/ambient/waypoints.go``). The value is returned as
    written; one outside ``WAYPOINT_TRAFFIC_TYPES`` serves nothing (and the Gateway is not Accepted).
    """
    fallback = labels(gateway_class).get(WAYPOINT_FOR, DEFAULT_WAYPOINT_FOR)
    return labels(gateway).get(WAYPOINT_FOR, fallback)


@dataclass(frozen=True, slots=True)
class WaypointUse:
    """The Gateway an ``istio.io/use-waypoint`` label names, and where the label was found."""

    namespace: str
    name: str
    inherited: bool  # True when the label is the namespace's, not the object's own


def use_waypoint(obj: Any, namespace_obj: Any) -> WaypointUse | None:
    """The waypoint ``obj`` (a Service or a Pod) asks for, or None; Istio's label resolution.

    The object's own ``istio.io/use-waypoint`` label wins; without it the namespace's applies. The
    Gateway is in the object's namespace, or in the one named by ``istio.io/use-waypoint-namespace``
    on the same object (object or Namespace) that carries the ``use-waypoint`` label. ``none`` opts
    out, on the object even when its namespace names a waypoint. Whether that Gateway exists, is a
    waypoint and accepts the object is the caller's question (``ambit.control.translate_waypoint``).
    """
    own = labels(obj)
    inherited = USE_WAYPOINT not in own
    source = labels(namespace_obj) if inherited else own
    wanted = source.get(USE_WAYPOINT)
    if wanted is None or wanted == USE_WAYPOINT_NONE:
        return None
    return WaypointUse(
        namespace=source.get(USE_WAYPOINT_NAMESPACE, namespace_of(obj)), name=wanted, inherited=inherited
    )


def condition(obj: Any, kind: str) -> JSON | None:
    """The ``status.conditions`` entry of type ``kind`` (``Accepted``, ``Programmed``...), or None."""
    return next((c for c in items(mapping(obj, "status"), "conditions") if c.get("type") == kind), None)


def is_ready(pod: Any) -> bool:
    """The pod's ``Ready`` condition is ``True``."""
    ready = condition(pod, "Ready")
    return ready is not None and ready.get("status") == "True"


# --- placement ----------------------------------------------------------------------------------


def pod_placement(pod: Any) -> PodPlacement | None:
    """Where a scheduled Pod runs, for the CA's node authorization; None for an unscheduled pod."""
    if kind_of(pod) != "Pod":
        return None
    node = node_name(pod)
    if not node:
        return None
    current = phase(pod)
    return PodPlacement(
        namespace=namespace_or_default(pod),
        name=name_of(pod),
        uid=uid_of(pod),
        service_account=service_account(pod),
        node=node,
        phase=current if current in POD_PHASES else "Unknown",
    )


def service_for_host(
    host: str, namespace: str, cluster_domain: str = "cluster.local"
) -> tuple[str, str] | None:
    """(namespace, name) of the Service an Istio host (VirtualService ``hosts``, DestinationRule
    ``host``) names from ``namespace``, or None when it names none (a wildcard, an IP, another domain).

    Accepted forms: ``name`` (the Service in ``namespace``), ``name.ns``, ``name.ns.svc`` and the FQDN
    ``name.ns.svc.<cluster domain>`` (also written absolute, with a trailing dot); case-insensitive.
    The result is a candidate: ``example.com`` reads as Service ``example`` of namespace ``com``, so
    callers check that the Service exists (then an external host stays external). Istio itself expands only
    names without a dot; the two middle forms are ambit's, so translation warns when one is used.
    """
    name = host.lower()
    absolute = name.endswith(".")
    parts = name.removesuffix(".").split(".")
    if not name or any(not p for p in parts) or "*" in name:
        return None
    fqdn = parts[2:] == ["svc", *cluster_domain.split(".")]
    if absolute and not fqdn:
        return None  # only the full name may be written absolute
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc") or fqdn:
        return parts[1], parts[0]
    return None
