"""ClusterIP allocation for Services, as the Kubernetes API server does on create.

A Service of type ClusterIP/NodePort/LoadBalancer created without `spec.clusterIP` gets the lowest
free address of the service range (10.96.0.0/16, starting at .10; the first addresses stay reserved
as in Kubernetes, where 10.96.0.1 is the `kubernetes` Service). An explicit address must be inside
the range and free. `None` means headless (no VIP). The address is immutable afterwards: an update
without it keeps the old one, an update that changes it is refused.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/16")
FIRST_ALLOCATABLE = 10
NO_VIP_TYPES = frozenset({"ExternalName"})


class ClusterIPError(ValueError):
    """The field path and reason, as the API server words it."""


def used_addresses(services: Iterable[dict[str, Any]]) -> set[str]:
    used = set()
    for svc in services:
        ip = svc.get("spec", {}).get("clusterIP")
        if ip and ip != "None":
            used.add(ip)
    return used


def allocate(used: set[str], network: ipaddress.IPv4Network = SERVICE_CIDR) -> str:
    for offset in range(FIRST_ALLOCATABLE, network.num_addresses - 1):
        candidate = str(network.network_address + offset)
        if candidate not in used:
            return candidate
    raise ClusterIPError(f"spec.clusterIP: the service range {network} is full")


def assign(spec: dict[str, Any], existing_spec: dict[str, Any] | None, used: set[str]) -> None:
    """Fill or check `spec.clusterIP`/`clusterIPs` in place; `used` gains a newly allocated address."""
    if spec.get("type", "ClusterIP") in NO_VIP_TYPES:
        return
    requested = spec.get("clusterIP") or None
    if existing_spec is not None:
        current = existing_spec.get("clusterIP") or None
        if requested is None:
            requested = current
        elif current is not None and requested != current:
            raise ClusterIPError(f"spec.clusterIP: field is immutable (is {current}, asked for {requested})")
        if requested is None:
            return
    elif requested is None:
        requested = allocate(used)
        used.add(requested)
    elif requested != "None":
        try:
            address = ipaddress.ip_address(requested)
        except ValueError as exc:
            raise ClusterIPError(f"spec.clusterIP: {requested!r} is not an IP address") from exc
        if address not in SERVICE_CIDR:
            raise ClusterIPError(f"spec.clusterIP: {requested} is not in the service range {SERVICE_CIDR}")
        if requested in used:
            raise ClusterIPError(f"spec.clusterIP: {requested} is already allocated")
        used.add(requested)
    spec["clusterIP"] = requested
    spec["clusterIPs"] = [requested]
