"""Routing plans for ztunnel's outbound and inbound paths: decide, then do (DESIGN §2, §5).

Pure functions of a :class:`~ambit.state.snapshot.Snapshot`; the caller's sockets carry out the plan.
No I/O; randomness is injected (``rng``) so every choice is reproducible in tests.

Outbound (:func:`plan_outbound`, :func:`outbound_candidates`), in ztunnel's order (facts §1.7):

1. the source must be HBONE-enrolled (ztunnel only captures enrolled pods), else refused;
2. ``dst_ip`` is a Service VIP: the port must be one of the service's ports, else refused. A
   service bound to a waypoint goes through :func:`_plan_via_waypoint`, which today refuses (the
   seam for the waypoint issue). Otherwise an endpoint is chosen among ``snapshot.endpoints`` that
   are HEALTHY, have an address and serve the port (see :func:`_target_port`), best locality first
   (same node, then same region and zone, then same region, then the rest; an empty locality field
   never counts as a match), randomly weighted by ``capacity`` within the best rank. An endpoint
   with capacity ≤ 0 is used only when no endpoint with capacity is usable (then uniformly). The
   endpoint is reached over HBONE (``<ip>:15008``, authority ``<ip>:<target port>``, expected
   identity its own) when it is enrolled, else as plain TCP to ``(ip, target port)``. No usable
   endpoint: refused, never passed through to the VIP. Only service-addressed traffic goes to a
   service waypoint; an endpoint's own workload waypoint is not used here, as in ztunnel. (ztunnel
   applies locality only when the Service asks for it, via ``trafficDistribution`` or
   ``internalTrafficPolicy``; ambit's model has no such field yet and always prefers locality,
   FAILOVER-style: a better rank wins, worse ranks are the spill-over.)
3. ``dst_ip`` is a workload address: bound to a workload waypoint → the seam (refused today); else
   HBONE when enrolled, plain TCP otherwise;
4. unknown address inside one of ``cluster_cidrs``: refused (fail closed, DESIGN §5); outside:
   plain TCP passthrough. An unparsable ``dst_ip`` or cluster CIDR refuses.

``exclude`` holds workload uids already tried (retry on connect failure); an excluded endpoint is
never chosen, and an excluded pod-addressed destination is refused. An IPv4-mapped ``dst_ip``
(``::ffff:10.0.0.1``) is treated as the IPv4 address. Of an endpoint's addresses, the first of the
destination's IP family is used (else the first).

Inbound (:func:`plan_inbound` for HBONE on 15008, :func:`plan_inbound_plaintext` for 15006): the
workload is looked up again in the snapshot by uid (its current addresses and policy list; gone →
503); the target IP must be one of its addresses (400 "IP mismatch", as ztunnel); the target port
must be a valid port that is not one of ztunnel's own (400); then L4 authorization over
``snapshot.policies_for(workload)`` (denied → 401 with the reason). A refusal is one value: the
status, the response flag the telemetry records (``DENY`` for a denial) and the reason.

Before that, :func:`inbound_source` says who an HBONE CONNECT is from: the client must be a workload
identity (a node identity never is a client: 401), and the source IP is the TCP peer's address —
``forwarded: for=`` counts only from the destination's own waypoint (a workload presenting the
identity of an endpoint of the waypoint the pod or one of its services is bound to), as ztunnel
does: a waypoint terminates the client's tunnel, so its TCP address is its own and only the header
names the real client. From anyone else the header is ignored, since a client could otherwise claim
any source IP and slip past a ``source_ips`` policy. ``forwarded: host=`` names the service the
client addressed (for telemetry only), if it is one of the pod's. On the source side,
:func:`answer_refusal` says what the destination's answer means: ``503`` tries the next candidate,
``401`` is a denial, anything else a connect failure.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from ambit.authz import Decision, authorize, connection_for
from ambit.model.identity import Identity, IdentityError, NodeIdentity
from ambit.model.workload import (
    HBONE_PORT,
    HealthStatus,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.protocol.authority import format_authority
from ambit.protocol.forwarded import Headers, parse_forwarded
from ambit.state.snapshot import Snapshot

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


# --- addresses ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parse_ip(text: str) -> IPAddress | None:
    try:
        address: IPAddress = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=256)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...] | None:
    try:
        return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)
    except ValueError:
        return None


def _address_for(workload: Workload, version: int) -> str | None:
    """The workload's first address of IP ``version``, else its first parsable address."""
    fallback: str | None = None
    for text in workload.addresses:
        address = _parse_ip(text)
        if address is None:
            continue
        if address.version == version:
            return str(address)
        if fallback is None:
            fallback = str(address)
    return fallback


def _identity(workload: Workload) -> Identity | None:
    try:
        return workload.identity
    except IdentityError:
        return None


