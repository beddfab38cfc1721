"""Wire ↔ model for the HttpRoute type (``rt/`` names): Gateway API routes and VirtualServices as
waypoints read them (:mod:`ambit.model.route`).

Decoding checks what a waypoint acts on: known kinds and match types, regular expressions that
compile, absolute paths, lower-case header names, status codes and gRPC statuses in range, positive
finite durations, fault percentages in 0..100 and one kind of abort, an RFC 3339 creation time; for
redirects, rewrites and mirrors: a redirect status of 301, 302, 303, 307 or 308, the scheme http or
https, host names that can stand in a URL, ports in 1..65535, a known port mode, absolute replacement
paths without ``?`` or ``#`` (a ReplacePrefixMatch may be empty), mirror percentages in 0..100; a
backend's subset, when set, is a non-empty name.
"""

from __future__ import annotations

from ambit.model.route import (
    GRPC_ROUTE,
    HTTP_ROUTE,
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    PATH_STRING_PREFIX,
    PORT_FROM_HOST,
    PORT_FROM_LISTENER,
    PORT_FROM_SCHEME,
    PREFIX_REWRITE,
    REDIRECT_SCHEMES,
    REDIRECT_STATUSES,
    REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH,
    TCP_ROUTE,
    VALUE_EXACT,
    VALUE_REGEX,
    VIRTUAL_SERVICE,
    BackendRef,
    FaultPolicy,
    HeaderMatch,
    HeaderModifier,
    HttpRoute,
    MirrorFilter,
    PathMatch,
    PathModifier,
    QueryMatch,
    RedirectFilter,
    RetryPolicy,
    RewriteFilter,
    RouteMatch,
    RouteRule,
    check_host,
)
from ambit.state.snapshot import resource_name
from ambit.xds.codec_fields import (
    MAX_GRPC_STATUS,
    MAX_STATUS,
    MIN_STATUS,
    XdsRejected,
    checked_port,
    created,
    encode_port,
    enum_value,
    key_of,
    lower_name,
    percent,
    regex,
    required,
    seconds,
    segment,
    uint32,
)
from ambit.xds.pb.route.v1 import route_pb2

MIN_ABORT_STATUS = 200  # Envoy's FaultAbort.http_status: [200, 600)


_ROUTE_KIND_TO_PB: dict[str, route_pb2.RouteKind] = {
    HTTP_ROUTE: route_pb2.HTTP_ROUTE,
    GRPC_ROUTE: route_pb2.GRPC_ROUTE,
    VIRTUAL_SERVICE: route_pb2.VIRTUAL_SERVICE,
    TCP_ROUTE: route_pb2.TCP_ROUTE,
}


_ROUTE_KIND_FROM_PB: dict[int, str] = {v: k for k, v in _ROUTE_KIND_TO_PB.items()}


_PATH_TO_PB: dict[str, route_pb2.PathMatchType] = {
    PATH_EXACT: route_pb2.PATH_EXACT,
    PATH_PREFIX: route_pb2.PATH_PREFIX,
    PATH_REGEX: route_pb2.PATH_REGULAR_EXPRESSION,
    PATH_STRING_PREFIX: route_pb2.PATH_STRING_PREFIX,
}


_PATH_FROM_PB: dict[int, str] = {v: k for k, v in _PATH_TO_PB.items()}


_VALUE_TO_PB: dict[str, route_pb2.ValueMatchType] = {
    VALUE_EXACT: route_pb2.VALUE_EXACT,
    VALUE_REGEX: route_pb2.VALUE_REGULAR_EXPRESSION,
}


_VALUE_FROM_PB: dict[int, str] = {v: k for k, v in _VALUE_TO_PB.items()}


_MODIFIER_TO_PB: dict[str, route_pb2.PathModifierType] = {
    REPLACE_FULL_PATH: route_pb2.REPLACE_FULL_PATH,
    REPLACE_PREFIX_MATCH: route_pb2.REPLACE_PREFIX_MATCH,
    PREFIX_REWRITE: route_pb2.PREFIX_REWRITE,
}


_MODIFIER_FROM_PB: dict[int, str] = {v: k for k, v in _MODIFIER_TO_PB.items()}


_PORT_MODE_TO_PB: dict[str, route_pb2.RedirectPort] = {
    PORT_FROM_LISTENER: route_pb2.REDIRECT_PORT_LISTENER,
    PORT_FROM_SCHEME: route_pb2.REDIRECT_PORT_SCHEME_DEFAULT,
    PORT_FROM_HOST: route_pb2.REDIRECT_PORT_REQUEST_HOST,
}


_PORT_MODE_FROM_PB: dict[int, str] = {v: k for k, v in _PORT_MODE_TO_PB.items()}


