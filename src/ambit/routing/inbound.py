"""Inbound admission and planning (15008 HBONE, 15006 plaintext): who the client is, which source IP
counts, and whether the connection is allowed.

The rules are in :mod:`ambit.routing`'s docstring (inbound).
"""

from __future__ import annotations

from ambit.authz import authorize, connection_for
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.workload import Service, WaypointRef, Workload
from ambit.protocol.forwarded import Headers, parse_forwarded
from ambit.routing.addresses import address_for, parse_ip
from ambit.routing.plans import FLAG_CONNECT, ZTUNNEL_PORTS, InboundPlan, InboundRefusal, InboundSource
from ambit.state.snapshot import Snapshot

# --- inbound --------------------------------------------------------------------------------------


def identities_of(snapshot: Snapshot, ref: WaypointRef) -> frozenset[Identity]:
    """The identities of one waypoint's endpoints (none while it has none: then nothing passes)."""
    return frozenset(endpoint.identity for endpoint in snapshot.endpoints(f"{ref.namespace}/{ref.hostname}"))


def waypoint_identities(snapshot: Snapshot, local: Workload) -> frozenset[Identity]:
    """The identities of the endpoints of every waypoint ``local`` (or one of its services) uses."""
    refs = [local.waypoint] if local.waypoint is not None else []
    for key, _ports in local.services:
        service = snapshot.services.get(key)
        if service is not None and service.waypoint is not None:
            refs.append(service.waypoint)
    identities: set[Identity] = set()
    for ref in refs:
        identities |= identities_of(snapshot, ref)
    return frozenset(identities)


def waypoint_bypass(
    snapshot: Snapshot, local: Workload, peer: Identity | None, service: Service | None
) -> InboundRefusal | None:
    """No bypass: traffic a waypoint covers is admitted only from that waypoint (401 otherwise).

    The addressing mode is what the connection says: service-addressed when ``forwarded: host=`` names
    one of the pod's services (``service``), pod-addressed otherwise. Service-addressed traffic to a
    service with a waypoint must come from that waypoint; pod-addressed traffic to a pod with a
    (workload) waypoint must come from that one. Traffic a waypoint does not cover — pod-addressed
    traffic under a service-only waypoint, service-addressed traffic to a service without one — is
    admitted, as in Istio. With no ready waypoint endpoint, covered traffic is refused (fail closed).
    """
    if service is not None:
        ref, mode = service.waypoint, f"service {service.namespace}/{service.name}"
    else:
        ref, mode = local.waypoint, f"pod {local.namespace}/{local.name}"
    if ref is None:
        return None
    allowed = identities_of(snapshot, ref)
    if peer is not None and peer in allowed:
        return None
    waypoint = f"{ref.namespace}/{ref.hostname}"
    if not allowed:
        return InboundRefusal.denied(
            f"traffic to {mode} must go through waypoint {waypoint}, which has no endpoint"
        )
    return InboundRefusal.denied(
        f"traffic to {mode} must go through waypoint {waypoint}; {peer or 'a plaintext client'} is not it"
    )


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
    service = service_for(snapshot, local, host)
    bypass = waypoint_bypass(snapshot, local, peer, service)
    if bypass is not None:
        return bypass
    return InboundSource(peer, source_ip_for(peer_address, forwarded_for, peer, snapshot, local), service)


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
        target_ip = address_for(current, _version_of(source_ip))
        if target_ip is None:
            return InboundRefusal(503, f"workload {current.uid} has no address")
    else:
        address = parse_ip(target_ip)
        own = {parse_ip(a) for a in current.addresses} - {None}
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
    address = parse_ip(ip)
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
    """A plaintext connection captured on 15006 (no peer identity: STRICT's policy refuses it, and so
    does a pod's workload waypoint: plaintext pod-addressed traffic did not come through it)."""
    current = snapshot.workloads.get(local.uid, local)
    bypass = waypoint_bypass(snapshot, current, None, None)
    if bypass is not None:
        return bypass
    return _inbound(snapshot, local, None, target_port, peer=None, source_ip=source_ip)