# --- outbound -------------------------------------------------------------------------------------


def _plan_via_waypoint(waypoint: WaypointRef, what: str) -> RouteError:
    """THE SEAM for waypoint routing: today every waypoint-bound destination is refused (fail closed).

    The waypoint issue replaces this with: pick a waypoint endpoint, HBONE to it with authority =
    the original ``VIP:port`` (or ``podIP:port``).
    """
    return RouteError(
        f"{what} is bound to waypoint {waypoint.namespace}/{waypoint.hostname}; "
        "waypoint routing arrives with the waypoint issue"
    )


def _target_port(workload: Workload, service: Service, port: ServicePort) -> int | None:
    """The port ``workload`` serves ``port`` of ``service`` on, or None when it does not serve it.

    The workload's own mapping wins (named target ports are resolved per workload); without one, a
    numeric ``target_port``, else the service port itself when no target is named at all.
    """
    for mapping in workload.ports_for(service.key):
        if mapping.service_port == port.port and mapping.target_port > 0:
            return mapping.target_port
    if port.target_port > 0:
        return port.target_port
    if not port.target_port_name:
        return port.port
    return None


_DRAINED = 4  # added to the locality rank of an endpoint with no capacity


def _locality_rank(source: Workload, endpoint: Workload) -> int:
    """0 same node, 1 same region and zone, 2 same region, 3 anything else (empty never matches)."""
    if source.node and source.node == endpoint.node:
        return 0
    src, dst = source.locality, endpoint.locality
    if src.region and src.region == dst.region:
        if src.zone and src.zone == dst.zone:
            return 1
        return 2
    return 3


@dataclass(frozen=True, slots=True)
class _Usable:
    endpoint: Workload
    ip: str
    port: int
    identity: Identity | None  # None only for a non-HBONE endpoint whose identity is invalid
    rank: int


@dataclass(frozen=True, slots=True)
class _ViaService:
    service: Service
    port: ServicePort
    version: int


def _usable(
    snapshot: Snapshot, source: Workload, via: _ViaService, exclude: Collection[str]
) -> list[_Usable]:
    service, port = via.service, via.port
    out: list[_Usable] = []
    for endpoint in snapshot.endpoints(service.key):
        if endpoint.status is not HealthStatus.HEALTHY or endpoint.uid in exclude:
            continue
        ip = _address_for(endpoint, via.version)
        target = _target_port(endpoint, service, port)
        if ip is None or target is None:
            continue
        identity = _identity(endpoint)
        if identity is None and endpoint.tunnel_protocol is TunnelProtocol.HBONE:
            continue  # cannot say what the server must present: never use it
        # capacity <= 0 (drained): only when nothing with capacity is left, whatever its locality
        rank = _locality_rank(source, endpoint) + (_DRAINED if endpoint.capacity <= 0 else 0)
        out.append(_Usable(endpoint, ip, target, identity, rank))
    return out


def _plan_for(usable: _Usable, service: Service | None) -> OutboundPlan:
    if usable.endpoint.tunnel_protocol is TunnelProtocol.HBONE and usable.identity is not None:
        return HbonePlan(
            endpoint=usable.endpoint,
            address=(usable.ip, HBONE_PORT),
            authority=format_authority(usable.ip, usable.port),
            destination_identity=usable.identity,
            service=service,
        )
    return PassthroughPlan(address=(usable.ip, usable.port), service=service, endpoint=usable.endpoint)


def _weight(usable: _Usable) -> int:
    return max(usable.endpoint.capacity, 0)


def _pick(group: Sequence[_Usable], rng: random.Random) -> _Usable:
    """One of ``group`` (non-empty), randomly weighted by capacity; uniform if every weight is 0."""
    total = sum(_weight(u) for u in group)
    if total <= 0:
        return group[rng.randrange(len(group))]
    point = rng.random() * total
    for usable in group:
        point -= _weight(usable)
        if point < 0 and _weight(usable) > 0:
            return usable
    return next(u for u in reversed(group) if _weight(u) > 0)  # float rounding at the very top


def _weighted_order(group: Sequence[_Usable], rng: random.Random) -> list[_Usable]:
    """``group`` in weighted-random order: each next one drawn by capacity from those left.

    Efraimidis–Spirakis: sort by ``u ** (1 / weight)`` for uniform ``u``, which draws the same
    order as repeated weighted picks without replacement, in O(n log n). Weight-0 endpoints come
    after the others, in uniformly random order.
    """
    weighted = [(rng.random() ** (1.0 / _weight(u)), i) for i, u in enumerate(group) if _weight(u) > 0]
    weighted.sort(reverse=True)
    zero = [u for u in group if _weight(u) <= 0]
    rng.shuffle(zero)
    return [group[i] for _key, i in weighted] + zero