def _header_modifier_to_pb(modifier: HeaderModifier) -> route_pb2.HeaderModifier:
    return route_pb2.HeaderModifier(
        set=[route_pb2.Header(name=n, value=v) for n, v in modifier.set],
        add=[route_pb2.Header(name=n, value=v) for n, v in modifier.add],
        remove=list(modifier.remove),
    )


def _route_match_to_pb(match: RouteMatch) -> route_pb2.RouteMatch:
    pb = route_pb2.RouteMatch(
        headers=[
            route_pb2.ValueMatch(name=h.name, type=_VALUE_TO_PB[h.kind], value=h.value) for h in match.headers
        ],
        query=[
            route_pb2.ValueMatch(name=q.name, type=_VALUE_TO_PB[q.kind], value=q.value) for q in match.query
        ],
    )
    if match.path is not None:
        pb.path.CopyFrom(route_pb2.PathMatch(type=_PATH_TO_PB[match.path.kind], value=match.path.value))
    if match.method is not None:
        pb.method = match.method
    return pb


def _retry_to_pb(name: str, retry: RetryPolicy) -> route_pb2.RetryPolicy:
    pb = route_pb2.RetryPolicy(
        attempts=uint32(name, retry.attempts, "retry attempts"),
        codes=[uint32(name, c, "retry code") for c in retry.codes],
        retry_on_connect_failure=retry.retry_on_connect_failure,
        retry_on_refused_stream=retry.retry_on_refused_stream,
        retriable_grpc_statuses=[uint32(name, c, "gRPC status") for c in retry.retriable_grpc_statuses],
    )
    if retry.backoff is not None:
        pb.backoff = retry.backoff
    return pb


def _fault_to_pb(fault: FaultPolicy) -> route_pb2.FaultPolicy:
    pb = route_pb2.FaultPolicy(delay_percent=fault.delay_percent, abort_percent=fault.abort_percent)
    if fault.delay is not None:
        pb.delay = fault.delay
    if fault.abort_status is not None:
        pb.abort_status = fault.abort_status
    if fault.abort_grpc_status is not None:
        pb.abort_grpc_status = fault.abort_grpc_status
    return pb


def _backend_to_pb(name: str, backend: BackendRef) -> route_pb2.BackendRef:
    return route_pb2.BackendRef(
        service_key=backend.service_key,
        port=encode_port(name, backend.port, "backend port"),
        weight=uint32(name, backend.weight, "backend weight"),
        subset=backend.subset,
    )


def _path_modifier_to_pb(modifier: PathModifier) -> route_pb2.PathModifier:
    return route_pb2.PathModifier(type=_MODIFIER_TO_PB[modifier.kind], value=modifier.value)


def _redirect_to_pb(name: str, redirect: RedirectFilter) -> route_pb2.RedirectFilter:
    pb = route_pb2.RedirectFilter(
        status=uint32(name, redirect.status, "redirect status"),
        derive_port=_PORT_MODE_TO_PB[redirect.derive_port],
    )
    if redirect.scheme is not None:
        pb.scheme = redirect.scheme
    if redirect.hostname is not None:
        pb.hostname = redirect.hostname
    if redirect.port is not None:
        pb.port = encode_port(name, redirect.port, "redirect port")
    if redirect.path is not None:
        pb.path.CopyFrom(_path_modifier_to_pb(redirect.path))
    return pb


def _rewrite_to_pb(rewrite: RewriteFilter) -> route_pb2.RewriteFilter:
    pb = route_pb2.RewriteFilter()
    if rewrite.hostname is not None:
        pb.hostname = rewrite.hostname
    if rewrite.path is not None:
        pb.path.CopyFrom(_path_modifier_to_pb(rewrite.path))
    return pb


def _route_rule_to_pb(name: str, rule: RouteRule) -> route_pb2.RouteRule:
    pb = route_pb2.RouteRule(
        index=uint32(name, rule.index, "rule index"),
        matches=[_route_match_to_pb(m) for m in rule.matches],
        backends=[_backend_to_pb(name, b) for b in rule.backends],
        invalid_weight=uint32(name, rule.invalid_weight, "invalid backend weight"),
        mirrors=[
            route_pb2.MirrorFilter(backend=_backend_to_pb(name, m.backend), percent=m.percent)
            for m in rule.mirrors
        ],
    )
    if rule.request_headers is not None:
        pb.request_headers.CopyFrom(_header_modifier_to_pb(rule.request_headers))
    if rule.response_headers is not None:
        pb.response_headers.CopyFrom(_header_modifier_to_pb(rule.response_headers))
    if rule.request_timeout is not None:
        pb.request_timeout = rule.request_timeout
    if rule.backend_timeout is not None:
        pb.backend_timeout = rule.backend_timeout
    if rule.retry is not None:
        pb.retry.CopyFrom(_retry_to_pb(name, rule.retry))
    if rule.fault is not None:
        pb.fault.CopyFrom(_fault_to_pb(rule.fault))
    if rule.redirect is not None:
        pb.redirect.CopyFrom(_redirect_to_pb(name, rule.redirect))
    if rule.rewrite is not None:
        pb.rewrite.CopyFrom(_rewrite_to_pb(rule.rewrite))
    return pb


