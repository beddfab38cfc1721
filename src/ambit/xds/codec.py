"""Wire ↔ model: the one place where protobuf messages become ambit values and back.

One encoder and one checked decoder per wire message, field by field. This module holds the Address
(Workload | Service), Authorization (ztunnel's L4 policies) and L7Authorization (waypoints' policies)
types, the dispatch by resource name and type URL, and the delta discovery request/response envelopes
(to and from `ambit.protocol.xds` dataclasses). The waypoint-only types have their own modules:
HttpRoute (``rt/``) in :mod:`ambit.xds.codec_routes`, TrafficPolicy (``tp/``) in
:mod:`ambit.xds.codec_traffic`, RateLimitPolicy (``rl/``) in :mod:`ambit.xds.codec_rate_limit`; the checked
primitives they all share are :mod:`ambit.xds.codec_fields`.
Every proxy subscribes to every type; a ztunnel holds the waypoint-only types without reading them.

Decoding treats the wire as untrusted: every field a proxy acts on is checked (IP addresses of 4 or
16 bytes, ports in range, known enum values, valid SPIFFE segments for namespace, service account and
trust domain, an L7 target of a known kind, a header match with a name; the resource name agreeing
with the value) and anything wrong raises :class:`XdsRejected` naming the resource and the reason, so
the client can NACK it and keep its last good version. Encoding is lenient on strings (the client is
the gate) but raises :class:`XdsEncodeError` for values that have no wire form (an address that is not
an IP).

The round trip model → wire → model is exact for canonical models: IPs in their ``ipaddress`` text
form, CIDRs written ``<ip>/<length>``, waypoint ports and capacities as given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from google.protobuf import any_pb2, message  # type: ignore[import-untyped]  # no types-protobuf

from ambit.model.identity import DEFAULT_TRUST_DOMAIN, IdentityError, check_trust_domain
from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    Authorization,
    Clause,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    Match,
    MatchKind,
    PolicyTarget,
    Rule,
    Scope,
    StringMatch,
)
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import (
    HBONE_PORT,
    HealthStatus,
    Locality,
    PortMapping,
    Service,
    ServicePort,
    TunnelProtocol,
    WaypointRef,
    Workload,
)
from ambit.protocol.xds import DeltaRequest, DeltaResponse, ErrorDetail, ResourceRef
from ambit.state.snapshot import (
    L7_POLICY_PREFIX,
    POLICY_PREFIX,
    RATE_LIMIT_PREFIX,
    ROUTE_PREFIX,
    SERVICE_PREFIX,
    TRAFFIC_POLICY_PREFIX,
    WORKLOAD_PREFIX,
    Resource,
    resource_name,
)
from ambit.xds.codec_fields import (
    CodecError,
    XdsEncodeError,
    XdsRejected,
    checked_port,
    encode_port,
    enum_value,
    key_of,
    required,
    segment,
)
from ambit.xds.codec_rate_limit import rate_limit_from_pb, rate_limit_to_pb
from ambit.xds.codec_routes import route_from_pb, route_to_pb
from ambit.xds.codec_traffic import traffic_policy_from_pb, traffic_policy_to_pb
from ambit.xds.pb.discovery.v1 import discovery_pb2
from ambit.xds.pb.ratelimit.v1 import rate_limit_pb2
from ambit.xds.pb.route.v1 import route_pb2
from ambit.xds.pb.security.v1 import authorization_pb2, l7_authorization_pb2
from ambit.xds.pb.traffic.v1 import traffic_policy_pb2
from ambit.xds.pb.workload.v1 import workload_pb2

TYPE_URL_PREFIX = "type.googleapis.com/"
ADDRESS_TYPE_URL = "type.googleapis.com/ambit.workload.v1.Address"
AUTHORIZATION_TYPE_URL = "type.googleapis.com/ambit.security.v1.Authorization"
L7_AUTHORIZATION_TYPE_URL = "type.googleapis.com/ambit.security.v1.L7Authorization"
ROUTE_TYPE_URL = "type.googleapis.com/ambit.route.v1.HttpRoute"
TRAFFIC_POLICY_TYPE_URL = "type.googleapis.com/ambit.traffic.v1.TrafficPolicy"
RATE_LIMIT_TYPE_URL = "type.googleapis.com/ambit.ratelimit.v1.RateLimitPolicy"
__all__ = [  # the codec's API, including what it re-exports from its parts
    "CodecError",
    "XdsEncodeError",
    "XdsRejected",
    "rate_limit_from_pb",
    "rate_limit_to_pb",
    "route_from_pb",
    "route_to_pb",
    "traffic_policy_from_pb",
    "traffic_policy_to_pb",
]
TYPE_URLS = (
    ADDRESS_TYPE_URL,
    AUTHORIZATION_TYPE_URL,
    L7_AUTHORIZATION_TYPE_URL,
    ROUTE_TYPE_URL,
    TRAFFIC_POLICY_TYPE_URL,
    RATE_LIMIT_TYPE_URL,
)
_REJECTED_RESOURCES_URL = "type.googleapis.com/ambit.discovery.v1.RejectedResources"


def type_url_for_name(name: str) -> str | None:
    """The type a resource name belongs to: Address for ``wl/`` and ``svc/``, Authorization for ``ap/``,
    L7Authorization for ``l7/``, HttpRoute for ``rt/``, TrafficPolicy for ``tp/``, RateLimitPolicy for
    ``rl/``."""
    if name.startswith((WORKLOAD_PREFIX, SERVICE_PREFIX)):
        return ADDRESS_TYPE_URL
    if name.startswith(POLICY_PREFIX):
        return AUTHORIZATION_TYPE_URL
    if name.startswith(L7_POLICY_PREFIX):
        return L7_AUTHORIZATION_TYPE_URL
    if name.startswith(ROUTE_PREFIX):
        return ROUTE_TYPE_URL
    if name.startswith(TRAFFIC_POLICY_PREFIX):
        return TRAFFIC_POLICY_TYPE_URL
    if name.startswith(RATE_LIMIT_PREFIX):
        return RATE_LIMIT_TYPE_URL
    return None


def type_url_for(value: Resource) -> str:
    if isinstance(value, Authorization):
        return AUTHORIZATION_TYPE_URL
    if isinstance(value, L7Authorization):
        return L7_AUTHORIZATION_TYPE_URL
    if isinstance(value, HttpRoute):
        return ROUTE_TYPE_URL
    if isinstance(value, TrafficPolicy):
        return TRAFFIC_POLICY_TYPE_URL
    if isinstance(value, RateLimitPolicy):
        return RATE_LIMIT_TYPE_URL
    return ADDRESS_TYPE_URL


# -- encoding: model -> wire ----------------------------------------------------------------------


def _ip_bytes(name: str, text: str) -> bytes:
    try:
        return ipaddress.ip_address(text).packed
    except ValueError:
        raise XdsEncodeError(name, f"{text!r} is not an IP address") from None


def _cidr(name: str, text: str) -> authorization_pb2.Address:
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise XdsEncodeError(name, f"{text!r} is not an IP address or CIDR") from None
    return authorization_pb2.Address(address=interface.ip.packed, length=interface.network.prefixlen)


def _waypoint_to_pb(name: str, ref: WaypointRef) -> workload_pb2.GatewayAddress:
    return workload_pb2.GatewayAddress(
        hostname=workload_pb2.NamespacedHostname(namespace=ref.namespace, hostname=ref.hostname),
        hbone_mtls_port=encode_port(name, ref.port, "waypoint port"),
    )


_TUNNEL_TO_PB = {TunnelProtocol.NONE: workload_pb2.NONE, TunnelProtocol.HBONE: workload_pb2.HBONE}
_TUNNEL_FROM_PB: dict[int, TunnelProtocol] = {v: k for k, v in _TUNNEL_TO_PB.items()}
_STATUS_TO_PB = {HealthStatus.HEALTHY: workload_pb2.HEALTHY, HealthStatus.UNHEALTHY: workload_pb2.UNHEALTHY}
_STATUS_FROM_PB: dict[int, HealthStatus] = {v: k for k, v in _STATUS_TO_PB.items()}
_SCOPE_TO_PB = {
    Scope.GLOBAL: authorization_pb2.GLOBAL,
    Scope.NAMESPACE: authorization_pb2.NAMESPACE,
    Scope.WORKLOAD_SELECTOR: authorization_pb2.WORKLOAD_SELECTOR,
}
_SCOPE_FROM_PB: dict[int, Scope] = {v: k for k, v in _SCOPE_TO_PB.items()}
_ACTION_TO_PB = {Action.ALLOW: authorization_pb2.ALLOW, Action.DENY: authorization_pb2.DENY}
_ACTION_FROM_PB: dict[int, Action] = {v: k for k, v in _ACTION_TO_PB.items()}
_TARGET_TO_PB = {GATEWAY_TARGET: l7_authorization_pb2.GATEWAY, SERVICE_TARGET: l7_authorization_pb2.SERVICE}
_TARGET_FROM_PB: dict[int, str] = {v: k for k, v in _TARGET_TO_PB.items()}


def workload_to_pb(workload: Workload) -> workload_pb2.Workload:
    name = resource_name(workload)
    pb = workload_pb2.Workload(
        uid=workload.uid,
        name=workload.name,
        namespace=workload.namespace,
        addresses=[_ip_bytes(name, address) for address in workload.addresses],
        tunnel_protocol=_TUNNEL_TO_PB[workload.tunnel_protocol],
        trust_domain="" if workload.trust_domain == DEFAULT_TRUST_DOMAIN else workload.trust_domain,
        service_account=workload.service_account,
        node=workload.node,
        canonical_name=workload.canonical_name,
        canonical_revision=workload.canonical_revision,
        workload_name=workload.workload_name,
        authorization_policies=list(workload.authorization_policies),
        status=_STATUS_TO_PB[workload.status],
        services=[
            workload_pb2.WorkloadService(
                service_key=key,
                ports=workload_pb2.PortList(
                    ports=[
                        workload_pb2.Port(
                            service_port=encode_port(name, p.service_port, "service port"),
                            target_port=encode_port(name, p.target_port, "target port"),
                        )
                        for p in ports
                    ]
                ),
            )
            for key, ports in workload.services
        ],
    )
    if workload.waypoint is not None:
        pb.waypoint.CopyFrom(_waypoint_to_pb(name, workload.waypoint))
    if workload.locality != Locality():
        pb.locality.CopyFrom(
            workload_pb2.Locality(
                region=workload.locality.region,
                zone=workload.locality.zone,
                subzone=workload.locality.subzone,
            )
        )
    if workload.capacity != 1:
        if not 0 <= workload.capacity < 2**32:
            raise XdsEncodeError(name, f"capacity {workload.capacity} is out of range")
        pb.capacity.value = workload.capacity
    return pb


def service_to_pb(service: Service) -> workload_pb2.Service:
    name = resource_name(service)
    pb = workload_pb2.Service(
        name=service.name,
        namespace=service.namespace,
        hostname=service.hostname,
        vips=[_ip_bytes(name, vip) for vip in service.vips],
        ports=[
            workload_pb2.ServicePort(
                service_port=encode_port(name, p.port, "service port"),
                target_port=encode_port(name, p.target_port, "target port"),
                app_protocol=p.app_protocol,
                name=p.name,
                target_port_name=p.target_port_name,
            )
            for p in service.ports
        ],
    )
    if service.waypoint is not None:
        pb.waypoint.CopyFrom(_waypoint_to_pb(name, service.waypoint))
    return pb


def _string_match_to_pb(match: StringMatch) -> authorization_pb2.StringMatch:
    if match.kind is MatchKind.EXACT:
        return authorization_pb2.StringMatch(exact=match.value)
    if match.kind is MatchKind.PREFIX:
        return authorization_pb2.StringMatch(prefix=match.value)
    if match.kind is MatchKind.SUFFIX:
        return authorization_pb2.StringMatch(suffix=match.value)
    return authorization_pb2.StringMatch(presence=authorization_pb2.Presence())


def _match_to_pb(name: str, match: Match) -> authorization_pb2.Match:
    return authorization_pb2.Match(
        namespaces=[_string_match_to_pb(m) for m in match.namespaces],
        not_namespaces=[_string_match_to_pb(m) for m in match.not_namespaces],
        principals=[_string_match_to_pb(m) for m in match.principals],
        not_principals=[_string_match_to_pb(m) for m in match.not_principals],
        source_ips=[_cidr(name, c) for c in match.source_ips],
        not_source_ips=[_cidr(name, c) for c in match.not_source_ips],
        destination_ips=[_cidr(name, c) for c in match.destination_ips],
        not_destination_ips=[_cidr(name, c) for c in match.not_destination_ips],
        destination_ports=[encode_port(name, p, "destination port") for p in match.destination_ports],
        not_destination_ports=[encode_port(name, p, "destination port") for p in match.not_destination_ports],
    )


def authorization_to_pb(policy: Authorization) -> authorization_pb2.Authorization:
    name = resource_name(policy)
    return authorization_pb2.Authorization(
        name=policy.name,
        namespace=policy.namespace,
        scope=_SCOPE_TO_PB[policy.scope],
        action=_ACTION_TO_PB[policy.action],
        rules=[
            authorization_pb2.Rule(
                clauses=[
                    authorization_pb2.Clause(matches=[_match_to_pb(name, m) for m in clause.matches])
                    for clause in rule.clauses
                ]
            )
            for rule in policy.rules
        ],
        dry_run=policy.dry_run,
    )


def _l7_match_to_pb(name: str, match: L7Match) -> l7_authorization_pb2.L7Match:
    def strings(items: tuple[StringMatch, ...]) -> list[authorization_pb2.StringMatch]:
        return [_string_match_to_pb(m) for m in items]

    def headers(items: tuple[HeaderMatch, ...]) -> list[l7_authorization_pb2.HeaderMatch]:
        return [l7_authorization_pb2.HeaderMatch(name=h.name, values=strings(h.values)) for h in items]

    return l7_authorization_pb2.L7Match(
        principals=strings(match.principals),
        not_principals=strings(match.not_principals),
        namespaces=strings(match.namespaces),
        not_namespaces=strings(match.not_namespaces),
        source_ips=[_cidr(name, c) for c in match.source_ips],
        not_source_ips=[_cidr(name, c) for c in match.not_source_ips],
        hosts=strings(match.hosts),
        not_hosts=strings(match.not_hosts),
        methods=strings(match.methods),
        not_methods=strings(match.not_methods),
        paths=strings(match.paths),
        not_paths=strings(match.not_paths),
        destination_ports=[encode_port(name, p, "destination port") for p in match.destination_ports],
        not_destination_ports=[encode_port(name, p, "destination port") for p in match.not_destination_ports],
        headers=headers(match.headers),
        not_headers=headers(match.not_headers),
    )


def l7_authorization_to_pb(policy: L7Authorization) -> l7_authorization_pb2.L7Authorization:
    name = resource_name(policy)
    return l7_authorization_pb2.L7Authorization(
        name=policy.name,
        namespace=policy.namespace,
        action=_ACTION_TO_PB[policy.action],
        targets=[
            l7_authorization_pb2.PolicyTarget(kind=_TARGET_TO_PB[t.kind], namespace=t.namespace, name=t.name)
            for t in policy.targets
        ],
        rules=[
            l7_authorization_pb2.L7Rule(
                clauses=[
                    l7_authorization_pb2.L7Clause(matches=[_l7_match_to_pb(name, m) for m in clause.matches])
                    for clause in rule.clauses
                ]
            )
            for rule in policy.rules
        ],
        dry_run=policy.dry_run,
    )


def resource_to_any(value: Resource) -> any_pb2.Any:
    """The value packed as it travels in ``Resource.resource``: an Address, an Authorization, an
    L7Authorization, an HttpRoute, a TrafficPolicy or a RateLimitPolicy."""
    packed = any_pb2.Any()
    if isinstance(value, Workload):
        packed.Pack(workload_pb2.Address(workload=workload_to_pb(value)))
    elif isinstance(value, Service):
        packed.Pack(workload_pb2.Address(service=service_to_pb(value)))
    elif isinstance(value, Authorization):
        packed.Pack(authorization_to_pb(value))
    elif isinstance(value, L7Authorization):
        packed.Pack(l7_authorization_to_pb(value))
    elif isinstance(value, HttpRoute):
        packed.Pack(route_to_pb(value))
    elif isinstance(value, TrafficPolicy):
        packed.Pack(traffic_policy_to_pb(value))
    elif isinstance(value, RateLimitPolicy):
        packed.Pack(rate_limit_to_pb(value))
    else:
        raise TypeError(f"not a mesh resource: {type(value).__name__}")
    return packed


def encode_resource(name: str, version: str, value: Resource) -> discovery_pb2.Resource:
    """A discovery ``Resource`` for ``value``; the name must be the value's resource name."""
    expected = resource_name(value)
    if name != expected:
        raise XdsEncodeError(name, f"holds a value named {expected!r}")
    return discovery_pb2.Resource(name=name, version=version, resource=resource_to_any(value))