def _ranks(usable: Iterable[_Usable]) -> list[list[_Usable]]:
    by_rank: dict[int, list[_Usable]] = {}
    for u in usable:
        by_rank.setdefault(u.rank, []).append(u)
    return [by_rank[rank] for rank in sorted(by_rank)]


def _classify(
    snapshot: Snapshot,
    source: Workload,
    dst_ip: str,
    dst_port: int,
    *,
    cluster_cidrs: Sequence[str],
    exclude: Collection[str],
) -> _ViaService | OutboundPlan | RouteError:
    """Everything but the endpoint choice of a service-addressed destination."""
    if source.tunnel_protocol is not TunnelProtocol.HBONE:
        return RouteError(f"source workload {source.uid} is not enrolled in the mesh (HBONE)")
    address = _parse_ip(dst_ip)
    if address is None:
        return RouteError(f"destination {dst_ip!r} is not an IP address")
    if not 0 < dst_port < 65536:
        return RouteError(f"destination port {dst_port} is out of range")
    ip = str(address)

    service = snapshot.find_service_by_vip(ip)
    if service is not None:
        port = next((p for p in service.ports if p.port == dst_port), None)
        if port is None:
            return RouteError(f"service {service.key} has no port {dst_port}")
        if service.waypoint is not None:
            return _plan_via_waypoint(service.waypoint, f"service {service.key}")
        return _ViaService(service, port, address.version)

    workload = snapshot.find_workload_by_ip(ip)
    if workload is not None:
        if workload.waypoint is not None:
            return _plan_via_waypoint(workload.waypoint, f"workload {workload.uid}")
        if workload.uid in exclude:
            return RouteError(f"workload {workload.uid} at {ip} was already tried")
        if workload.tunnel_protocol is TunnelProtocol.HBONE:
            identity = _identity(workload)
            if identity is None:
                return RouteError(f"workload {workload.uid} has no valid identity")
            return HbonePlan(workload, (ip, HBONE_PORT), format_authority(ip, dst_port), identity, None)
        return PassthroughPlan((ip, dst_port), None, workload)

    networks = _parse_networks(tuple(cluster_cidrs))
    if networks is None:
        return RouteError(f"unknown destination {ip}: cluster CIDRs {list(cluster_cidrs)} do not parse")
    if any(address.version == net.version and address in net for net in networks):
        return RouteError(f"unknown destination inside the cluster: {format_authority(ip, dst_port)}")
    return PassthroughPlan((ip, dst_port), None, None)


def _no_endpoint(via: _ViaService) -> RouteError:
    return RouteError(f"service {via.service.key} has no usable endpoint for port {via.port.port}")


def plan_outbound(
    snapshot: Snapshot,
    source: Workload,
    dst_ip: str,
    dst_port: int,
    *,
    cluster_cidrs: Sequence[str],
    rng: random.Random,
    exclude: Collection[str] = (),
) -> OutboundPlan | RouteError:
    """How ``source``'s connection to ``dst_ip:dst_port`` is carried out, or why it is refused."""
    classified = _classify(snapshot, source, dst_ip, dst_port, cluster_cidrs=cluster_cidrs, exclude=exclude)
    if not isinstance(classified, _ViaService):
        return classified
    usable = _usable(snapshot, source, classified, exclude)
    if not usable:
        return _no_endpoint(classified)
    best = min(u.rank for u in usable)
    return _plan_for(_pick([u for u in usable if u.rank == best], rng), classified.service)


def outbound_candidates(
    snapshot: Snapshot,
    source: Workload,
    dst_ip: str,
    dst_port: int,
    *,
    cluster_cidrs: Sequence[str],
    rng: random.Random,
    exclude: Collection[str] = (),
) -> list[OutboundPlan] | RouteError:
    """Every usable plan, best first (locality rank, then weighted-random order), for retries.

    A pod-addressed or external destination has exactly one; the first candidate is distributed as
    :func:`plan_outbound`'s choice.
    """
    classified = _classify(snapshot, source, dst_ip, dst_port, cluster_cidrs=cluster_cidrs, exclude=exclude)
    if isinstance(classified, RouteError):
        return classified
    if not isinstance(classified, _ViaService):
        return [classified]
    usable = _usable(snapshot, source, classified, exclude)
    if not usable:
        return _no_endpoint(classified)
    return [_plan_for(u, classified.service) for group in _ranks(usable) for u in _weighted_order(group, rng)]


# --- inbound --------------------------------------------------------------------------------------


