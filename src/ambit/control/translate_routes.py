"""Gateway API HTTPRoute, GRPCRoute and TCPRoute attached to a Service (GAMMA) → the waypoint's
``HttpRoute``.

The data model is ``ambit.model.route`` and the matcher ``ambit.routing.http_routes``. Istio's own
conversion (``pilot/pkg/config/kube/gateway/conversion.go``: ``convertHTTPRoute``,
``convertGRPCRoute``, ``createURIMatch``, ``createGRPCURIMatch``) is followed unless said otherwise.
Exactly what happens:

* objects: ``HTTPRoute`` (``gateway.networking.k8s.io`` v1 or v1beta1), ``GRPCRoute`` (v1) and
  ``TCPRoute`` (v1alpha2); one ``HttpRoute`` per (route, parent Service, port). ``hostnames`` are not
  read (a GAMMA route applies to the Service the request addresses);
* parents: ``parentRefs`` of kind ``Service`` and group ``""`` or ``core`` (the CRD's default group is
  ``gateway.networking.k8s.io``, so a Service parent must say ``group: ""``, as in Istio). Only
  **producer routes** this increment: the Service must be in the route's namespace; a consumer
  route (a parentRef into another namespace) is skipped with a warning, as are a Service that does
  not exist, a waypoint ``Gateway`` parent (routes on the waypoint itself are not supported yet) and
  a ``sectionName`` / ``port`` the Service does not have. Other parents (an ingress ``Gateway``, other
  kinds) belong to other controllers and are passed over silently, as Istio does. ``sectionName``
  names a Service port (the Gateway API's reading for a Service parent) and is resolved to its
  number; ``port`` is kept; a parentRef without either applies to every port (and then covers the
  port-specific ones of the same Service, which are not repeated);
* matches (HTTPRoute): none → one ``PathPrefix /``; a match without a path → ``PathPrefix /``; a
  ``PathPrefix`` loses its trailing ``/`` (``/`` itself stays); ``Exact`` and ``PathPrefix`` must be
  absolute; a ``RegularExpression`` must compile (Python ``re``); ``method`` kept; ``headers`` (names
  lower-cased) and ``queryParams`` (names as written), type ``Exact`` by default, only the first of
  equivalent names counts (Gateway API). A match with anything invalid is dropped with a warning
  (dropping only the bad condition would widen it); a rule left with no match is dropped too;
* matches (GRPCRoute), as Istio maps ``method`` onto the ``:path`` ``/<service>/<method>``:

  ==========================  =================================  ====================================
  method match                Exact                              RegularExpression
  ==========================  =================================  ====================================
  service and method          ``Exact /<service>/<method>``      ``RegularExpression /<s>/<m>``
  service only                ``PathPrefix /<service>`` (1)      ``RegularExpression /<s>/.+``
  method only                 ``RegularExpression /[^/]+/<m>``   ``RegularExpression /[^/]+/<m>``
  ==========================  =================================  ====================================

  (1) Istio writes the plain prefix ``/<service>/``; as a segment prefix it differs only for the
  path ``/<service>`` itself, which no gRPC call has. An Exact method is escaped (``re.escape``)
  inside a regular expression. No ``method`` → no path condition (it ranks last, as in Istio); no matches →
  one match on everything. Headers as for HTTPRoute;
* filters: ``RequestHeaderModifier`` / ``ResponseHeaderModifier`` (``set`` / ``add`` / ``remove``,
  names lower-cased, the first of equivalent names kept; a name that is not an HTTP token or a value
  with CR, LF or NUL is left out with a warning). ``RequestRedirect`` and ``URLRewrite`` (HTTPRoute
  only; read by ``ambit.control.translate_route_filters``): a redirect makes the rule answer itself,
  so its backendRefs, a URLRewrite (the Gateway API forbids both) and its mirrors are not used, each
  with a warning; a redirect or rewrite that cannot be applied as written (``ReplacePrefixMatch`` on
  a rule with a match that is not a ``PathPrefix``, a relative path, ...) is not skipped: the rule
  answers 500, with a warning (the spec: a filter that cannot be applied must not be skipped, its
  requests get an error). ``RequestMirror`` (HTTPRoute and GRPCRoute, several allowed): the
  backendRef is resolved as a backend (below); an invalid one, or an invalid ``percent`` /
  ``fraction``, drops that mirror with a warning (the spec: the backend is not configured, and the
  route status says ``ResolvedRefs: False``). A repeated filter of one type other than
  ``RequestMirror``: the first counts. ``CORS``, ``ExtensionRef``, ``ExternalAuth`` and filters on a
  backendRef: "not supported yet", with a warning; the rest of the rule is kept;
* backendRefs: kind ``Service`` of the core group with a ``port``, in the route's namespace or in
  another one whose ReferenceGrant permits it (``ambit.control.reference_grants.reference_permitted``:
  a grant in the Service's namespace with ``from`` group ``gateway.networking.k8s.io``, the route's
  kind and namespace, and ``to`` group ``""``, kind ``Service``, no name or the Service's); weight
  default 1; weight 0 → never used (left out). A backendRef that is invalid (another namespace
  without a grant; another kind; no port; no such Service) is dropped with a warning and its weight
  goes to ``invalid_weight``: that share of requests answers 500, as the Gateway API requires. A rule
  with no backend weight answers 500. ``RequestMirror`` backends follow the same rule;
* ``timeouts.request`` / ``timeouts.backendRequest`` (HTTPRoute): Gateway API durations (GEP-2257:
  ``^([0-9]{1,5}(h|m|s|ms)){1,4}$``, summed as Go's ``time.ParseDuration`` does) in seconds; ``0s``
  → no timeout; anything else is ignored with a warning. A backendRequest longer than the request
  timeout is kept, with a warning (the request timeout still bounds the whole request);
* ``retry`` (HTTPRoute, GEP-1731): ``attempts`` (default 2, as Istio), ``codes`` (400..599, others
  left out with a warning), ``backoff`` (a duration; ``0s`` → Envoy's default) → ``RetryPolicy`` with
  Istio's fixed conditions (connect-failure, refused-stream, gRPC cancelled and unavailable);
* TCPRoute: parents as above; each rule becomes a rule with the single match ``RouteMatch()`` (a
  TCPRoute has no matches) and its weighted backendRefs (invalid ones: that share of connections is
  refused). The waypoint uses the first rule only (``ambit.routing.http_routes.tcp_backends``); a
  route with several rules gets a warning (TCPRoute v1 allows one);
* ``metadata.creationTimestamp`` → ``created`` (not RFC 3339: ``""``, with a warning).

Warnings name the route (``HTTPRoute <ns>/<name>``) and, where it helps, the rule. Pure: no I/O.

What one parentRef or backendRef resolves to is decided once, here, by ``resolve_parent`` and
``resolve_backend``; a refusal carries the Gateway API ``RouteConditionReason`` for it, so the
route status (``ambit.control.route_status``) reports exactly what translation did.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ambit.control.reference_grants import NO_GRANTS, ReferenceGrants, reference_permitted
from ambit.control.translate_route_filters import (
    FilterError,
    gateway_redirect,
    gateway_rewrite,
    mirror_percent,
)
from ambit.model.route import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    ROUTE_KINDS,
    TCP_ROUTE,
    VALUE_EXACT,
    VALUE_KINDS,
    VALUE_REGEX,
    BackendRef,
    HeaderMatch,
    HeaderModifier,
    HttpRoute,
    MirrorFilter,
    PathMatch,
    QueryMatch,
    RedirectFilter,
    RetryPolicy,
    RewriteFilter,
    RouteMatch,
    RouteRule,
)
from ambit.model.workload import Service, service_hostname
from ambit.resources.objects import JSON, items, mapping, name_of, namespace_of, strings, text

GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_ROUTE_KINDS = (GRPC_ROUTE, HTTP_ROUTE, TCP_ROUTE)  # the Gateway API route kinds translated here
CORE_GROUPS = frozenset({"", "core"})
DEFAULT_RETRY_ATTEMPTS = 2  # Istio's default when `retry.attempts` is unset
MIN_RETRY_CODE, MAX_RETRY_CODE = 400, 599  # HTTPRouteRetryStatusCode
_DURATION = re.compile(r"(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}")
_DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+\-.^_`|~]+")  # an HTTP header name (RFC 9110 token)
_BAD_VALUE_CHARS = ("\r", "\n", "\0")
_UNSUPPORTED_FILTERS = frozenset({"CORS", "ExtensionRef", "ExternalAuth"})
_HEADER_FILTERS = {
    "RequestHeaderModifier": "requestHeaderModifier",
    "ResponseHeaderModifier": "responseHeaderModifier",
}

# Gateway API RouteConditionReason values (sigs.k8s.io/gateway-api apis/v1/shared_types.go) for
# why a parentRef is not accepted or a backendRef does not resolve.
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_PARENT = "NoMatchingParent"
REF_NOT_PERMITTED = "RefNotPermitted"
INVALID_KIND = "InvalidKind"
BACKEND_NOT_FOUND = "BackendNotFound"


class _Invalid(ValueError):
    """A match or a condition translation cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a parentRef is not attached or a backendRef not used: a Gateway API RouteConditionReason
    and the problem as the translation warning words it."""

    reason: str
    problem: str


@dataclass(frozen=True, slots=True)
class Attachment:
    """A parentRef that attaches: the parent Service's key and the port (None: every port)."""

    service_key: str
    port: int | None


