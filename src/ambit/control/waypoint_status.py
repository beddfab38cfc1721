"""A waypoint Gateway's status, computed from the Gateway and its Service (pure, deterministic).

Conditions as Gateway API defines them and Istio fills them for a waypoint:

* ``Accepted``: ``True``/``Accepted`` ("Resource accepted") when the Gateway has a listener on
  15008 with protocol ``HBONE`` and a known ``istio.io/waypoint-for`` value; else ``False`` with
  ``ListenersNotValid`` or ``Invalid`` and a message naming the field;
* ``Programmed``: ``True``/``Programmed`` ("Resource programmed, assigned to service(s)
  <name>.<ns>.svc.<domain>:15008") once the waypoint Service has a cluster IP, which is also the
  Gateway's ``status.addresses`` entry (type ``IPAddress``); ``False``/``AddressNotUsable`` while it
  does not, ``False``/``Invalid`` when the Gateway is not accepted.

Determinism is what lets several control-plane replicas write it without flapping: the same
Gateway and Service give the same status, every condition carries the Gateway's
``metadata.generation`` as ``observedGeneration``, and ``lastTransitionTime`` is kept from the
previous status unless the condition's ``status`` changed (Kubernetes' condition convention; the
rule lives in ``ambit.control.status_conditions``). A writer that finds the computed status equal
to the stored one writes nothing.
"""

from __future__ import annotations

from typing import Any

from ambit.control.status_conditions import ON_STATUS, Verdict, generation_of, stamped
from ambit.model.workload import HBONE_PORT, service_hostname
from ambit.resources.objects import (
    WAYPOINT_FOR,
    WAYPOINT_TRAFFIC_TYPES,
    condition,
    hbone_listener,
    labels,
    mapping,
    name_of,
    namespace_or_default,
    text,
)

JSON = dict[str, Any]

ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"


def _accepted(gateway: Any) -> Verdict:
    if hbone_listener(gateway) is None:
        problem = f"spec.listeners: a waypoint needs a listener on port {HBONE_PORT} with protocol HBONE"
        return "False", "ListenersNotValid", problem
    traffic = labels(gateway).get(WAYPOINT_FOR)
    if traffic is not None and traffic not in WAYPOINT_TRAFFIC_TYPES:
        allowed = ", ".join(sorted(WAYPOINT_TRAFFIC_TYPES))
        return "False", "Invalid", f"metadata.labels[{WAYPOINT_FOR}]: {traffic!r} is not one of {allowed}"
    return "True", "Accepted", "Resource accepted"


def service_address(service: Any) -> str | None:
    """The waypoint Service's cluster IP, or None while it has none (missing, headless, unassigned)."""
    ip = text(mapping(service, "spec"), "clusterIP")
    return ip if ip and ip != "None" else None


def _condition(kind: str, verdict: Verdict, *, gateway: Any, now: str) -> JSON:
    before = condition(gateway, kind)
    return stamped(
        kind, verdict, before=before, generation=generation_of(gateway), now=now, moves_on=ON_STATUS
    )


def gateway_status(gateway: Any, service: Any, *, now: str, cluster_domain: str = "cluster.local") -> JSON:
    """The status a waypoint Gateway should carry; ``now`` (RFC 3339) is used only for a transition."""
    name, namespace = name_of(gateway), namespace_or_default(gateway)
    accepted = _accepted(gateway)
    address = service_address(service)
    programmed: Verdict
    if accepted[0] != "True":
        programmed = ("False", "Invalid", "Resource not accepted: " + accepted[2])
    elif address is None:
        host = service_hostname(name, namespace, cluster_domain)
        programmed = (
            "False",
            "AddressNotUsable",
            f"Failed to assign to any requested addresses: {host} has no address",
        )
    else:
        host = service_hostname(name, namespace, cluster_domain)
        programmed = (
            "True",
            "Programmed",
            f"Resource programmed, assigned to service(s) {host}:{HBONE_PORT}",
        )
    status: JSON = {
        "conditions": [
            _condition(ACCEPTED, accepted, gateway=gateway, now=now),
            _condition(PROGRAMMED, programmed, gateway=gateway, now=now),
        ]
    }
    if address is not None and accepted[0] == "True":
        status["addresses"] = [{"type": "IPAddress", "value": address}]
    return status
