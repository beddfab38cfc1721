"""Translation of Services: hostname, VIPs, ports with Istio's protocol inference, and which pods they select.

Part of the pure translation (``ambit.control.translate`` documents the rules): ``service_info`` turns
one Service into a model ``Service`` plus its selector; ``SelectorIndex`` finds a namespace's
Services that select a pod; ``workload_services`` gives a pod's services with its own target ports.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ambit.control.translate_common import Index
from ambit.control.translate_waypoint import Waypoint, resolve_waypoint
from ambit.model.workload import PortMapping, Service, ServicePort, service_hostname
from ambit.resources.objects import (
    JSON,
    items,
    labels,
    labels_subset,
    mapping,
    name_of,
    namespace_of,
    string_map,
    strings,
    text,
)

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


@dataclass(frozen=True)
class ServiceInfo:
    service: Service
    selector: dict[str, str]
    protocols: tuple[str, ...]  # each port's transport protocol (TCP/UDP/SCTP), same order as ports


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def service_info(
    obj: JSON,
    index: Index,
    waypoints: dict[tuple[str, str], Waypoint],
    cluster_domain: str,
    warnings: list[str],
) -> ServiceInfo:
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
    return ServiceInfo(service, string_map(spec.get("selector")), tuple(protocols))


def _container_port(pod: JSON, port_name: str, protocol: str) -> int | None:
    for ctr in items(mapping(pod, "spec"), "containers"):
        for port in items(ctr, "ports"):
            if text(port, "name") == port_name and (text(port, "protocol", "TCP") or "TCP") == protocol:
                return _int(port.get("containerPort"))
    return None


class SelectorIndex:
    """One namespace's Services, indexed by one (label key, value) pair of their selector.

    A Service can only select a pod that has that pair, so a pod is matched against the Services
    indexed under its own labels instead of every Service of its namespace. Services with an empty
    selector select nothing (they have no endpoints from pods) and are left out.
    """

    __slots__ = ("_by_label",)

    def __init__(self) -> None:
        self._by_label: dict[tuple[str, str], list[ServiceInfo]] = {}

    def add(self, info: ServiceInfo) -> None:
        if info.selector:
            self._by_label.setdefault(min(info.selector.items()), []).append(info)

    def matching(self, pod_labels: Mapping[str, str]) -> list[ServiceInfo]:
        """Every Service whose selector is a subset of ``pod_labels`` (Istio's matchLabels)."""
        by_label = self._by_label
        found: list[ServiceInfo] = []
        for pair in pod_labels.items():
            for info in by_label.get(pair, ()):
                if labels_subset(info.selector, pod_labels):
                    found.append(info)
        return found


def workload_services(
    pod: JSON, services: SelectorIndex | None
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