def service_key(name: str, namespace: str, cluster_domain: str) -> str:
    """The key of the Service ``namespace/name`` (``Service.key``)."""
    return f"{namespace}/{service_hostname(name, namespace, cluster_domain)}"


@dataclass(frozen=True, slots=True)
class _Scope:
    """What translating one route object needs: its namespace, the Services, where warnings go, its kind
    and the ReferenceGrants (for backends in other namespaces)."""

    namespace: str
    services: Mapping[str, Service]
    waypoints: Collection[tuple[str, str]]
    cluster_domain: str
    warnings: list[str]
    kind: str = HTTP_ROUTE  # the route's kind (a ReferenceGrant names the kinds it trusts)
    grants: ReferenceGrants = NO_GRANTS

    def service_key(self, name: str, namespace: str) -> str:
        return service_key(name, namespace, self.cluster_domain)


def parse_duration(value: str) -> float:
    """A Gateway API duration (GEP-2257) in seconds; ValueError unless it is one."""
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not a Gateway API duration (like '500ms', '10s', '1h30m')")
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(value))


def _integer(value: Any) -> int | None:
    """``value`` if it is an integer (a bool is not), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _compiled(pattern: str, what: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise _Invalid(f"{what} {pattern!r} is not a valid regular expression ({exc})") from None
    return pattern


# --- matches ------------------------------------------------------------------------------------


def _value_kind(entry: JSON, what: str) -> str:
    kind = text(entry, "type", VALUE_EXACT) or VALUE_EXACT
    if kind not in VALUE_KINDS:
        raise _Invalid(f"{what} match type {kind!r} is not supported")
    return kind


def _headers(match: JSON) -> tuple[HeaderMatch, ...]:
    found: dict[str, HeaderMatch] = {}
    for entry in items(match, "headers"):
        name = text(entry, "name").lower()
        if not name:
            raise _Invalid("a header match has no name")
        kind = _value_kind(entry, "header")
        value = text(entry, "value")
        if kind == VALUE_REGEX:
            _compiled(value, f"header {name} regular expression")
        found.setdefault(name, HeaderMatch(name, kind, value))  # the first of equivalent names counts
    return tuple(found.values())


def _query(match: JSON) -> tuple[QueryMatch, ...]:
    found: dict[str, QueryMatch] = {}
    for entry in items(match, "queryParams"):
        name = text(entry, "name")
        if not name:
            raise _Invalid("a query parameter match has no name")
        kind = _value_kind(entry, "query parameter")
        value = text(entry, "value")
        if kind == VALUE_REGEX:
            _compiled(value, f"query parameter {name} regular expression")
        found.setdefault(name, QueryMatch(name, kind, value))
    return tuple(found.values())


def _http_path(match: JSON) -> PathMatch:
    path = mapping(match, "path")
    kind = text(path, "type", PATH_PREFIX) or PATH_PREFIX
    value = text(path, "value", "/") or "/"
    if kind == PATH_REGEX:
        return PathMatch(PATH_REGEX, _compiled(value, "path regular expression"))
    if kind not in (PATH_EXACT, PATH_PREFIX):
        raise _Invalid(f"path match type {kind!r} is not supported")
    if not value.startswith("/"):
        raise _Invalid(f"path {value!r} is not absolute")
    if kind == PATH_PREFIX:
        return PathMatch(PATH_PREFIX, value.rstrip("/") or "/")  # "a trailing / is ignored"
    return PathMatch(PATH_EXACT, value)


def _http_match(match: JSON) -> RouteMatch:
    method = match.get("method")
    return RouteMatch(
        path=_http_path(match),
        method=method if isinstance(method, str) and method else None,
        headers=_headers(match),
        query=_query(match),
    )


def _grpc_path(method_match: JSON) -> PathMatch:
    kind = text(method_match, "type", VALUE_EXACT) or VALUE_EXACT
    service = text(method_match, "service") or None
    method = text(method_match, "method") or None
    if service is None and method is None:
        raise _Invalid("a gRPC method match has neither service nor method")
    if kind == VALUE_EXACT:
        if method is None:
            return PathMatch(PATH_PREFIX, f"/{service}")
        if service is None:
            return PathMatch(PATH_REGEX, f"/[^/]+/{re.escape(method)}")
        return PathMatch(PATH_EXACT, f"/{service}/{method}")
    if kind == VALUE_REGEX:
        if method is None:
            pattern = f"/{service}/.+"
        elif service is None:
            pattern = f"/[^/]+/{method}"
        else:
            pattern = f"/{service}/{method}"
        return PathMatch(PATH_REGEX, _compiled(pattern, "gRPC method regular expression"))
    raise _Invalid(f"gRPC method match type {kind!r} is not supported")


def _grpc_match(match: JSON) -> RouteMatch:
    method = match.get("method")
    return RouteMatch(
        path=_grpc_path(method) if isinstance(method, dict) else None,
        headers=_headers(match),
    )


def _matches(kind: str, rule: JSON, what: str, warnings: list[str]) -> tuple[RouteMatch, ...]:
    """The rule's matches (the Gateway API default when it has none); () when every one is invalid."""
    given = items(rule, "matches")
    if not given:
        return (RouteMatch(path=PathMatch(PATH_PREFIX, "/")) if kind == HTTP_ROUTE else RouteMatch(),)
    found: list[RouteMatch] = []
    for position, match in enumerate(given):
        try:
            found.append(_http_match(match) if kind == HTTP_ROUTE else _grpc_match(match))
        except _Invalid as exc:
            warnings.append(f"{what} match {position}: {exc}; that match is ignored")
    return tuple(dict.fromkeys(found))