def route_to_pb(route: HttpRoute) -> route_pb2.HttpRoute:
    name = resource_name(route)
    pb = route_pb2.HttpRoute(
        kind=_ROUTE_KIND_TO_PB[route.kind],
        name=route.name,
        namespace=route.namespace,
        created=route.created,
        service_key=route.service_key,
        rules=[_route_rule_to_pb(name, rule) for rule in route.rules],
    )
    if route.port is not None:
        pb.port = encode_port(name, route.port, "parent port")
    return pb


def _path_match_from_pb(name: str, pb: route_pb2.PathMatch) -> PathMatch:
    kind = enum_value(name, _PATH_FROM_PB, pb.type, "path match type")
    if kind == PATH_REGEX:
        return PathMatch(kind, regex(name, "path regular expression", pb.value))
    if not pb.value.startswith("/"):
        raise XdsRejected(name, f"path {pb.value!r} is not absolute")
    return PathMatch(kind, pb.value)


def _value_match(name: str, pb: route_pb2.ValueMatch, what: str) -> tuple[str, str]:
    kind = enum_value(name, _VALUE_FROM_PB, pb.type, f"{what} match type")
    value = regex(name, f"{what} regular expression", pb.value) if kind == VALUE_REGEX else pb.value
    return kind, value


def _route_match_from_pb(name: str, pb: route_pb2.RouteMatch) -> RouteMatch:
    headers = []
    for h in pb.headers:
        kind, value = _value_match(name, h, "header")
        headers.append(HeaderMatch(lower_name(name, "header match name", h.name), kind, value))
    query = []
    for q in pb.query:
        kind, value = _value_match(name, q, "query parameter")
        query.append(QueryMatch(required(name, "query parameter name", q.name), kind, value))
    return RouteMatch(
        path=_path_match_from_pb(name, pb.path) if pb.HasField("path") else None,
        method=required(name, "method", pb.method) if pb.HasField("method") else None,
        headers=tuple(headers),
        query=tuple(query),
    )


def _header_modifier_from_pb(name: str, pb: route_pb2.HeaderModifier) -> HeaderModifier:
    def pairs(items: list[route_pb2.Header]) -> tuple[tuple[str, str], ...]:
        return tuple((lower_name(name, "header name", h.name), h.value) for h in items)

    return HeaderModifier(
        set=pairs(list(pb.set)),
        add=pairs(list(pb.add)),
        remove=tuple(lower_name(name, "header name", h) for h in pb.remove),
    )


def _retry_from_pb(name: str, pb: route_pb2.RetryPolicy) -> RetryPolicy:
    for code in pb.codes:
        if not MIN_STATUS <= code <= MAX_STATUS:
            raise XdsRejected(name, f"retry code {code} is out of range {MIN_STATUS}..{MAX_STATUS}")
    for status in pb.retriable_grpc_statuses:
        if status > MAX_GRPC_STATUS:
            raise XdsRejected(name, f"gRPC status {status} is out of range 0..{MAX_GRPC_STATUS}")
    return RetryPolicy(
        attempts=pb.attempts,
        codes=tuple(pb.codes),
        backoff=seconds(name, "retry backoff", pb.backoff) if pb.HasField("backoff") else None,
        retry_on_connect_failure=pb.retry_on_connect_failure,
        retry_on_refused_stream=pb.retry_on_refused_stream,
        retriable_grpc_statuses=tuple(pb.retriable_grpc_statuses),
    )


def _fault_from_pb(name: str, pb: route_pb2.FaultPolicy) -> FaultPolicy:
    status = pb.abort_status if pb.HasField("abort_status") else None
    grpc_status = pb.abort_grpc_status if pb.HasField("abort_grpc_status") else None
    if status is not None and not MIN_ABORT_STATUS <= status <= MAX_STATUS:
        raise XdsRejected(
            name, f"fault abort status {status} is out of range {MIN_ABORT_STATUS}..{MAX_STATUS}"
        )
    if grpc_status is not None and grpc_status > MAX_GRPC_STATUS:
        raise XdsRejected(name, f"fault abort gRPC status {grpc_status} is out of range 0..{MAX_GRPC_STATUS}")
    if status is not None and grpc_status is not None:
        raise XdsRejected(name, "a fault aborts with an HTTP status or a gRPC status, not both")
    return FaultPolicy(
        delay=seconds(name, "fault delay", pb.delay) if pb.HasField("delay") else None,
        delay_percent=percent(name, "fault delay percentage", pb.delay_percent),
        abort_status=status,
        abort_grpc_status=grpc_status,
        abort_percent=percent(name, "fault abort percentage", pb.abort_percent),
    )


