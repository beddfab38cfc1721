"""kubectl-style presentation of stored objects: resource names, ages and ``get`` tables (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ambit.resources.objects import condition
from ambit.store.types import Obj

NONE: Final = "<none>"
Column = tuple[str, Callable[[Obj], str]]


def group_of(api_version: str | None) -> str:
    """``apps/v1`` → ``apps``; ``v1`` → ``""``."""
    if not api_version or "/" not in api_version:
        return ""
    return api_version.split("/", 1)[0]


def plural(kind: str) -> str:
    """``Pod`` → ``pods``, ``AuthorizationPolicy`` → ``authorizationpolicies``, ``Ingress`` → ``ingresses``"""
    lower = kind.lower()
    if lower.endswith("y") and len(lower) > 1 and lower[-2] not in "aeiou":
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    return lower + "s"


def resource_type(kind: str, api_version: str | None) -> str:
    """kubectl's type prefix: ``service``, ``deployment.apps``, ``gateway.gateway.networking.k8s.io``."""
    group = group_of(api_version)
    return f"{kind.lower()}.{group}" if group else kind.lower()


def resource_name(obj: Obj) -> str:
    """``deployment.apps/productpage-v1``."""
    meta = obj.get("metadata") or {}
    return f"{resource_type(str(obj.get('kind', '')), obj.get('apiVersion'))}/{meta.get('name', '')}"


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration: ``45s``, ``3m20s``, ``17m``, ``5h3m``, ``30h``, ``3d4h``, ``40d``, ``2y``."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 24 * 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        years, rest = divmod(days, 365)
        return f"{years}y{rest}d" if rest else f"{years}y"
    return f"{days // 365}y"


def age(obj: Obj, now: datetime | None = None) -> str:
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not isinstance(stamp, str):
        return NONE
    try:
        created = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return NONE
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return human_duration(((now or datetime.now(UTC)) - created).total_seconds())


def _get(obj: Any, *path: str | int) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or len(obj) <= part:
                return None
            obj = obj[part]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(part)
    return obj


def _text(value: Any) -> str:
    if value is None or value in ("", []):
        return NONE
    return str(value)


def _pod_ready(obj: Obj) -> str:
    containers = _get(obj, "spec", "containers") or []
    statuses = _get(obj, "status", "containerStatuses") or []
    ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_restarts(obj: Obj) -> str:
    statuses = _get(obj, "status", "containerStatuses") or []
    return str(sum(int(s.get("restartCount") or 0) for s in statuses if isinstance(s, dict)))


def _pod_status(obj: Obj) -> str:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return "Terminating"
    reason = _get(obj, "status", "reason")
    return str(reason or _get(obj, "status", "phase") or "Pending")


def _service_ports(obj: Obj) -> str:
    ports = _get(obj, "spec", "ports") or []
    out = []
    for port in ports:
        if not isinstance(port, dict):
            continue
        text = str(port.get("port", ""))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        out.append(f"{text}/{port.get('protocol') or 'TCP'}")
    return ",".join(out) or NONE


def _selector(mapping: Any) -> str:
    if not isinstance(mapping, dict) or not mapping:
        return NONE
    return ",".join(f"{k}={v}" for k, v in mapping.items())


def _label_selector(selector: Any) -> str:
    """``metav1.FormatLabelSelector``: matchLabels and matchExpressions as one selector, by key."""
    if not isinstance(selector, dict):
        return NONE
    parts: list[tuple[str, str]] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        parts.append((str(key), f"{key}={value}"))
    for expr in selector.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            continue
        key, op = str(expr.get("key", "")), expr.get("operator")
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        shown = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}
        shown["DoesNotExist"] = f"!{key}"
        if str(op) not in shown:
            return "<error>"  # LabelSelectorAsSelector fails on an unknown operator
        parts.append((key, shown[str(op)]))
    return ",".join(text for _, text in sorted(parts, key=lambda p: p[0])) or NONE


def _count(obj: Obj, *path: str) -> str:
    return str(_get(obj, *path) or 0)