# --- filters ------------------------------------------------------------------------------------


def _header_pairs(entries: list[JSON], what: str, warnings: list[str]) -> tuple[tuple[str, str], ...]:
    found: dict[str, str] = {}
    for entry in entries:
        name, value = text(entry, "name"), text(entry, "value")
        if not _TOKEN.fullmatch(name):
            warnings.append(f"{what}: header name {name!r} is not valid; left out")
        elif any(c in value for c in _BAD_VALUE_CHARS):
            warnings.append(f"{what}: the value of header {name} contains CR, LF or NUL; left out")
        else:
            found.setdefault(name.lower(), value)  # the first of equivalent names counts
    return tuple(found.items())


def _modifier(spec: JSON, what: str, warnings: list[str]) -> HeaderModifier | None:
    remove: dict[str, None] = {}
    for name in strings(spec, "remove"):
        if _TOKEN.fullmatch(name):
            remove[name.lower()] = None
        else:
            warnings.append(f"{what}: header name {name!r} is not valid; left out")
    modifier = HeaderModifier(
        set=_header_pairs(items(spec, "set"), what, warnings),
        add=_header_pairs(items(spec, "add"), what, warnings),
        remove=tuple(remove),
    )
    return modifier if modifier != HeaderModifier() else None


@dataclass(slots=True)
class _Filters:
    """What a rule's filters ask for; ``broken``: a redirect or rewrite that cannot be applied."""

    request: HeaderModifier | None = None
    response: HeaderModifier | None = None
    redirect: RedirectFilter | None = None
    rewrite: RewriteFilter | None = None
    mirrors: list[MirrorFilter] = field(default_factory=list)
    broken: bool = False


