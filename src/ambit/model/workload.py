"""Workloads and services as proxies see them (Istio's `istio.workload.Address` = Workload | Service).

These are the values the control plane's translation produces, xDS carries, and ztunnel routes on.
Frozen and hashable; stdlib only. Keys:

* a workload by `uid` (the pod's uid);
* a service by `key` = `<namespace>/<hostname>`, as in Istio's workload API;
* a policy by `<namespace>/<name>` (see `ambit.model.policy`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity

HBONE_PORT = 15008


class TunnelProtocol(Enum):
    """How traffic reaches the workload: HBONE (ambient-enrolled) or plain TCP."""

    NONE = "NONE"
    HBONE = "HBONE"


class HealthStatus(Enum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"


@dataclass(frozen=True, slots=True)
class Locality:
    region: str = ""
    zone: str = ""
    subzone: str = ""


@dataclass(frozen=True, slots=True)
class WaypointRef:
    """Where a workload's or service's waypoint is: the waypoint Service's namespace and hostname."""

    namespace: str
    hostname: str
    port: int = HBONE_PORT


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One service port as served by one workload (named target ports resolved per workload)."""

    service_port: int
    target_port: int


@dataclass(frozen=True, slots=True)
class Workload:
    """One pod (or other endpoint) that traffic can go to."""

    uid: str
    name: str
    namespace: str
    service_account: str
    node: str
    addresses: tuple[str, ...]
    tunnel_protocol: TunnelProtocol = TunnelProtocol.NONE
    status: HealthStatus = HealthStatus.HEALTHY
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    waypoint: WaypointRef | None = None
    # service key (`ns/hostname`) → the ports this workload serves for it
    services: tuple[tuple[str, tuple[PortMapping, ...]], ...] = ()
    # keys (`ns/name`) of the selector-scoped policies that apply to this workload
    authorization_policies: tuple[str, ...] = ()
    locality: Locality = field(default_factory=Locality)
    workload_name: str = ""
    canonical_name: str = ""
    canonical_revision: str = ""
    capacity: int = 1

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)

    def ports_for(self, service_key: str) -> tuple[PortMapping, ...]:
        for key, ports in self.services:
            if key == service_key:
                return ports
        return ()


@dataclass(frozen=True, slots=True)
class ServicePort:
    """A Service port; `target_port` is 0 when the target is named (`target_port_name`)."""

    port: int
    target_port: int = 0
    target_port_name: str = ""
    name: str = ""
    app_protocol: str = ""


@dataclass(frozen=True, slots=True)
class Service:
    """A Kubernetes Service: hostname, VIPs and ports; its endpoints are the workloads that list it."""

    name: str
    namespace: str
    hostname: str
    vips: tuple[str, ...]
    ports: tuple[ServicePort, ...]
    waypoint: WaypointRef | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.hostname}"


def service_hostname(name: str, namespace: str, cluster_domain: str = "cluster.local") -> str:
    return f"{name}.{namespace}.svc.{cluster_domain}"