def _desired(obj: Obj) -> str:
    """``spec.replicas``, 1 when unset (the API default)."""
    wanted = _get(obj, "spec", "replicas")
    return str(1 if wanted is None else wanted)


def _deploy_ready(obj: Obj) -> str:
    return f"{_count(obj, 'status', 'readyReplicas')}/{_desired(obj)}"


def _node_status(obj: Obj) -> str:
    ready = condition(obj, "Ready")
    status = "Unknown" if ready is None else "Ready" if ready.get("status") == "True" else "NotReady"
    return status + (",SchedulingDisabled" if (obj.get("spec") or {}).get("unschedulable") else "")


def _node_ip(obj: Obj) -> str:
    for address in _get(obj, "status", "addresses") or []:
        if isinstance(address, dict) and address.get("type") == "InternalIP":
            return str(address.get("address"))
    return NONE


def _condition(obj: Obj, kind: str) -> str:
    found = condition(obj, kind)
    return "Unknown" if found is None else str(found.get("status", "Unknown"))


def _gateway_address(obj: Obj) -> str:
    addresses = _get(obj, "status", "addresses") or []
    return ",".join(str(a.get("value")) for a in addresses if isinstance(a, dict)) or NONE


def _containers(field: str) -> Callable[[Obj], str]:
    def render(obj: Obj) -> str:
        containers = _get(obj, "spec", "template", "spec", "containers") or []
        return ",".join(str(c.get(field, "")) for c in containers if isinstance(c, dict)) or NONE

    return render


def _int_or_percent(value: Any) -> str:
    """A PodDisruptionBudget's minAvailable / maxUnavailable; ``N/A`` when unset (kubectl)."""
    return "N/A" if value is None else str(value)


def _vpa_target(resource: str) -> Callable[[Obj], str]:
    """The VPA CRD's CPU / Mem printer column: the first container recommendation's target."""

    def render(obj: Obj) -> str:
        value = _get(obj, "status", "recommendation", "containerRecommendations", 0, "target", resource)
        return "" if value is None else str(value)

    return render


def _vpa_provided(obj: Obj) -> str:
    found = condition(obj, "RecommendationProvided")
    return "" if found is None or found.get("status") is None else str(found["status"])


def _hpa_reference(obj: Obj) -> str:
    ref = _get(obj, "spec", "scaleTargetRef") or {}
    return f"{ref.get('kind') or ''}/{ref.get('name') or ''}"


def _hpa_min_pods(obj: Obj) -> str:
    value = _get(obj, "spec", "minReplicas")
    return "<unset>" if value is None else str(value)


def hpa_columns(targets: Callable[[Obj], str]) -> tuple[list[Column], list[Column]]:
    """``kubectl get hpa``'s columns. TARGETS is ``targets(hpa)``: ``ambit.runtime.hpa.format_targets``,
    which this layer may not import, so the caller passes these columns in (``table(columns_of=...)``)."""
    return (
        [
            ("REFERENCE", _hpa_reference),
            ("TARGETS", targets),
            ("MINPODS", _hpa_min_pods),
            ("MAXPODS", lambda o: _count(o, "spec", "maxReplicas")),
            ("REPLICAS", lambda o: _count(o, "status", "currentReplicas")),
        ],
        [],
    )