def _mirror(entry: JSON, position: int, scope: _Scope, what: str) -> MirrorFilter | None:
    spec = mapping(entry, "requestMirror")
    ref = mapping(spec, "backendRef")
    shown = f"{what} RequestMirror filter {position} ({backend_shown(ref, scope.namespace)})"
    resolved = resolve_backend(
        ref,
        scope.namespace,
        scope.services,
        scope.cluster_domain,
        route_kind=scope.kind,
        grants=scope.grants,
    )
    if isinstance(resolved, Refusal):
        scope.warnings.append(f"{shown}: {resolved.problem}; that mirror is left out")
        return None
    try:
        percent = mirror_percent(spec)
    except FilterError as exc:
        scope.warnings.append(f"{shown}: {exc}; that mirror is left out")
        return None
    return MirrorFilter(BackendRef(resolved.service_key, resolved.port), percent)


def _filters(kind: str, rule: JSON, matches: tuple[RouteMatch, ...], scope: _Scope, what: str) -> _Filters:
    warnings = scope.warnings
    found = _Filters()
    seen: set[str] = set()
    for position, entry in enumerate(items(rule, "filters")):
        ftype = text(entry, "type")
        if ftype == "RequestMirror":
            mirror = _mirror(entry, position, scope, what)
            if mirror is not None:
                found.mirrors.append(mirror)
            continue
        if ftype in _UNSUPPORTED_FILTERS:
            warnings.append(f"{what}: filter {ftype} is not supported yet; the rest of the rule is kept")
            continue
        if ftype in ("RequestRedirect", "URLRewrite") and kind != HTTP_ROUTE:
            warnings.append(f"{what}: filter {ftype} is not a {kind} filter; it is ignored")
            continue
        if ftype not in _HEADER_FILTERS and ftype not in ("RequestRedirect", "URLRewrite"):
            warnings.append(f"{what}: filter type {ftype!r} is unknown; the rest of the rule is kept")
            continue
        if ftype in seen:
            warnings.append(f"{what}: {ftype} is repeated; only the first one is used")
            continue
        seen.add(ftype)
        if ftype in _HEADER_FILTERS:
            modifier = _modifier(mapping(entry, _HEADER_FILTERS[ftype]), f"{what} {ftype}", warnings)
            if ftype == "RequestHeaderModifier":
                found.request = modifier
            else:
                found.response = modifier
            continue
        try:
            if ftype == "RequestRedirect":
                found.redirect = gateway_redirect(mapping(entry, "requestRedirect"), matches)
            else:
                found.rewrite = gateway_rewrite(mapping(entry, "urlRewrite"), matches)
        except FilterError as exc:
            warnings.append(f"{what}: {ftype}: {exc}; requests the rule takes answer 500")
            found.broken = True
    if found.redirect is not None:
        if found.rewrite is not None:
            warnings.append(
                f"{what}: URLRewrite is ignored: the rule redirects, so nothing is sent upstream "
                "(the Gateway API forbids both)"
            )
            found.rewrite = None
        if found.mirrors:
            warnings.append(
                f"{what}: RequestMirror is ignored: the rule redirects, so nothing is sent upstream"
            )
            found.mirrors = []
        if items(rule, "backendRefs"):
            warnings.append(
                f"{what}: backendRefs are not used: the rule answers with its RequestRedirect "
                "(the Gateway API forbids both)"
            )
    return found


