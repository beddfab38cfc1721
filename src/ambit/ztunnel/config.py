"""ztunnel's configuration: one frozen value, built once and handed to every part.

Defaults are Istio's (facts §1.1, §1.2, §1.7, §1.10): ports 15001/15006/15008/15000/15020/15021, the
packet mark ``0x539`` (1337) that the capture rules skip, a 10 s upstream connect timeout, 5 s to wait
for the first config before in-cluster traffic is refused, and a 25 s drain deadline (grace 30 s - 5 s).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

from ambit.model.identity import DEFAULT_TRUST_DOMAIN, check_trust_domain
from ambit.net.hbone import Timeouts

DEFAULT_CLUSTER_CIDRS = ("10.244.0.0/16", "10.96.0.0/16")
PACKET_MARK = 0x539


@dataclass(frozen=True, slots=True)
class ZtunnelConfig:
    """Everything a ztunnel needs to know that does not come from xDS."""

    node: str
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    # The cluster's own address ranges (pods, services): unknown destinations inside them are refused,
    # and traffic to them is held until the first config has synced (DESIGN §5).
    cluster_cidrs: tuple[str, ...] = DEFAULT_CLUSTER_CIDRS
    outbound_port: int = 15001
    inbound_plaintext_port: int = 15006
    hbone_port: int = 15008
    admin_port: int = 15000
    metrics_port: int = 15020
    readiness_port: int = 15021
    # SO_MARK on every socket ztunnel opens, so the pod's capture rules let it through.
    mark: int = PACKET_MARK
    connect_timeout: float = 10.0
    # How long a connection waits for the first config (and its own pod's record) before it is refused.
    sync_timeout: float = 5.0
    drain_deadline: float = 25.0
    # Re-run L4 authorization over live inbound connections on every config change (facts §1.6).
    policy_recheck: bool = True
    # Endpoints tried for one outbound connection (connect or tunnel failure → the next candidate).
    outbound_attempts: int = 3
    # Deliver inbound traffic to the app from the client's own IP (IP_TRANSPARENT), as ztunnel does.
    spoof_inbound_source: bool = True
    hbone_timeouts: Timeouts = field(default_factory=Timeouts)
    # Server side of HBONE: no idle timeout (the client pool owns idleness), as HboneServer's default.
    hbone_server_timeouts: Timeouts = field(default_factory=lambda: Timeouts(idle=None))

    def __post_init__(self) -> None:
        if not self.node:
            raise ValueError("node name is empty")
        check_trust_domain(self.trust_domain)
        for cidr in self.cluster_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise ValueError(f"cluster CIDR {cidr!r} does not parse: {exc}") from exc
        ports = (
            self.outbound_port,
            self.inbound_plaintext_port,
            self.hbone_port,
            self.admin_port,
            self.metrics_port,
            self.readiness_port,
        )
        for port in ports:
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is out of range")
        if not 0 <= self.mark < 2**32:
            raise ValueError(f"mark {self.mark:#x} is not a 32-bit value")
        for name in ("connect_timeout", "sync_timeout", "drain_deadline"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.outbound_attempts < 1:
            raise ValueError("outbound_attempts must be at least 1")

    def in_cluster(self, ip: str) -> bool:
        """Whether ``ip`` is inside one of the cluster CIDRs (an IPv4-mapped IPv6 address as IPv4)."""
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return True  # cannot tell: treat as in-cluster (fail closed)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in _networks(self.cluster_cidrs) if net.version == address.version)


@lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