# per kind: (columns between NAME and AGE, extra columns for -o wide)
_COLUMNS: Final[dict[str, tuple[list[Column], list[Column]]]] = {
    "Pod": (
        [("READY", _pod_ready), ("STATUS", _pod_status), ("RESTARTS", _pod_restarts)],
        [
            ("IP", lambda o: _text(_get(o, "status", "podIP"))),
            ("NODE", lambda o: _text(_get(o, "spec", "nodeName"))),
        ],
    ),
    "Service": (
        [
            ("TYPE", lambda o: str(_get(o, "spec", "type") or "ClusterIP")),
            ("CLUSTER-IP", lambda o: _text(_get(o, "spec", "clusterIP"))),
            ("EXTERNAL-IP", lambda o: _text(_get(o, "spec", "externalIPs"))),
            ("PORT(S)", _service_ports),
        ],
        [("SELECTOR", lambda o: _selector(_get(o, "spec", "selector")))],
    ),
    "Deployment": (
        [
            ("READY", _deploy_ready),
            ("UP-TO-DATE", lambda o: _count(o, "status", "updatedReplicas")),
            ("AVAILABLE", lambda o: _count(o, "status", "availableReplicas")),
        ],
        [
            ("CONTAINERS", _containers("name")),
            ("IMAGES", _containers("image")),
            ("SELECTOR", lambda o: _label_selector(_get(o, "spec", "selector"))),
        ],
    ),
    "ReplicaSet": (
        [
            ("DESIRED", _desired),
            ("CURRENT", lambda o: _count(o, "status", "replicas")),
            ("READY", lambda o: _count(o, "status", "readyReplicas")),
        ],
        [
            ("CONTAINERS", _containers("name")),
            ("IMAGES", _containers("image")),
            ("SELECTOR", lambda o: _label_selector(_get(o, "spec", "selector"))),
        ],
    ),
    # the VPA CRD's additionalPrinterColumns (an absent value is an empty cell, as kubectl shows a CRD's)
    "VerticalPodAutoscaler": (
        [
            ("MODE", lambda o: str(_get(o, "spec", "updatePolicy", "updateMode") or "")),
            ("CPU", _vpa_target("cpu")),
            ("MEM", _vpa_target("memory")),
            ("PROVIDED", _vpa_provided),
        ],
        [],
    ),
    "PodDisruptionBudget": (
        [
            ("MIN AVAILABLE", lambda o: _int_or_percent(_get(o, "spec", "minAvailable"))),
            ("MAX UNAVAILABLE", lambda o: _int_or_percent(_get(o, "spec", "maxUnavailable"))),
            ("ALLOWED DISRUPTIONS", lambda o: _count(o, "status", "disruptionsAllowed")),
        ],
        [],
    ),
    "Namespace": ([("STATUS", lambda o: str(_get(o, "status", "phase") or "Active"))], []),
    "Node": ([("STATUS", _node_status)], [("INTERNAL-IP", _node_ip)]),
    "Gateway": (
        [
            ("CLASS", lambda o: _text(_get(o, "spec", "gatewayClassName"))),
            ("ADDRESS", _gateway_address),
            ("PROGRAMMED", lambda o: _condition(o, "Programmed")),
        ],
        [],
    ),
    "HTTPRoute": ([("HOSTNAMES", lambda o: _text(",".join(_get(o, "spec", "hostnames") or [])))], []),
}


def table(
    objects: Sequence[Obj],
    *,
    kind: str,
    wide: bool = False,
    with_namespace: bool = False,
    with_type: bool = False,
    show_labels: bool = False,
    now: datetime | None = None,
    columns_of: Mapping[str, tuple[list[Column], list[Column]]] | None = None,
) -> str:
    """The ``kubectl get`` table of `objects` (all of `kind`), columns padded, three spaces apart.

    `columns_of` adds or replaces kinds' columns, for those a higher layer renders (``hpa_columns``)."""
    middle, extra = {**_COLUMNS, **(columns_of or {})}.get(kind, ([], []))
    columns: list[Column] = []
    if with_namespace:
        columns.append(("NAMESPACE", lambda o: str((o.get("metadata") or {}).get("namespace", ""))))
    if with_type:
        columns.append(("NAME", resource_name))
    else:
        columns.append(("NAME", lambda o: str((o.get("metadata") or {}).get("name", ""))))
    columns.extend(middle)
    columns.append(("AGE", lambda o: age(o, now)))
    if wide:
        columns.extend(extra)
    if show_labels:
        columns.append(("LABELS", lambda o: _selector((o.get("metadata") or {}).get("labels"))))
    rows = [[header for header, _ in columns]]
    rows.extend([render(obj) for _, render in columns] for obj in objects)
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "   ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