# --- backends -----------------------------------------------------------------------------------


def backend_weight(ref: JSON) -> int:
    """A backendRef's weight (default 1); 0 for 0 or junk: such a backend is never used (nor checked)."""
    weight = _integer(ref.get("weight", 1))
    return weight if weight is not None and weight > 0 else 0


def backend_shown(ref: JSON, namespace: str) -> str:
    """How a backendRef is named in messages: ``<kind> <namespace>/<name>``."""
    kind = text(ref, "kind", "Service") or "Service"
    return f"{kind} {text(ref, 'namespace') or namespace}/{text(ref, 'name')}"


def resolve_backend(
    ref: JSON,
    namespace: str,
    services: Mapping[str, Service],
    cluster_domain: str,
    *,
    route_kind: str,
    grants: ReferenceGrants,
) -> BackendRef | Refusal:
    """The backend a backendRef of a ``route_kind`` route in ``namespace`` names, or why it cannot be
    used; a Service in another namespace needs a ReferenceGrant there (``reference_permitted``)."""
    kind, group, name = text(ref, "kind", "Service") or "Service", text(ref, "group"), text(ref, "name")
    ref_ns = text(ref, "namespace") or namespace
    port = _integer(ref.get("port"))
    key = service_key(name, ref_ns, cluster_domain)
    if kind != "Service" or group not in CORE_GROUPS:
        return Refusal(
            INVALID_KIND, f"kind {group or 'core'}/{kind} is not supported (only core Services are)"
        )
    if not reference_permitted(
        grants,
        from_group=GATEWAY_GROUP,
        from_kind=route_kind,
        from_namespace=namespace,
        to_group="",
        to_kind="Service",
        to_namespace=ref_ns,
        to_name=name,
    ):
        return Refusal(
            REF_NOT_PERMITTED,
            f"is in another namespace and no ReferenceGrant in {ref_ns} permits {route_kind}s of "
            f"{namespace} to reference it",
        )
    if port is None:
        return Refusal(BACKEND_NOT_FOUND, "has no port (a Service backend needs one)")
    if key not in services:
        return Refusal(BACKEND_NOT_FOUND, "does not exist")
    return BackendRef(key, port, backend_weight(ref))


