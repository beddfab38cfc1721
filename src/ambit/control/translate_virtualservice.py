"""Istio VirtualService on a Service host → the waypoint's ``HttpRoute`` (kind ``VirtualService``).

Matches, destinations and headers are read here; the fields that shape traffic (durations, retries,
faults) are read by :mod:`ambit.control.translate_vs_traffic`. Still over 500 lines, mostly this
docstring: one checked translation per field, each with the warnings for what ambit cannot keep.

The only fault-injection API of ambient is the classic VirtualService ``http[].fault``, applied by the
waypoint of the host Service (istio.io ``docs/ambient/usage/l7-features``: classic APIs are Alpha
in ambient, mixing them with the Gateway API is undefined). Istio's waypoint translates a
VirtualService with ``pilot/pkg/networking/core/listener_waypoint.go`` (``getVirtualServiceForWaypoint``,
``waypointInboundRoute``, ``translateWaypointRoute``, ``waypointRouteDestination``), followed here
unless said otherwise. The data model is ``ambit.model.route``; the waypoint applies the rules in
order (``ambit.routing.http_routes``). Exactly what happens:

* objects: ``VirtualService`` of ``networking.istio.io`` ``v1``, ``v1beta1`` or ``v1alpha3``. One
  with ``gateways`` that do not include ``mesh`` belongs to gateways (another controller) and is
  passed over silently; no ``gateways`` means ``mesh``. ``exportTo`` is not read (the waypoint of
  the host Service applies the VirtualService wherever it is exported);
* ``hosts`` → Services, resolved in the VirtualService's namespace: ``reviews``,
  ``reviews.<ns>``, ``reviews.<ns>.svc`` and ``reviews.<ns>.svc.<cluster domain>`` all name the
  Service ``<ns>/reviews``. (Istio expands only a name without a dot,
  ``ResolveShortnameToFQDN``, and compares the rest literally with the Service hostname; ambit also
  takes the two forms Kubernetes DNS resolves.) A wildcard, an IP or a name that is no Service of the
  cluster is skipped with a warning (ServiceEntry hosts are not supported). As in Istio's
  ``getVirtualServiceForWaypoint``, the VirtualService must be in the Service's namespace or in the
  namespace of the Service's waypoint; otherwise that host is skipped with a warning;
* one ``HttpRoute`` per host Service, ``port`` None (every port), the rules in ``http[]`` order
  (the first that matches wins), ``index`` = the position in ``http[]``. When a match names a
  ``port``, one value per Service port instead, each holding the matches for that port (and those
  without a port); a rule left with no match on a port is not on that port, a port left with no rule
  gets no value. Several VirtualServices on one host apply oldest first (Istio merges them since
  istio/istio#59484). A VirtualService left with no ``http`` rule the waypoint can apply (none, or
  only ones ambit drops) gives no value at all, with a warning when it had ``http`` rules;
* **Service with a VirtualService and Gateway API routes** (:func:`merge_routes`): Istio says not to
  mix them (its waypoint takes whichever config it meets first). ambit's one rule: **a Service that
  has a VirtualService has its HTTPRoutes and GRPCRoutes ignored**, each with a warning (its
  TCPRoutes stay: ambit reads no ``tcp`` routes of a VirtualService, so nothing else routes TCP). The
  VirtualService is the only way to express fault injection, so adding one to a Service is taken as
  the owner's choice of API for that Service; removing it brings the Gateway API routes back;
* ``match[]`` (several entries: any of them; none: every request). ``uri``: ``exact`` → an exact path;
  ``prefix`` → a plain string prefix (``StringPrefix``: ``/foo`` matches ``/foobar``, unlike the Gateway
  API's segment prefix), ``/`` as the path prefix ``/``; ``regex`` as is (Python ``re``, whole path);
  ``ignoreUriCase`` makes exact and prefix case-insensitive regular expressions (``(?i)``,
  ``re.escape(prefix) + ".*"`` for a prefix). ``method``: ``exact`` only. ``authority`` → a match on the
  ``host`` header (the waypoint presents ``:authority`` / ``Host`` under that name). ``headers`` (names
  lower-cased; ``uri``, ``scheme``, ``method``, ``authority`` ignored as Istio documents) and
  ``queryParams``: ``exact``, ``prefix`` (→ a regular expression), ``regex``, and ``{}``: the header or
  parameter is present. ``gateways`` without ``mesh``: the match is not for the mesh and is left out
  silently. ``name`` and ``statPrefix`` are not needed. A match with ``withoutHeaders``, ``scheme``,
  ``sourceLabels``, ``sourceNamespace``, a ``method`` prefix or regex, a relative path or a regular
  expression that does not compile is dropped with a warning (dropping only the condition would widen
  the match; Istio's waypoint ignores ``sourceLabels``, istio/istio#51565). A rule left with no match is
  dropped with a warning;
* ``route[]`` destinations: ``host`` resolved as the hosts (any namespace: a VirtualService needs no
  ReferenceGrant); ``port.number``, required when the Service has several ports, else its only port;
  ``weight``: relative, and an unset or ``0`` weight means 100 for the only destination of a rule and
  "never" for one of several (istio/api ``HTTPRouteDestination.weight``). ``subset`` is kept on the
  backend (``BackendRef.subset``): the waypoint sends that share only to the subset's workloads, which
  the Service's DestinationRules define (``ambit.control.translate_destination_rule``). A subset no
  DestinationRule of that Service defines is kept too, with a warning: Istio routes it to a cluster that
  does not exist, so the waypoint answers 503 ``NC`` for it at request time. A destination ambit cannot
  use (no such Service, a port it does not have, no port on a Service with several) is dropped with a
  warning and its weight goes to ``invalid_weight``: that share of requests answers 500 (Istio's
  waypoint answers 503 ``NC`` for a cluster it does not know). ``headers`` of the only destination are
  merged into the rule's (as Istio folds a single weighted cluster into the route); on one of several,
  ignored with a warning;
* ``timeout`` → ``request_timeout`` (``0s``: none); ``retries``: unset → the mesh default (``retry``
  None); ``attempts: 0`` → no retries; else ``attempts``, ``perTryTimeout`` → ``backend_timeout``,
  ``backoff`` and ``retryOn`` as in :func:`retry_on`; ``retryRemoteLocalities`` is ignored with a
  warning, ``retryIgnorePreviousHosts: false`` too (ambit always tries another endpoint first);
* ``headers.request`` / ``headers.response``: ``set``, ``add``, ``remove``, names lower-cased; a name
  that is not an HTTP token, a pseudo-header, ``host`` (Istio turns it into an authority rewrite,
  not supported yet) or a value with CR, LF or NUL is left out with a warning;
* ``redirect``, ``rewrite``, ``mirror`` / ``mirrors`` (read by
  ``ambit.control.translate_route_filters``, which says exactly how): a rule with a ``redirect``
  answers itself, so its ``route``, ``rewrite``, ``fault`` and mirrors are not used (Istio refuses
  such a rule), each with a warning; a ``redirect`` or ``rewrite`` ambit cannot apply as written
  drops the rule with a warning (Istio's validation refuses the VirtualService);
  ``rewrite.uriRegexRewrite`` is not supported yet (warning; the rest of the rule is kept).
  ``mirror`` (with ``mirrorPercentage``, else the deprecated ``mirrorPercent``; 100 % when neither)
  and ``mirrors[]`` (``destination``, ``percentage``): each destination is resolved as a ``route``
  destination (its subset kept, as for a route; a missing Service or port: that mirror is left out, with
  a warning); both
  ``mirror`` and ``mirrors`` (Istio refuses that): both are used, with a warning;
* ``fault``: ``delay.fixedDelay`` with ``delay.percentage.value`` (else the deprecated integer
  ``delay.percent``); ``abort.httpStatus`` (200..599) or ``abort.grpcStatus`` (a gRPC status name,
  ``UNAVAILABLE``) with ``abort.percentage.value``. Without a percentage no request is delayed or
  aborted (istio/api ``HTTPFaultInjection``: "If not specified, no request will be aborted"), which
  gets a warning since it is rarely meant. ``exponentialDelay`` and ``http2Error`` are not supported
  (nor by Istio) and give a warning;
* not supported yet, with a warning naming the VirtualService and the field: ``corsPolicy`` (the
  rule is kept without it); ``directResponse``, ``delegate`` (the rule cannot stand without them
  and is dropped); ``tcp`` and ``tls`` routes (ignored);
* ``metadata.creationTimestamp`` → ``created`` (the order of several VirtualServices of one host).

Durations are Go / protobuf-JSON durations (``10s``, ``1.5s``, ``500ms``, ``1h30m``), as Istio reads
them. Warnings name the VirtualService (``VirtualService <ns>/<name>``) and the field. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ambit.control.translate_route_filters import FilterError, vs_mirror_percent, vs_redirect, vs_rewrite
from ambit.control.translate_vs_traffic import (
    GRPC_STATUS_CODES,
    duration_field,
    fault,
    integer,
    parse_duration,
    retries,
    retry_on,
)
from ambit.model.route import (
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    PATH_STRING_PREFIX,
    TCP_ROUTE,
    VALUE_EXACT,
    VALUE_REGEX,
    VIRTUAL_SERVICE,
    BackendRef,
    HeaderMatch,
    HeaderModifier,
    HttpRoute,
    MirrorFilter,
    PathMatch,
    QueryMatch,
    RouteMatch,
    RouteRule,
)
from ambit.model.workload import Service, service_hostname
from ambit.resources.objects import (
    JSON,
    items,
    mapping,
    name_of,
    namespace_of,
    service_for_host,
    strings,
    text,
)

__all__ = [
    "API_VERSIONS",
    "GRPC_STATUS_CODES",
    "convert_virtual_service",
    "convert_virtual_services",
    "merge_routes",
    "parse_duration",
    "retry_on",
]

ISTIO_NETWORKING_GROUP = "networking.istio.io"
API_VERSIONS = frozenset(f"{ISTIO_NETWORKING_GROUP}/{v}" for v in ("v1", "v1beta1", "v1alpha3"))
MESH_GATEWAY = "mesh"
SOLE_DESTINATION_WEIGHT = 100

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")  # an HTTP header name (RFC 9110 token)
_BAD_VALUE_CHARS = ("\r", "\n", "\0")
_IGNORED_HEADER_KEYS = frozenset({"uri", "scheme", "method", "authority"})  # istio/api HTTPMatchRequest
_PRESENT = ".*"  # a value match that any value (including an empty one) passes: "is present"
_ROOT = RouteMatch(path=PathMatch(PATH_PREFIX, "/"))
_KEPT_WITHOUT = ("corsPolicy",)
_CANNOT_STAND_WITHOUT = ("directResponse", "delegate")
_UNUSED_WITH_REDIRECT = ("route", "rewrite", "fault", "mirror", "mirrors")
_UNSUPPORTED_MATCH = ("withoutHeaders", "scheme", "sourceLabels", "sourceNamespace")


class _Invalid(ValueError):
    """A match or a condition translation cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class _Scope:
    """What translating one VirtualService needs: its namespace, the Services, where warnings go."""

    namespace: str
    services: Mapping[str, Service]
    cluster_domain: str
    warnings: list[str]
    subsets: Mapping[str, frozenset[str]]  # Service key -> the subsets its DestinationRules define

    def resolve(self, host: str) -> Service | None:
        key = host_key(host, self.namespace, self.cluster_domain)
        return self.services.get(key) if key is not None else None


