"""Outbound planning (15001): which endpoint, over HBONE or plain TCP, or a refusal.

The rules are in :mod:`ambit.routing`'s docstring (outbound, in ztunnel's order).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass

from ambit.model.identity import Identity
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
from ambit.routing.addresses import address_for, identity_of, parse_ip, parse_networks
from ambit.routing.plans import HbonePlan, OutboundPlan, PassthroughPlan, RouteError
from ambit.state.snapshot import Snapshot

# --- outbound -------------------------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class _ViaWaypoint:
    """A destination a waypoint covers: ``what`` (for errors), the original ``authority``, the
    service addressed (None for pod-addressed traffic) and the IP version to reach the waypoint on."""

    waypoint: WaypointRef
    what: str
    authority: str
    service: Service | None
    version: int


def _waypoint_plans(
    snapshot: Snapshot,
    via: _ViaWaypoint,
    rng: random.Random,
    ejected: Callable[[Sequence[str]], Collection[str]],
) -> list[OutboundPlan] | RouteError:
    """Every ready replica of the waypoint, as HBONE plans for the original authority.

    Replicas are balanced uniformly (capacity-weighted random order; no locality preference, so the
    load spreads over every replica); the ones ``ejected`` names go last. No ready replica: refused,
    never sent around the waypoint (fail closed).
    """
    ref = via.waypoint
    key = f"{ref.namespace}/{ref.hostname}"
    usable: list[_Usable] = []
    for endpoint in snapshot.endpoints(key):
        if endpoint.status is not HealthStatus.HEALTHY:
            continue
        ip = address_for(endpoint, via.version)
        identity = identity_of(endpoint)
        if ip is None or identity is None:
            continue
        usable.append(_Usable(endpoint, ip, ref.port, identity, 0))
    if not usable:
        return RouteError(f"{via.what} is bound to waypoint {key}, which has no ready replica (fail closed)")
    ordered = _weighted_order(usable, rng)
    out = set(ejected([u.endpoint.uid for u in ordered]))
    ordered = [u for u in ordered if u.endpoint.uid not in out] + [
        u for u in ordered if u.endpoint.uid in out
    ]
    return [
        HbonePlan(
            endpoint=u.endpoint,
            address=(u.ip, ref.port),
            authority=via.authority,
            destination_identity=u.identity,  # type: ignore[arg-type]  # checked above
            service=via.service,
            waypoint=ref,
        )
        for u in ordered
    ]


def _no_ejections(_uids: Sequence[str]) -> Collection[str]:
    return ()


def _usable(
    snapshot: Snapshot,
    source: Workload,
    via: _ViaService,
    exclude: Collection[str],
    *,
    local_first: bool = True,
) -> list[_Usable]:
    service, port = via.service, via.port
    out: list[_Usable] = []
    for endpoint in snapshot.endpoints(service.key):
        if endpoint.status is not HealthStatus.HEALTHY or endpoint.uid in exclude:
            continue
        ip = address_for(endpoint, via.version)
        target = _target_port(endpoint, service, port)
        if ip is None or target is None:
            continue
        identity = identity_of(endpoint)
        if identity is None and endpoint.tunnel_protocol is TunnelProtocol.HBONE:
            continue  # cannot say what the server must present: never use it
        # capacity <= 0 (drained): only when nothing with capacity is left, whatever its locality
        rank = (_locality_rank(source, endpoint) if local_first else 0) + (
            _DRAINED if endpoint.capacity <= 0 else 0
        )
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
    at_waypoint: bool = False,
) -> _ViaService | _ViaWaypoint | OutboundPlan | RouteError:
    """Everything but the endpoint choice of a service- or waypoint-addressed destination."""
    if source.tunnel_protocol is not TunnelProtocol.HBONE:
        return RouteError(f"source workload {source.uid} is not enrolled in the mesh (HBONE)")
    address = parse_ip(dst_ip)
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
        if service.waypoint is not None and not at_waypoint:
            authority = format_authority(ip, dst_port)
            return _ViaWaypoint(
                service.waypoint, f"service {service.key}", authority, service, address.version
            )
        return _ViaService(service, port, address.version)

    workload = snapshot.find_workload_by_ip(ip)
    if workload is not None:
        if workload.waypoint is not None and not at_waypoint:
            authority = format_authority(ip, dst_port)
            return _ViaWaypoint(
                workload.waypoint, f"workload {workload.uid}", authority, None, address.version
            )
        if workload.uid in exclude:
            return RouteError(f"workload {workload.uid} at {ip} was already tried")
        if workload.tunnel_protocol is TunnelProtocol.HBONE:
            identity = identity_of(workload)
            if identity is None:
                return RouteError(f"workload {workload.uid} has no valid identity")
            return HbonePlan(workload, (ip, HBONE_PORT), format_authority(ip, dst_port), identity, None)
        return PassthroughPlan((ip, dst_port), None, workload)

    networks = parse_networks(tuple(cluster_cidrs))
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
    if isinstance(classified, _ViaWaypoint):
        plans = _waypoint_plans(snapshot, classified, rng, _no_ejections)
        return plans if isinstance(plans, RouteError) else plans[0]
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
    ejected: Callable[[Sequence[str]], Collection[str]] = _no_ejections,
    at_waypoint: bool = False,
) -> list[OutboundPlan] | RouteError:
    """Every usable plan, best first (locality rank, then weighted-random order), for retries.

    A pod-addressed or external destination has exactly one; the first candidate is distributed as
    :func:`plan_outbound`'s choice. A destination a waypoint covers has one plan per ready waypoint
    replica; ``ejected(uids)`` names the replicas to try last (the client's outlier ejection).
    ``at_waypoint``: the caller is the waypoint ``source`` itself, which goes to the destination's
    endpoints (its binding is what brought the traffic here) and balances over all of them, with no
    locality preference (Envoy's default in Istio's waypoints: locality applies only when configured).
    """
    classified = _classify(
        snapshot,
        source,
        dst_ip,
        dst_port,
        cluster_cidrs=cluster_cidrs,
        exclude=exclude,
        at_waypoint=at_waypoint,
    )
    if isinstance(classified, RouteError):
        return classified
    if isinstance(classified, _ViaWaypoint):
        return _waypoint_plans(snapshot, classified, rng, ejected)
    if not isinstance(classified, _ViaService):
        return [classified]
    usable = _usable(snapshot, source, classified, exclude, local_first=not at_waypoint)
    if not usable:
        return _no_endpoint(classified)
    return [_plan_for(u, classified.service) for group in _ranks(usable) for u in _weighted_order(group, rng)]