def _backends(
    rule: JSON, scope: _Scope, what: str, *, unit: str = "requests"
) -> tuple[tuple[BackendRef, ...], int]:
    """(the valid backends with a weight, the total weight of the invalid ones)."""
    backends: list[BackendRef] = []
    invalid = 0
    for position, ref in enumerate(items(rule, "backendRefs")):
        weight = backend_weight(ref)
        if weight == 0:
            continue  # weight 0: never used
        shown = f"{what} backendRef {position} ({backend_shown(ref, scope.namespace)})"
        resolved = resolve_backend(
            ref,
            scope.namespace,
            scope.services,
            scope.cluster_domain,
            route_kind=scope.kind,
            grants=scope.grants,
        )
        if isinstance(resolved, Refusal):
            outcome = "answers 500" if unit == "requests" else "is refused"
            scope.warnings.append(
                f"{shown}: {resolved.problem}; its share of {unit} (weight {weight}) {outcome}"
            )
            invalid += weight
            continue
        if items(ref, "filters"):
            scope.warnings.append(f"{shown}: filters on a backendRef are not supported yet; they are ignored")
        backends.append(resolved)
    return tuple(backends), invalid


# --- timeouts and retries -----------------------------------------------------------------------


def _duration(spec: JSON, field: str, what: str, warnings: list[str]) -> float | None:
    """Seconds, or None for unset, ``0s`` or junk (junk with a warning)."""
    if field not in spec or spec[field] is None:
        return None
    value = spec[field]
    try:
        seconds = parse_duration(value) if isinstance(value, str) else None
    except ValueError:
        seconds = None
    if seconds is None:
        warnings.append(f"{what}: {field} {value!r} is not a Gateway API duration; it is ignored")
        return None
    return seconds or None


def _timeouts(rule: JSON, what: str, warnings: list[str]) -> tuple[float | None, float | None]:
    spec = mapping(rule, "timeouts")
    request = _duration(spec, "request", f"{what} timeouts", warnings)
    backend = _duration(spec, "backendRequest", f"{what} timeouts", warnings)
    if request is not None and backend is not None and backend > request:
        warnings.append(
            f"{what}: timeouts.backendRequest is longer than timeouts.request (the Gateway API requires it "
            "not to be); the request timeout still bounds the whole request"
        )
    return request, backend


def _retry(rule: JSON, what: str, warnings: list[str]) -> RetryPolicy | None:
    spec = rule.get("retry")
    if not isinstance(spec, dict):
        return None
    raw_attempts = spec.get("attempts")
    attempts = _integer(raw_attempts)
    if attempts is None or attempts < 0:
        if raw_attempts is not None:
            warnings.append(
                f"{what}: retry.attempts {raw_attempts!r} is not a count; {DEFAULT_RETRY_ATTEMPTS} is used"
            )
        attempts = DEFAULT_RETRY_ATTEMPTS
    codes: dict[int, None] = {}
    raw_codes = spec.get("codes")
    for code in raw_codes if isinstance(raw_codes, list) else []:
        status = _integer(code)
        if status is not None and MIN_RETRY_CODE <= status <= MAX_RETRY_CODE:
            codes[status] = None
        else:
            warnings.append(
                f"{what}: retry code {code!r} is not a status in {MIN_RETRY_CODE}..{MAX_RETRY_CODE}; left out"
            )
    return RetryPolicy(
        attempts=attempts, codes=tuple(codes), backoff=_duration(spec, "backoff", f"{what} retry", warnings)
    )