@dataclass(frozen=True, slots=True)
class _Rule:
    """A translated ``http[]`` rule and, for each of its matches, the port it is limited to."""

    rule: RouteRule
    ports: tuple[int | None, ...]  # one per rule.matches


# --- small parsers --------------------------------------------------------------------------------


def host_key(host: str, namespace: str, cluster_domain: str) -> str | None:
    """The Service key a VirtualService host names (``ambit.resources.objects.service_for_host``), or
    None when it is not a Service name (a wildcard, an IP, another domain)."""
    found = service_for_host(host, namespace, cluster_domain)
    if found is None:
        return None
    return f"{found[0]}/{service_hostname(found[1], found[0], cluster_domain)}"


def _compiled(pattern: str, what: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _Invalid(f"{what} {pattern!r} is not a valid regular expression ({exc})") from None
    return pattern


# --- matches ------------------------------------------------------------------------------------


def _string_match(spec: Any, what: str) -> tuple[str, str] | None:
    """(kind, value) of a StringMatch; None for ``{}`` (presence). Prefix becomes a regex."""
    if not isinstance(spec, dict):
        raise _Invalid(f"{what} is not a string match")
    given = [k for k in ("exact", "prefix", "regex") if isinstance(spec.get(k), str)]
    if len(given) > 1:
        raise _Invalid(f"{what} sets {' and '.join(given)} (only one may be set)")
    if not given:
        return None
    kind, value = given[0], spec[given[0]]
    if kind == "exact":
        return VALUE_EXACT, value
    if kind == "prefix":
        return VALUE_REGEX, re.escape(value) + ".*"
    return VALUE_REGEX, _compiled(value, f"{what} regex")


def _value_match(spec: Any, what: str) -> tuple[str, str]:
    found = _string_match(spec, what)
    return found if found is not None else (VALUE_REGEX, _PRESENT)


def _path(spec: Any, ignore_case: bool) -> PathMatch | None:
    if not isinstance(spec, dict):
        raise _Invalid("uri is not a string match")
    given = [k for k in ("exact", "prefix", "regex") if isinstance(spec.get(k), str)]
    if len(given) > 1:
        raise _Invalid(f"uri sets {' and '.join(given)} (only one may be set)")
    if not given:
        return None
    kind, value = given[0], spec[given[0]]
    if kind == "regex":
        return PathMatch(PATH_REGEX, _compiled(value, "uri regex"))
    if not value.startswith("/"):
        raise _Invalid(f"uri {kind} {value!r} is not an absolute path")
    case = "(?i)" if ignore_case else ""
    if kind == "exact":
        return PathMatch(PATH_REGEX, case + re.escape(value)) if case else PathMatch(PATH_EXACT, value)
    if value == "/":
        return PathMatch(PATH_PREFIX, "/")
    if case:
        return PathMatch(PATH_REGEX, case + re.escape(value) + ".*")
    return PathMatch(PATH_STRING_PREFIX, value)  # a plain string prefix


def _match(spec: JSON) -> tuple[RouteMatch, int | None]:
    for field in _UNSUPPORTED_MATCH:
        if field in spec:
            raise _Invalid(f"{field} is not supported")
    path = _path(spec["uri"], spec.get("ignoreUriCase") is True) if "uri" in spec else None
    method: str | None = None
    if "method" in spec:
        found = _string_match(spec["method"], "method")
        if found is None or found[0] != VALUE_EXACT or not found[1]:
            raise _Invalid("method matches other than a non-empty exact are not supported")
        method = found[1]
    headers: dict[str, HeaderMatch] = {}
    if "authority" in spec:
        kind, value = _value_match(spec["authority"], "authority")
        headers["host"] = HeaderMatch("host", kind, value)
    raw_headers = spec.get("headers")
    for name, value_spec in (raw_headers if isinstance(raw_headers, dict) else {}).items():
        lowered = str(name).lower()
        if lowered in _IGNORED_HEADER_KEYS:
            continue
        if not _TOKEN.fullmatch(lowered):
            raise _Invalid(f"header name {name!r} is not supported (not an HTTP token)")
        kind, value = _value_match(value_spec, f"header {lowered}")
        headers.setdefault(lowered, HeaderMatch(lowered, kind, value))
    query: list[QueryMatch] = []
    raw_query = spec.get("queryParams")
    for name, value_spec in (raw_query if isinstance(raw_query, dict) else {}).items():
        kind, value = _value_match(value_spec, f"query parameter {name}")
        query.append(QueryMatch(str(name), kind, value))
    port = integer(spec.get("port"))
    return RouteMatch(path=path, method=method, headers=tuple(headers.values()), query=tuple(query)), port


def _matches(http: JSON, what: str, warnings: list[str]) -> list[tuple[RouteMatch, int | None]]:
    """The rule's (match, port) pairs for the mesh; [(every request, None)] when it has none; [] when
    none is left."""
    given = items(http, "match")
    if not given:
        return [(_ROOT, None)]
    found: dict[tuple[RouteMatch, int | None], None] = {}
    for position, spec in enumerate(given):
        gateways = strings(spec, "gateways")
        if gateways and MESH_GATEWAY not in gateways:
            continue  # this match is for gateways, not the mesh
        try:
            match, port = _match(spec)
        except _Invalid as exc:
            warnings.append(f"{what} match[{position}]: {exc}; that match is ignored")
            continue
        found[(match if match != RouteMatch() else _ROOT, port)] = None
    return list(found)


# --- headers ------------------------------------------------------------------------------------


def _header_pairs(entries: Any, what: str, warnings: list[str]) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for name, value in (entries if isinstance(entries, dict) else {}).items():
        lowered = str(name).lower()
        if not isinstance(value, str):
            warnings.append(f"{what}: the value of header {name!r} is not a string; left out")
        elif not _TOKEN.fullmatch(lowered):
            warnings.append(
                f"{what}: header name {name!r} is not valid (pseudo-headers cannot be set); left out"
            )
        elif lowered == "host":
            warnings.append(f"{what}: setting host (an authority rewrite) is not supported yet; left out")
        elif any(c in value for c in _BAD_VALUE_CHARS):
            warnings.append(f"{what}: the value of header {name} contains CR, LF or NUL; left out")
        else:
            found.setdefault(lowered, value)
    return tuple(found.items())


def _operations(spec: Any, what: str, warnings: list[str]) -> HeaderModifier | None:
    if not isinstance(spec, dict):
        return None
    remove: dict[str, None] = {}
    for name in strings(spec, "remove"):
        if _TOKEN.fullmatch(name):
            remove[name.lower()] = None
        else:
            warnings.append(f"{what}: header name {name!r} is not valid; left out")
    modifier = HeaderModifier(
        set=_header_pairs(spec.get("set"), what, warnings),
        add=_header_pairs(spec.get("add"), what, warnings),
        remove=tuple(remove),
    )
    return modifier if modifier != HeaderModifier() else None


def _headers(
    spec: JSON, what: str, warnings: list[str]
) -> tuple[HeaderModifier | None, HeaderModifier | None]:
    headers = mapping(spec, "headers")
    return (
        _operations(headers.get("request"), f"{what} headers.request", warnings),
        _operations(headers.get("response"), f"{what} headers.response", warnings),
    )


def _merged(first: HeaderModifier | None, then: HeaderModifier | None) -> HeaderModifier | None:
    """``first`` then ``then`` as one modifier: a later ``set`` of a name wins, ``add`` and ``remove``
    accumulate (Envoy applies the route's header operations, then the cluster's)."""
    if first is None or then is None:
        return first if then is None else then
    sets = dict(first.set)
    sets.update(then.set)
    return HeaderModifier(
        set=tuple(sets.items()),
        add=first.add + then.add,
        remove=tuple(dict.fromkeys(first.remove + then.remove)),
    )


# --- destinations -------------------------------------------------------------------------------


def _destination(destination: JSON, scope: _Scope, shown: str) -> BackendRef | str:
    """The Service port (and subset) a ``Destination`` names (weight 1), or why it cannot be used. A
    subset no DestinationRule defines is kept, with a warning about ``shown``."""
    host = text(destination, "host")
    service = scope.resolve(host) if host else None
    port = integer(mapping(destination, "port").get("number"))
    if service is None:
        return "names no Service of the cluster"
    if port is None and len(service.ports) != 1:
        return f"has no port.number and the Service has {len(service.ports)} ports"
    if port is not None and all(p.port != port for p in service.ports):
        return f"port {port} is not a port of the Service"
    subset = text(destination, "subset") or None
    if subset is not None and subset not in scope.subsets.get(service.key, frozenset()):
        scope.warnings.append(
            f"{shown}: subset {subset!r} is not defined by a DestinationRule of Service {service.key}; "
            "its requests will answer 503 (NC: no such cluster, as in Istio)"
        )
    return BackendRef(service.key, port if port is not None else service.ports[0].port, subset=subset)


def _mirror(
    spec: JSON, label: str, share_of: JSON, share: tuple[str, str | None], *, scope: _Scope, what: str
) -> MirrorFilter | None:
    """One mirror to the destination ``spec``; its percentage is ``share_of[share[0]]`` (else the legacy
    integer ``share_of[share[1]]``)."""
    shown = f"{what} {label} ({text(spec, 'host') or 'no host'})"
    try:
        percent = vs_mirror_percent(share_of, share[0], legacy=share[1])
    except FilterError as exc:
        scope.warnings.append(f"{shown}: {exc}; that mirror is left out")
        return None
    resolved = _destination(spec, scope, shown)
    if isinstance(resolved, str):
        scope.warnings.append(f"{shown}: {resolved}; that mirror is left out")
        return None
    return MirrorFilter(resolved, percent)


def _mirrors(http: JSON, scope: _Scope, what: str) -> tuple[MirrorFilter, ...]:
    """``mirror`` (with its percentage) and ``mirrors[]``, each resolved; the unusable ones left out."""
    found: list[MirrorFilter | None] = []
    if "mirror" in http:
        legacy = ("mirrorPercentage", "mirrorPercent")
        found.append(_mirror(mapping(http, "mirror"), "mirror", http, legacy, scope=scope, what=what))
        if items(http, "mirrors"):
            scope.warnings.append(
                f"{what}: both mirror and mirrors are set (Istio refuses that); both are used"
            )
    for position, entry in enumerate(items(http, "mirrors")):
        spec = mapping(entry, "destination")
        found.append(
            _mirror(spec, f"mirrors[{position}]", entry, ("percentage", None), scope=scope, what=what)
        )
    return tuple(mirror for mirror in found if mirror is not None)


def _destinations(
    http: JSON, scope: _Scope, what: str
) -> tuple[tuple[BackendRef, ...], int, tuple[HeaderModifier | None, HeaderModifier | None]]:
    """(the usable destinations with a weight, the weight of the dropped ones, the header operations of
    the only destination)."""
    warnings = scope.warnings
    given = items(http, "route")
    sole = len(given) == 1
    backends: list[BackendRef] = []
    invalid = 0
    headers: tuple[HeaderModifier | None, HeaderModifier | None] = (None, None)
    for position, entry in enumerate(given):
        weight = integer(entry.get("weight")) or 0
        if weight <= 0:
            if not sole:
                continue  # weight 0 among several: never used
            weight = SOLE_DESTINATION_WEIGHT
        destination = mapping(entry, "destination")
        shown = f"{what} route[{position}] ({text(destination, 'host') or 'no host'})"
        resolved = _destination(destination, scope, shown)
        if isinstance(resolved, str):
            warnings.append(f"{shown}: {resolved}; its share of requests (weight {weight}) answers 500")
            invalid += weight
            continue
        if "headers" in entry:
            operations = _headers(entry, shown, warnings)
            if sole:
                headers = operations
            else:
                warnings.append(
                    f"{shown}: headers on one of several destinations are not supported yet; they are ignored"
                )
        backends.append(replace(resolved, weight=weight))
    return tuple(backends), invalid, headers


def _rule(position: int, http: JSON, scope: _Scope, what: str) -> _Rule | None:
    warnings = scope.warnings
    rwhat = f"{what} http[{position}]" + (f" ({text(http, 'name')})" if text(http, "name") else "")
    for field in _CANNOT_STAND_WITHOUT:
        if field in http:
            warnings.append(
                f"{rwhat}: {field} is not supported yet; the rule cannot stand without it and is ignored"
            )
            return None
    pairs = _matches(http, rwhat, warnings)
    if not pairs:
        if any(
            not strings(m, "gateways") or MESH_GATEWAY in strings(m, "gateways") for m in items(http, "match")
        ):
            warnings.append(f"{rwhat}: no usable match; the rule is ignored")
        return None
    for field in _KEPT_WITHOUT:
        if field in http:
            warnings.append(f"{rwhat}: {field} is not supported yet; the rest of the rule is kept")
    matches = tuple(match for match, _port in pairs)
    request_headers, response_headers = _headers(http, rwhat, warnings)
    if "redirect" in http:
        try:
            redirect = vs_redirect(http["redirect"], items(http, "match"))
        except FilterError as exc:
            warnings.append(f"{rwhat}: redirect {exc}; the rule is ignored")
            return None
        for field in _UNUSED_WITH_REDIRECT:
            if field in http:
                warnings.append(f"{rwhat}: {field} is not used: a rule with a redirect answers itself")
        rule = RouteRule(
            index=position,
            matches=matches,
            backends=(),
            request_headers=request_headers,
            response_headers=response_headers,
            redirect=redirect,
        )
        return _Rule(rule, tuple(port for _match, port in pairs))
    try:
        rewrite = vs_rewrite(http["rewrite"], items(http, "match")) if "rewrite" in http else None
    except FilterError as exc:
        warnings.append(f"{rwhat}: rewrite {exc}; the rule is ignored")
        return None
    if "uriRegexRewrite" in mapping(http, "rewrite"):
        warnings.append(
            f"{rwhat}: rewrite.uriRegexRewrite is not supported yet; the rest of the rule is kept"
        )
    if not items(http, "route"):
        warnings.append(f"{rwhat}: no route destination; requests it takes answer 500")
    backends, invalid, (dst_request, dst_response) = _destinations(http, scope, rwhat)
    retry, per_try = retries(http, rwhat, warnings)
    timeout = duration_field(http, "timeout", rwhat, warnings)
    rule = RouteRule(
        index=position,
        matches=matches,
        backends=backends,
        request_headers=_merged(request_headers, dst_request),
        response_headers=_merged(response_headers, dst_response),
        request_timeout=timeout or None,
        backend_timeout=per_try,
        retry=retry,
        invalid_weight=invalid,
        fault=fault(http, rwhat, warnings),
        rewrite=rewrite,
        mirrors=_mirrors(http, scope, rwhat),
    )
    return _Rule(rule, tuple(port for _match, port in pairs))


def _on_port(rules: Iterable[_Rule], port: int) -> tuple[RouteRule, ...]:
    """The rules as they apply to ``port``: each with the matches for that port (or for every port)."""
    out: list[RouteRule] = []
    for entry in rules:
        matches = tuple(m for m, p in zip(entry.rule.matches, entry.ports, strict=True) if p in (None, port))
        if matches:
            out.append(replace(entry.rule, matches=matches))
    return tuple(out)


def _targets(spec: JSON, scope: _Scope, what: str) -> list[Service]:
    """The host Services this VirtualService applies to, in ``hosts`` order, each once."""
    found: dict[str, Service] = {}
    for host in strings(spec, "hosts"):
        service = scope.resolve(host)
        if service is None:
            kind = "a wildcard" if "*" in host else "not a Service of the cluster"
            scope.warnings.append(
                f"{what}: host {host!r} is {kind} (only Service hosts are supported); that host is ignored"
            )
            continue
        waypoint_ns = service.waypoint.namespace if service.waypoint is not None else None
        if scope.namespace not in (service.namespace, waypoint_ns):
            scope.warnings.append(
                f"{what}: host {host!r} is Service {service.key}, in another namespace than the "
                "VirtualService and its waypoint (as Istio, it must be in one of them); that host is ignored"
            )
            continue
        found.setdefault(service.key, service)
    return list(found.values())


def _created(obj: JSON, what: str, warnings: list[str]) -> str:
    created = text(mapping(obj, "metadata"), "creationTimestamp")
    if created:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            warnings.append(f"{what}: creationTimestamp {created!r} is not RFC 3339; taken as unknown")
            return ""
    return created


def convert_virtual_service(
    obj: JSON,
    services: Mapping[str, Service],
    *,
    cluster_domain: str,
    warnings: list[str],
    subsets: Mapping[str, frozenset[str]] | None = None,
) -> list[HttpRoute]:
    """The ``HttpRoute`` values of one VirtualService: one per host Service (per port when a match names
    a port); [] for one that does not apply to the mesh or names no Service. ``subsets``: the subsets
    each Service's DestinationRules define, by Service key (``translate_destination_rule.defined_subsets``;
    a destination naming another subset is kept with a warning)."""
    ns, name = namespace_of(obj) or "default", name_of(obj)
    what = f"VirtualService {ns}/{name}"
    if text(obj, "kind") != VIRTUAL_SERVICE:
        return []
    if text(obj, "apiVersion") not in API_VERSIONS:
        warnings.append(
            f"{what}: apiVersion {text(obj, 'apiVersion')!r} is not {ISTIO_NETWORKING_GROUP}; ignored"
        )
        return []
    spec = mapping(obj, "spec")
    gateways = strings(spec, "gateways")
    if gateways and MESH_GATEWAY not in gateways:
        return []  # routes for gateways only: another controller's
    scope = _Scope(ns, services, cluster_domain, warnings, subsets or {})
    targets = _targets(spec, scope, what)
    if not targets:
        return []
    for field in ("tcp", "tls"):
        if items(spec, field):
            warnings.append(f"{what}: {field} routes are not supported yet; they are ignored")
    rules = [
        r for i, http in enumerate(items(spec, "http")) if (r := _rule(i, http, scope, what)) is not None
    ]
    if not rules:  # nothing for the waypoint: the Service keeps its Gateway API routes, if any
        if items(spec, "http"):
            warnings.append(f"{what}: no http rule the waypoint can apply; the VirtualService is ignored")
        return []
    created = _created(obj, what, warnings)
    out: list[HttpRoute] = []
    by_port = any(port is not None for r in rules for port in r.ports)
    for service in targets:
        if not by_port:
            out.append(
                HttpRoute(VIRTUAL_SERVICE, name, ns, created, service.key, None, tuple(r.rule for r in rules))
            )
            continue
        ports = {p.port for p in service.ports}
        for port in sorted({p for r in rules for p in r.ports if p is not None} - ports):
            warnings.append(f"{what}: a match names port {port}, which Service {service.key} does not have")
        for port in sorted(ports):
            on_port = _on_port(rules, port)
            if on_port:
                out.append(HttpRoute(VIRTUAL_SERVICE, name, ns, created, service.key, port, on_port))
    return out


def convert_virtual_services(
    objects: Iterable[JSON],
    services: Mapping[str, Service],
    *,
    cluster_domain: str,
    warnings: list[str],
    subsets: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, HttpRoute]:
    """Every VirtualService route value by ``HttpRoute.key``; problems are appended to ``warnings``.
    ``services`` are the translated Services by key, ``subsets`` the subsets their DestinationRules
    define (see :func:`convert_virtual_service`)."""
    out: dict[str, HttpRoute] = {}
    for obj in objects:
        try:
            values = convert_virtual_service(
                obj, services, cluster_domain=cluster_domain, warnings=warnings, subsets=subsets
            )
        except Exception as exc:  # one odd object must not stop translation for everyone
            warnings.append(f"VirtualService {namespace_of(obj)}/{name_of(obj)}: not translated: {exc!r}")
            continue
        for route in values:
            out[route.key] = route
    return out


def merge_routes(
    gateway_routes: Mapping[str, HttpRoute], virtual_routes: Mapping[str, HttpRoute], warnings: list[str]
) -> dict[str, HttpRoute]:
    """Every route a waypoint gets: the VirtualService routes, and the Gateway API routes of the Services
    that have none. An HTTPRoute or GRPCRoute of a Service that has a VirtualService is left out with
    a warning (ambit's rule for mixing them; see the module docstring); TCPRoutes always stay."""
    covered: dict[str, list[str]] = {}
    for route in virtual_routes.values():
        names = covered.setdefault(route.service_key, [])
        if route.route_key not in names:
            names.append(route.route_key)
    out: dict[str, HttpRoute] = {}
    for key, route in gateway_routes.items():
        shadowing = covered.get(route.service_key)
        if shadowing is None or route.kind == TCP_ROUTE:  # VirtualService tcp routes are not read
            out[key] = route
            continue
        warnings.append(
            f"{route.kind} {route.route_key}: Service {route.service_key} has VirtualService "
            f"{', '.join(sorted(shadowing))}; ambit does not mix VirtualService and Gateway API routes on "
            "one Service, so this route is ignored there"
        )
    out.update(virtual_routes)
    return out