def _backend_from_pb(name: str, pb: route_pb2.BackendRef) -> BackendRef:
    return BackendRef(
        service_key=key_of(name, "backend service key", pb.service_key),
        port=checked_port(name, pb.port, "backend port", allow_zero=False),
        weight=pb.weight,
        subset=required(name, "backend subset", pb.subset) if pb.HasField("subset") else None,
    )


def _path_modifier_from_pb(name: str, pb: route_pb2.PathModifier, what: str) -> PathModifier:
    kind = enum_value(name, _MODIFIER_FROM_PB, pb.type, f"{what} path modifier type")
    try:
        return PathModifier(kind, pb.value)
    except ValueError as exc:
        raise XdsRejected(name, f"{what} {exc}") from None


def _host(name: str, what: str, value: str) -> str:
    try:
        return check_host(what, value)
    except ValueError as exc:
        raise XdsRejected(name, str(exc)) from None


def _redirect_from_pb(name: str, pb: route_pb2.RedirectFilter) -> RedirectFilter:
    if pb.status not in REDIRECT_STATUSES:
        raise XdsRejected(name, f"redirect status {pb.status} is not one of {sorted(REDIRECT_STATUSES)}")
    if pb.HasField("scheme") and pb.scheme not in REDIRECT_SCHEMES:
        raise XdsRejected(name, f"redirect scheme {pb.scheme!r} is not one of {sorted(REDIRECT_SCHEMES)}")
    return RedirectFilter(
        status=pb.status,
        scheme=pb.scheme if pb.HasField("scheme") else None,
        hostname=_host(name, "redirect hostname", pb.hostname) if pb.HasField("hostname") else None,
        port=checked_port(name, pb.port, "redirect port", allow_zero=False) if pb.HasField("port") else None,
        derive_port=enum_value(name, _PORT_MODE_FROM_PB, pb.derive_port, "redirect port mode"),
        path=_path_modifier_from_pb(name, pb.path, "redirect") if pb.HasField("path") else None,
    )


def _rewrite_from_pb(name: str, pb: route_pb2.RewriteFilter) -> RewriteFilter:
    return RewriteFilter(
        hostname=_host(name, "rewrite hostname", pb.hostname) if pb.HasField("hostname") else None,
        path=_path_modifier_from_pb(name, pb.path, "rewrite") if pb.HasField("path") else None,
    )


def _mirror_from_pb(name: str, pb: route_pb2.MirrorFilter) -> MirrorFilter:
    if not pb.HasField("backend"):
        raise XdsRejected(name, "a mirror has no backend")
    return MirrorFilter(
        backend=_backend_from_pb(name, pb.backend),
        percent=percent(name, "mirror percentage", pb.percent),
    )


def _route_rule_from_pb(name: str, pb: route_pb2.RouteRule) -> RouteRule:
    return RouteRule(
        index=pb.index,
        matches=tuple(_route_match_from_pb(name, m) for m in pb.matches),
        backends=tuple(_backend_from_pb(name, b) for b in pb.backends),
        request_headers=(
            _header_modifier_from_pb(name, pb.request_headers) if pb.HasField("request_headers") else None
        ),
        response_headers=(
            _header_modifier_from_pb(name, pb.response_headers) if pb.HasField("response_headers") else None
        ),
        request_timeout=(
            seconds(name, "request timeout", pb.request_timeout) if pb.HasField("request_timeout") else None
        ),
        backend_timeout=(
            seconds(name, "backend timeout", pb.backend_timeout) if pb.HasField("backend_timeout") else None
        ),
        retry=_retry_from_pb(name, pb.retry) if pb.HasField("retry") else None,
        invalid_weight=pb.invalid_weight,
        fault=_fault_from_pb(name, pb.fault) if pb.HasField("fault") else None,
        redirect=_redirect_from_pb(name, pb.redirect) if pb.HasField("redirect") else None,
        rewrite=_rewrite_from_pb(name, pb.rewrite) if pb.HasField("rewrite") else None,
        mirrors=tuple(_mirror_from_pb(name, m) for m in pb.mirrors),
    )


def route_from_pb(name: str, pb: route_pb2.HttpRoute) -> HttpRoute:
    kind = enum_value(name, _ROUTE_KIND_FROM_PB, pb.kind, "route kind")
    return HttpRoute(
        kind=kind,
        name=segment(name, "route name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        created=created(name, pb.created),
        service_key=key_of(name, "parent service key", pb.service_key),
        port=checked_port(name, pb.port, "parent port", allow_zero=False) if pb.HasField("port") else None,
        rules=tuple(_route_rule_from_pb(name, rule) for rule in pb.rules),
    )