# --- routes -------------------------------------------------------------------------------------


def _tcp_rules(spec: JSON, scope: _Scope, what: str) -> tuple[RouteRule, ...]:
    given = items(spec, "rules")
    if len(given) > 1:
        scope.warnings.append(
            f"{what}: {len(given)} rules; only the first takes connections (a TCPRoute rule has no "
            "match, and TCPRoute v1 allows one rule)"
        )
    rules: list[RouteRule] = []
    for position, rule in enumerate(given):
        backends, invalid = _backends(rule, scope, f"{what} rule {position}", unit="connections")
        rules.append(RouteRule(position, (RouteMatch(),), backends, invalid_weight=invalid))
    return tuple(rules)


def _rules(kind: str, spec: JSON, scope: _Scope, what: str) -> tuple[RouteRule, ...]:
    if kind == TCP_ROUTE:
        return _tcp_rules(spec, scope, what)
    warnings = scope.warnings
    rules: list[RouteRule] = []
    for position, rule in enumerate(items(spec, "rules")):
        rwhat = f"{what} rule {position}"
        matches = _matches(kind, rule, rwhat, warnings)
        if not matches:
            warnings.append(f"{rwhat}: no valid match; the rule is ignored")
            continue
        filters = _filters(kind, rule, matches, scope, rwhat)
        backends: tuple[BackendRef, ...] = ()
        invalid = 0
        if filters.broken:  # a filter that cannot be applied is not skipped: the rule answers 500
            invalid = 1
            filters.redirect, filters.rewrite, filters.mirrors = None, None, []
        elif filters.redirect is None:  # a redirect answers itself: no backend
            backends, invalid = _backends(rule, scope, rwhat)
        request_timeout, backend_timeout = (
            _timeouts(rule, rwhat, warnings) if kind == HTTP_ROUTE else (None, None)
        )
        rules.append(
            RouteRule(
                index=position,
                matches=matches,
                backends=backends,
                request_headers=filters.request,
                response_headers=filters.response,
                request_timeout=request_timeout,
                backend_timeout=backend_timeout,
                retry=_retry(rule, rwhat, warnings) if kind == HTTP_ROUTE else None,
                invalid_weight=invalid,
                redirect=filters.redirect,
                rewrite=filters.rewrite,
                mirrors=tuple(filters.mirrors),
            )
        )
    return tuple(rules)


def _service_port(service: Service, section: str) -> int | None:
    return next((p.port for p in service.ports if p.name == section), None)


def is_service_parent(ref: JSON) -> bool:
    """A parentRef to a core Service (GAMMA): the parents this module translates and reports on."""
    return text(ref, "kind", "Gateway") == "Service" and text(ref, "group", GATEWAY_GROUP) in CORE_GROUPS


def resolve_parent(
    ref: JSON, namespace: str, services: Mapping[str, Service], cluster_domain: str
) -> Attachment | Refusal:
    """Where a Service parentRef of a route in ``namespace`` attaches it, or why it does not."""
    name, ref_ns = text(ref, "name"), text(ref, "namespace") or namespace
    if ref_ns != namespace:
        return Refusal(
            NOT_ALLOWED_BY_LISTENERS,
            "consumer routes (a route in another namespace than its Service) are not supported yet",
        )
    service = services.get(service_key(name, ref_ns, cluster_domain))
    if service is None:
        return Refusal(NO_MATCHING_PARENT, "no such Service")
    port = _integer(ref.get("port"))
    section = text(ref, "sectionName")
    if section:
        named = _service_port(service, section)
        if named is None or (port is not None and port != named):
            return Refusal(NO_MATCHING_PARENT, f"the Service has no port {section!r}")
        port = named
    if port is not None and all(p.port != port for p in service.ports):
        return Refusal(NO_MATCHING_PARENT, f"the Service has no port {port}")
    return Attachment(service.key, port)