def deterministic_bytes(value: Resource) -> bytes:
    """Canonical wire bytes of a value (for content-derived versions that agree across replicas)."""
    wire: bytes = resource_to_any(value).SerializeToString(deterministic=True)
    return wire


# -- decoding: wire -> model ----------------------------------------------------------------------


def _ip_text(name: str, raw: bytes, what: str) -> str:
    if len(raw) not in (4, 16):
        raise XdsRejected(name, f"{what} has {len(raw)} bytes; expected 4 (IPv4) or 16 (IPv6)")
    return str(ipaddress.ip_address(raw))


def _cidr_text(name: str, pb: authorization_pb2.Address) -> str:
    ip = _ip_text(name, pb.address, "CIDR address")
    bits = 32 if len(pb.address) == 4 else 128
    if pb.length > bits:
        raise XdsRejected(name, f"CIDR {ip}/{pb.length} has a prefix longer than {bits} bits")
    return f"{ip}/{pb.length}"


def _waypoint_from_pb(name: str, pb: workload_pb2.GatewayAddress) -> WaypointRef:
    if not pb.HasField("hostname"):
        raise XdsRejected(name, "waypoint has no hostname")
    port = checked_port(name, pb.hbone_mtls_port, "waypoint port", allow_zero=True)
    return WaypointRef(
        namespace=segment(name, "waypoint namespace", pb.hostname.namespace),
        hostname=required(name, "waypoint hostname", pb.hostname.hostname),
        port=port or HBONE_PORT,
    )


