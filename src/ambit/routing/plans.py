"""What a routing decision returns: outbound and inbound plans, refusals, response flags.

Pure values; the planners in :mod:`ambit.routing.outbound` and :mod:`ambit.routing.inbound` build them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ambit.authz import Decision
from ambit.model.identity import Identity
from ambit.model.workload import (
    Service,
    WaypointRef,
    Workload,
)

# ztunnel's own ports: never a valid inbound target (facts §1.1).
ZTUNNEL_PORTS = frozenset({15000, 15001, 15006, 15008, 15020, 15021, 15053})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Response flags (Istio's ztunnel set, plus "-" for none): why a connection failed, as the metrics
# and the access log record it.
FLAG_NONE = "-"
FLAG_DENY = "DENY"
FLAG_CONNECT = "CONNECT"
FLAG_IDENTITY = "IDENTITY_ERROR"
FLAG_TLS = "TLS_FAILURE"


# --- plans ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HbonePlan:
    """Tunnel to a mesh destination."""

    endpoint: Workload
    address: tuple[str, int]  # (endpoint IP, 15008)
    authority: str  # "<endpoint ip>:<target port>", IPv6 in brackets
    destination_identity: Identity  # what the server must present (endpoint.identity)
    service: Service | None
    # set when the tunnel goes to a waypoint replica (``endpoint``) for the original ``authority``
    waypoint: WaypointRef | None = None


@dataclass(frozen=True, slots=True)
class PassthroughPlan:
    """Plain TCP."""

    address: tuple[str, int]
    service: Service | None
    endpoint: Workload | None


@dataclass(frozen=True, slots=True)
class RouteError:
    """The connection is refused; ``reason`` says why."""

    reason: str


OutboundPlan = HbonePlan | PassthroughPlan


@dataclass(frozen=True, slots=True)
class InboundPlan:
    workload: Workload  # the local destination workload
    upstream: tuple[str, int]  # where to connect the app (workload IP, port)
    decision: Decision


@dataclass(frozen=True, slots=True)
class InboundRefusal:
    """An inbound connection is refused: the status answered, why, and the response flag recorded."""

    status: int  # 400 malformed / wrong target, 401 denied, 503 unknown or unreachable
    reason: str
    flag: str = FLAG_NONE  # FLAG_DENY with 401; FLAG_CONNECT when the app could not be reached

    @classmethod
    def denied(cls, reason: str) -> InboundRefusal:
        """Refused by policy (or the client's identity): 401, ``DENY``."""
        return cls(401, reason, FLAG_DENY)


@dataclass(frozen=True, slots=True)
class InboundSource:
    """Who an HBONE CONNECT is from, as authorization and the telemetry see it."""

    peer: Identity  # the verified client identity (a workload's)
    ip: str  # the source IP authorization sees and the app is connected from
    service: Service | None  # the service the client addressed (``forwarded host=``), if one of the pod's