def _parents(spec: JSON, scope: _Scope, what: str) -> dict[str, set[int | None]]:
    """Parent Service key -> the ports the route applies to there (None: every port)."""
    warnings = scope.warnings
    parents: dict[str, set[int | None]] = {}
    for ref in items(spec, "parentRefs"):
        kind, group, name = text(ref, "kind", "Gateway"), text(ref, "group", GATEWAY_GROUP), text(ref, "name")
        ref_ns = text(ref, "namespace") or scope.namespace
        shown = f"{what}: parentRef {kind} {ref_ns}/{name}"
        if kind == "Gateway" and group == GATEWAY_GROUP and (ref_ns, name) in scope.waypoints:
            warnings.append(
                f"{shown}: routes attached to a waypoint Gateway are not supported yet (only Service "
                "parents are); that parentRef is ignored"
            )
            continue
        if kind != "Service":
            continue  # another controller's parent (an ingress Gateway, ...)
        if not is_service_parent(ref):
            warnings.append(
                f'{shown}: group {group!r} is not the core group; a Service parent needs group: ""; '
                "that parentRef is ignored"
            )
            continue
        resolved = resolve_parent(ref, scope.namespace, scope.services, scope.cluster_domain)
        if isinstance(resolved, Refusal):
            warnings.append(f"{shown}: {resolved.problem}; that parentRef is ignored")
            continue
        parents.setdefault(resolved.service_key, set()).add(resolved.port)
    return {key: ({None} if None in ports else ports) for key, ports in parents.items()}


def _created(obj: JSON, what: str, warnings: list[str]) -> str:
    created = text(mapping(obj, "metadata"), "creationTimestamp")
    if created:
        try:
            datetime.fromisoformat(created)
        except ValueError:
            warnings.append(f"{what}: creationTimestamp {created!r} is not RFC 3339; taken as unknown")
            return ""
    return created


def is_gateway_route(obj: JSON) -> bool:
    """An HTTPRoute, GRPCRoute or TCPRoute of the Gateway API's group (anything else is not translated
    here)."""
    return text(obj, "kind") in GATEWAY_ROUTE_KINDS and text(obj, "apiVersion").startswith(
        GATEWAY_GROUP + "/"
    )


def convert_route(
    obj: JSON,
    services: Mapping[str, Service],
    *,
    waypoints: Collection[tuple[str, str]] = (),
    grants: ReferenceGrants = NO_GRANTS,
    cluster_domain: str,
    warnings: list[str],
) -> list[HttpRoute]:
    """The ``HttpRoute`` values of one HTTPRoute, GRPCRoute or TCPRoute: one per parent Service and port."""
    kind, ns, name = text(obj, "kind"), namespace_of(obj), name_of(obj)
    what = f"{kind} {ns}/{name}"
    if kind not in ROUTE_KINDS:
        return []
    if not is_gateway_route(obj):
        warnings.append(f"{what}: apiVersion {text(obj, 'apiVersion')!r} is not {GATEWAY_GROUP}; ignored")
        return []
    spec = mapping(obj, "spec")
    scope = _Scope(ns, services, waypoints, cluster_domain, warnings, kind, grants)
    parents = _parents(spec, scope, what)
    if not parents:
        return []
    rules = _rules(kind, spec, scope, what)
    created = _created(obj, what, warnings)
    return [
        HttpRoute(kind, name, ns, created, service_key, port, rules)
        for service_key in sorted(parents)
        for port in sorted(parents[service_key], key=lambda p: -1 if p is None else p)
    ]


def convert_routes(
    routes: Iterable[JSON],
    services: Mapping[str, Service],
    *,
    waypoints: Collection[tuple[str, str]] = (),
    grants: ReferenceGrants = NO_GRANTS,
    cluster_domain: str,
    warnings: list[str],
) -> dict[str, HttpRoute]:
    """Every route value by ``HttpRoute.key``; problems are appended to ``warnings``. ``services`` are
    the translated Services by key (parents and backends must exist there), ``waypoints`` the
    (namespace, name) of every waypoint Gateway, ``grants`` the ReferenceGrants (backends in other
    namespaces need one)."""
    out: dict[str, HttpRoute] = {}
    for obj in routes:
        for route in convert_route(
            obj,
            services,
            waypoints=waypoints,
            grants=grants,
            cluster_domain=cluster_domain,
            warnings=warnings,
        ):
            out[route.key] = route
    return out