def workload_from_pb(name: str, pb: workload_pb2.Workload) -> Workload:
    try:
        trust_domain = check_trust_domain(pb.trust_domain or DEFAULT_TRUST_DOMAIN)
    except IdentityError as exc:
        raise XdsRejected(name, str(exc)) from None
    services: list[tuple[str, tuple[PortMapping, ...]]] = []
    seen: set[str] = set()
    for entry in pb.services:
        key = key_of(name, "service key", entry.service_key)
        if key in seen:
            raise XdsRejected(name, f"service {key} is listed twice")
        seen.add(key)
        ports = tuple(
            PortMapping(
                service_port=checked_port(name, p.service_port, "service port", allow_zero=False),
                target_port=checked_port(name, p.target_port, "target port", allow_zero=True),
            )
            for p in entry.ports.ports
        )
        services.append((key, ports))
    tunnel = enum_value(name, _TUNNEL_FROM_PB, pb.tunnel_protocol, "tunnel protocol")
    status = enum_value(name, _STATUS_FROM_PB, pb.status, "workload status")
    return Workload(
        uid=required(name, "uid", pb.uid),
        name=required(name, "name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        service_account=segment(name, "service account", pb.service_account),
        node=pb.node,
        addresses=tuple(_ip_text(name, raw, f"address {i}") for i, raw in enumerate(pb.addresses)),
        tunnel_protocol=tunnel,
        status=status,
        trust_domain=trust_domain,
        waypoint=_waypoint_from_pb(name, pb.waypoint) if pb.HasField("waypoint") else None,
        services=tuple(services),
        authorization_policies=tuple(
            key_of(name, "authorization policy", key) for key in pb.authorization_policies
        ),
        locality=Locality(pb.locality.region, pb.locality.zone, pb.locality.subzone),
        workload_name=pb.workload_name,
        canonical_name=pb.canonical_name,
        canonical_revision=pb.canonical_revision,
        capacity=pb.capacity.value if pb.HasField("capacity") else 1,
    )


def service_from_pb(name: str, pb: workload_pb2.Service) -> Service:
    return Service(
        name=segment(name, "service name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        hostname=required(name, "hostname", pb.hostname),
        vips=tuple(_ip_text(name, raw, f"VIP {i}") for i, raw in enumerate(pb.vips)),
        ports=tuple(
            ServicePort(
                port=checked_port(name, p.service_port, "service port", allow_zero=False),
                target_port=checked_port(name, p.target_port, "target port", allow_zero=True),
                target_port_name=p.target_port_name,
                name=p.name,
                app_protocol=p.app_protocol,
            )
            for p in pb.ports
        ),
        waypoint=_waypoint_from_pb(name, pb.waypoint) if pb.HasField("waypoint") else None,
    )


def _string_match_from_pb(name: str, pb: authorization_pb2.StringMatch) -> StringMatch:
    kind = pb.WhichOneof("match_type")
    if kind == "exact":
        return StringMatch(MatchKind.EXACT, pb.exact)
    if kind == "prefix":
        return StringMatch(MatchKind.PREFIX, pb.prefix)
    if kind == "suffix":
        return StringMatch(MatchKind.SUFFIX, pb.suffix)
    if kind == "presence":
        return StringMatch(MatchKind.PRESENCE)
    raise XdsRejected(name, "a string match has no match type")


def _match_from_pb(name: str, pb: authorization_pb2.Match) -> Match:
    def strings(items: list[authorization_pb2.StringMatch]) -> tuple[StringMatch, ...]:
        return tuple(_string_match_from_pb(name, m) for m in items)

    def cidrs(items: list[authorization_pb2.Address]) -> tuple[str, ...]:
        return tuple(_cidr_text(name, a) for a in items)

    def ports(items: list[int]) -> tuple[int, ...]:
        return tuple(checked_port(name, p, "destination port", allow_zero=False) for p in items)

    return Match(
        namespaces=strings(list(pb.namespaces)),
        not_namespaces=strings(list(pb.not_namespaces)),
        principals=strings(list(pb.principals)),
        not_principals=strings(list(pb.not_principals)),
        source_ips=cidrs(list(pb.source_ips)),
        not_source_ips=cidrs(list(pb.not_source_ips)),
        destination_ips=cidrs(list(pb.destination_ips)),
        not_destination_ips=cidrs(list(pb.not_destination_ips)),
        destination_ports=ports(list(pb.destination_ports)),
        not_destination_ports=ports(list(pb.not_destination_ports)),
    )


def authorization_from_pb(name: str, pb: authorization_pb2.Authorization) -> Authorization:
    scope = enum_value(name, _SCOPE_FROM_PB, pb.scope, "policy scope")
    action = enum_value(name, _ACTION_FROM_PB, pb.action, "policy action")
    return Authorization(
        name=segment(name, "policy name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        scope=scope,
        action=action,
        rules=tuple(
            Rule(
                clauses=tuple(
                    Clause(matches=tuple(_match_from_pb(name, m) for m in clause.matches))
                    for clause in rule.clauses
                )
            )
            for rule in pb.rules
        ),
        dry_run=pb.dry_run,
    )


def _header_match_from_pb(name: str, pb: l7_authorization_pb2.HeaderMatch) -> HeaderMatch:
    return HeaderMatch(
        name=required(name, "header match name", pb.name),
        values=tuple(_string_match_from_pb(name, m) for m in pb.values),
    )


def _l7_match_from_pb(name: str, pb: l7_authorization_pb2.L7Match) -> L7Match:
    def strings(items: list[authorization_pb2.StringMatch]) -> tuple[StringMatch, ...]:
        return tuple(_string_match_from_pb(name, m) for m in items)

    def cidrs(items: list[authorization_pb2.Address]) -> tuple[str, ...]:
        return tuple(_cidr_text(name, a) for a in items)

    def ports(items: list[int]) -> tuple[int, ...]:
        return tuple(checked_port(name, p, "destination port", allow_zero=False) for p in items)

    def headers(items: list[l7_authorization_pb2.HeaderMatch]) -> tuple[HeaderMatch, ...]:
        return tuple(_header_match_from_pb(name, h) for h in items)

    return L7Match(
        principals=strings(list(pb.principals)),
        not_principals=strings(list(pb.not_principals)),
        namespaces=strings(list(pb.namespaces)),
        not_namespaces=strings(list(pb.not_namespaces)),
        source_ips=cidrs(list(pb.source_ips)),
        not_source_ips=cidrs(list(pb.not_source_ips)),
        hosts=strings(list(pb.hosts)),
        not_hosts=strings(list(pb.not_hosts)),
        methods=strings(list(pb.methods)),
        not_methods=strings(list(pb.not_methods)),
        paths=strings(list(pb.paths)),
        not_paths=strings(list(pb.not_paths)),
        destination_ports=ports(list(pb.destination_ports)),
        not_destination_ports=ports(list(pb.not_destination_ports)),
        headers=headers(list(pb.headers)),
        not_headers=headers(list(pb.not_headers)),
    )


def _target_from_pb(name: str, pb: l7_authorization_pb2.PolicyTarget) -> PolicyTarget:
    return PolicyTarget(
        kind=enum_value(name, _TARGET_FROM_PB, pb.kind, "policy target kind"),
        namespace=segment(name, "target namespace", pb.namespace),
        name=required(name, "target name", pb.name),
    )


def l7_authorization_from_pb(name: str, pb: l7_authorization_pb2.L7Authorization) -> L7Authorization:
    action = enum_value(name, _ACTION_FROM_PB, pb.action, "policy action")
    return L7Authorization(
        name=segment(name, "policy name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        action=action,
        targets=tuple(_target_from_pb(name, t) for t in pb.targets),
        rules=tuple(
            L7Rule(
                clauses=tuple(
                    L7Clause(matches=tuple(_l7_match_from_pb(name, m) for m in clause.matches))
                    for clause in rule.clauses
                )
            )
            for rule in pb.rules
        ),
        dry_run=pb.dry_run,
    )


def _unpack(name: str, packed: any_pb2.Any, target: message.Message) -> None:
    expected = TYPE_URL_PREFIX + target.DESCRIPTOR.full_name
    if packed.type_url != expected:
        raise XdsRejected(name, f"payload is {packed.type_url or 'empty'}, expected {expected}")
    try:
        target.ParseFromString(packed.value)
    except message.DecodeError as exc:
        raise XdsRejected(name, f"payload does not parse: {exc}") from None


def resource_from_any(name: str, packed: any_pb2.Any) -> Resource:
    """Decode one packed resource and check it is the value ``name`` names; raise XdsRejected."""
    value: Resource
    if name.startswith(POLICY_PREFIX):
        policy = authorization_pb2.Authorization()
        _unpack(name, packed, policy)
        value = authorization_from_pb(name, policy)
    elif name.startswith(L7_POLICY_PREFIX):
        l7_policy = l7_authorization_pb2.L7Authorization()
        _unpack(name, packed, l7_policy)
        value = l7_authorization_from_pb(name, l7_policy)
    elif name.startswith(ROUTE_PREFIX):
        route = route_pb2.HttpRoute()
        _unpack(name, packed, route)
        value = route_from_pb(name, route)
    elif name.startswith(TRAFFIC_POLICY_PREFIX):
        traffic = traffic_policy_pb2.TrafficPolicy()
        _unpack(name, packed, traffic)
        value = traffic_policy_from_pb(name, traffic)
    elif name.startswith(RATE_LIMIT_PREFIX):
        rate_limit = rate_limit_pb2.RateLimitPolicy()
        _unpack(name, packed, rate_limit)
        value = rate_limit_from_pb(name, rate_limit)
    elif name.startswith((WORKLOAD_PREFIX, SERVICE_PREFIX)):
        address = workload_pb2.Address()
        _unpack(name, packed, address)
        kind = address.WhichOneof("type")
        if kind == "workload":
            value = workload_from_pb(name, address.workload)
        elif kind == "service":
            value = service_from_pb(name, address.service)
        else:
            raise XdsRejected(name, "address holds neither a workload nor a service")
    else:
        raise XdsRejected(name, "resource name has no known prefix (wl/, svc/, ap/, l7/, rt/, tp/, rl/)")
    named = resource_name(value)
    if named != name:
        raise XdsRejected(name, f"resource holds {named}, not {name}")
    return value


def decode_resource(pb: discovery_pb2.Resource, type_url: str) -> tuple[str, str, Resource]:
    """(name, version, value) of one received resource of ``type_url``; raise XdsRejected."""
    name = pb.name
    if not name:
        raise XdsRejected("<unnamed>", "resource has no name")
    if type_url_for_name(name) != type_url:
        raise XdsRejected(name, f"resource name does not belong to type {type_url}")
    if not pb.version:
        raise XdsRejected(name, "resource has no version")
    if not pb.HasField("resource"):
        raise XdsRejected(name, "resource has no payload")
    return name, pb.version, resource_from_any(name, pb.resource)


# -- envelopes -----------------------------------------------------------------------------------


def request_to_pb(request: DeltaRequest) -> discovery_pb2.DeltaDiscoveryRequest:
    pb = discovery_pb2.DeltaDiscoveryRequest(
        type_url=request.type_url,
        resource_names_subscribe=list(request.subscribe),
        resource_names_unsubscribe=list(request.unsubscribe),
        initial_resource_versions=dict(request.initial_versions),
        response_nonce=request.response_nonce,
    )
    if request.node_id:
        pb.node.id = request.node_id
    if request.error is not None:
        pb.error_detail.code = request.error.code
        pb.error_detail.message = request.error.message
        if request.error.resource_names:
            detail = pb.error_detail.details.add()
            detail.Pack(discovery_pb2.RejectedResources(resource_names=list(request.error.resource_names)))
    return pb


def request_from_pb(pb: discovery_pb2.DeltaDiscoveryRequest) -> DeltaRequest:
    error: ErrorDetail | None = None
    if pb.HasField("error_detail"):
        names: list[str] = []
        for detail in pb.error_detail.details:
            if detail.type_url == _REJECTED_RESOURCES_URL:
                rejected = discovery_pb2.RejectedResources()
                if detail.Unpack(rejected):
                    names.extend(rejected.resource_names)
        error = ErrorDetail(pb.error_detail.code, pb.error_detail.message, tuple(names))
    return DeltaRequest(
        type_url=pb.type_url,
        subscribe=tuple(pb.resource_names_subscribe),
        unsubscribe=tuple(pb.resource_names_unsubscribe),
        initial_versions=dict(pb.initial_resource_versions),
        response_nonce=pb.response_nonce,
        error=error,
        node_id=pb.node.id,
    )


def response_to_pb(
    response: DeltaResponse, payloads: Mapping[str, discovery_pb2.Resource]
) -> discovery_pb2.DeltaDiscoveryResponse:
    """The wire response; ``payloads`` holds the encoded resource for every name in ``response``."""
    return discovery_pb2.DeltaDiscoveryResponse(
        system_version_info=response.system_version,
        type_url=response.type_url,
        nonce=response.nonce,
        resources=[payloads[ref.name] for ref in response.resources],
        removed_resources=list(response.removed),
    )


def decode_response(
    pb: discovery_pb2.DeltaDiscoveryResponse,
) -> tuple[DeltaResponse, dict[str, tuple[str, Resource]], dict[str, str]]:
    """The response envelope, the decoded resources (name -> (version, value)) and the rejected ones
    (name -> reason). A resource that fails to decode does not stop the others."""
    decoded: dict[str, tuple[str, Resource]] = {}
    rejected: dict[str, str] = {}
    refs: list[ResourceRef] = []
    for resource in pb.resources:
        try:
            name, version, value = decode_resource(resource, pb.type_url)
        except XdsRejected as exc:
            rejected[exc.resource_name] = exc.reason
            refs.append(ResourceRef(exc.resource_name, resource.version))
            continue
        if name in decoded:
            rejected[name] = "resource appears twice in one response"
            del decoded[name]
            continue
        decoded[name] = (version, value)
        refs.append(ResourceRef(name, version))
    response = DeltaResponse(
        type_url=pb.type_url,
        nonce=pb.nonce,
        resources=tuple(refs),
        removed=tuple(pb.removed_resources),
        system_version=pb.system_version_info,
    )
    return response, decoded, rejected