def waypoint_identities(snapshot: Snapshot, local: Workload) -> frozenset[Identity]:
    """The identities of the endpoints of every waypoint ``local`` (or one of its services) uses."""
    refs = [local.waypoint] if local.waypoint is not None else []
    for key, _ports in local.services:
        service = snapshot.services.get(key)
        if service is not None and service.waypoint is not None:
            refs.append(service.waypoint)
    identities: set[Identity] = set()
    for ref in refs:
        for endpoint in snapshot.endpoints(f"{ref.namespace}/{ref.hostname}"):
            identities.add(endpoint.identity)
    return frozenset(identities)


def source_ip_for(
    peer_address: tuple[str, int] | None,
    forwarded_for: str | None,
    peer: Identity,
    snapshot: Snapshot,
    local: Workload,
) -> str:
    """The client IP authorization sees: ``forwarded for=`` from the pod's waypoint, else the TCP peer."""
    if forwarded_for is not None and peer in waypoint_identities(snapshot, local):
        return forwarded_for
    return peer_address[0] if peer_address is not None else ""


def service_for(snapshot: Snapshot, local: Workload, host: str | None) -> Service | None:
    """The service the client addressed (``forwarded host=``), if it is one of ``local``'s."""
    if host is None:
        return None
    for key, _ports in local.services:
        service = snapshot.services.get(key)
        if service is not None and service.hostname == host:
            return service
    return None


def inbound_source(
    snapshot: Snapshot,
    local: Workload,
    peer: Identity | NodeIdentity | None,
    peer_address: tuple[str, int] | None,
    headers: Headers,
) -> InboundSource | InboundRefusal:
    """Who a CONNECT to ``local`` from ``peer`` (verified) at ``peer_address`` is from; a node
    identity (or none) is refused (401)."""
    if not isinstance(peer, Identity):
        return InboundRefusal.denied(f"peer {peer} is not a workload identity")
    forwarded_for, host = parse_forwarded(headers)
    return InboundSource(
        peer,
        source_ip_for(peer_address, forwarded_for, peer, snapshot, local),
        service_for(snapshot, local, host),
    )


def _inbound(
    snapshot: Snapshot,
    local: Workload,
    target_ip: str | None,
    target_port: int,
    *,
    peer: Identity | None,
    source_ip: str,
) -> InboundPlan | InboundRefusal:
    current = snapshot.workloads.get(local.uid)
    if current is None:
        return InboundRefusal(503, f"workload {local.uid} is not in the current config")
    if target_ip is None:  # plaintext capture: the original destination is the pod itself
        target_ip = _address_for(current, _version_of(source_ip))
        if target_ip is None:
            return InboundRefusal(503, f"workload {current.uid} has no address")
    else:
        address = _parse_ip(target_ip)
        own = {_parse_ip(a) for a in current.addresses} - {None}
        if address is None or address not in own:
            return InboundRefusal(400, f"IP mismatch: {target_ip} is not an address of {current.uid}")
        target_ip = str(address)
    if not 0 < target_port < 65536:
        return InboundRefusal(400, f"target port {target_port} is out of range")
    if target_port in ZTUNNEL_PORTS:
        return InboundRefusal(400, f"target port {target_port} is a ztunnel port")
    decision = authorize(
        connection_for(peer, source_ip, target_ip, target_port), snapshot.policies_for(current)
    )
    if not decision.allowed:
        return InboundRefusal.denied(decision.reason)
    return InboundPlan(current, (target_ip, target_port), decision)


def _version_of(ip: str) -> int:
    address = _parse_ip(ip)
    return 4 if address is None else address.version


def plan_inbound(
    snapshot: Snapshot,
    local: Workload,
    target_ip: str,
    target_port: int,
    *,
    peer: Identity | None,
    source_ip: str,
) -> InboundPlan | InboundRefusal:
    """An HBONE CONNECT to ``target_ip:target_port`` of ``local``, from ``peer`` (verified) at ``source_ip``.

    ``local`` is the workload whose 15008 listener received it; its current value in ``snapshot``
    is what counts.
    """
    return _inbound(snapshot, local, target_ip, target_port, peer=peer, source_ip=source_ip)


def answer_refusal(status: int, reason: str) -> InboundRefusal | None:
    """What a destination's answer ``status`` to our CONNECT means for the source: None for ``503``
    (the endpoint could not reach its app: the next candidate is tried); else the refusal that ends
    the attempts, a denial for ``401`` (``DENY``), a connect failure for any other (``CONNECT``)."""
    if status == 503:
        return None
    if status == 401:
        return InboundRefusal.denied(reason)
    return InboundRefusal(status, reason, FLAG_CONNECT)


def plan_inbound_plaintext(
    snapshot: Snapshot, local: Workload, target_port: int, *, source_ip: str
) -> InboundPlan | InboundRefusal:
    """A plaintext connection captured on 15006 (no peer identity: STRICT's policy refuses it)."""
    return _inbound(snapshot, local, None, target_port, peer=None, source_ip=source_ip)
