"""Routes as waypoints see them: Gateway API HTTPRoute and GRPCRoute attached to a Service (GAMMA), and
Istio's VirtualService on a Service host.

Data only; translation is ``ambit.control.translate_routes`` (Gateway API) and
``ambit.control.translate_virtualservice`` (VirtualService), matching and backend choice
``ambit.routing.http_routes``. Stdlib only. Meaning, as in the Gateway API:

* an :class:`HttpRoute` is one route object (``kind`` ``HTTPRoute``, ``GRPCRoute`` or
  ``VirtualService``) as it applies to ONE parent Service (``service_key``, ``Service.key`` =
  ``<namespace>/<hostname>``), on the parentRef's ``port`` or, when ``port`` is None, on every port
  of that Service. A route with several Service parents becomes several values;
* a route's rules (:class:`RouteRule`) keep their position in ``spec.rules`` (``index``); a rule applies to
  a request when ANY of its matches (:class:`RouteMatch`) does (translation always gives a rule at least
  one match: the Gateway API default is one ``PathPrefix /`` match);
* a :class:`RouteMatch` matches when EVERY condition it holds does: the path (None: any path; only
  GRPCRoute matches without a method have none), the method (None: any), every header and every
  query parameter match;
* ``backends`` are the rule's valid backendRefs with a weight above zero; ``invalid_weight`` is the
  total weight of the backendRefs translation had to drop (another namespace, no port, no such
  Service): that share of requests answers 500, as the Gateway API requires for invalid backends.
  A rule with no backend weight at all answers 500 too;
* timeouts are in seconds; None means no timeout (unset, or the Gateway API's ``0s``);
  ``request_timeout`` bounds the whole request including retries, ``backend_timeout`` each attempt;
* ``retry`` None means the mesh's default policy (``ambit.routing.http_routes.ISTIO_DEFAULT_RETRY``);
* ``fault`` (VirtualService only: Istio's ``http[].fault``) delays and/or aborts a share of the
  requests the rule takes, before they reach a backend (:class:`FaultPolicy`);
* a ``VirtualService`` route's rules are ordered (the first rule that matches wins, as Istio's
  ``http[]``), not ranked by the Gateway API precedence; ``ambit.routing.http_routes`` says how.

Keys: :attr:`HttpRoute.key` is unique per value: ``<namespace>/<kind>/<name>/<service_key>``, plus
``:<port>`` when the parentRef names a port (one route object may have several parents, and an
HTTPRoute and a GRPCRoute may share a name). :attr:`HttpRoute.route_key` is the object's
``<namespace>/<name>`` (the precedence tie-break).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Kinds are the Gateway API's spellings, held as plain strings (checked on construction) so the values
# go through ``ambit.model.jsonable`` like every other model value.
PATH_EXACT = "Exact"
PATH_PREFIX = "PathPrefix"
PATH_REGEX = "RegularExpression"
VALUE_EXACT = "Exact"
VALUE_REGEX = "RegularExpression"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
VIRTUAL_SERVICE = "VirtualService"

PATH_KINDS: frozenset[str] = frozenset({PATH_EXACT, PATH_PREFIX, PATH_REGEX})
VALUE_KINDS: frozenset[str] = frozenset({VALUE_EXACT, VALUE_REGEX})
ROUTE_KINDS: frozenset[str] = frozenset({HTTP_ROUTE, GRPC_ROUTE, VIRTUAL_SERVICE})
MAX_GRPC_STATUS = 16  # gRPC status codes are 0 (OK) .. 16 (UNAUTHENTICATED)


@dataclass(frozen=True, slots=True)
class PathMatch:
    """``Exact``: the whole path; ``PathPrefix``: whole path segments (``/foo`` matches ``/foo`` and
    ``/foo/bar``, not ``/foobar``; kept without a trailing ``/`` except ``/`` itself);
    ``RegularExpression``: the whole path (Python ``re.fullmatch``)."""

    kind: str  # PATH_EXACT | PATH_PREFIX | PATH_REGEX
    value: str

    def __post_init__(self) -> None:
        if self.kind not in PATH_KINDS:
            raise ValueError(f"path match kind {self.kind!r} is not one of {sorted(PATH_KINDS)}")


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A request header (``name`` in lower case) whose value is ``value`` or fully matches it."""

    name: str
    kind: str  # VALUE_EXACT | VALUE_REGEX
    value: str

    def __post_init__(self) -> None:
        if self.kind not in VALUE_KINDS:
            raise ValueError(f"header match kind {self.kind!r} is not one of {sorted(VALUE_KINDS)}")


@dataclass(frozen=True, slots=True)
class QueryMatch:
    """A query parameter (``name`` case-sensitive) whose (first, percent-decoded) value matches."""

    name: str
    kind: str  # VALUE_EXACT | VALUE_REGEX
    value: str

    def __post_init__(self) -> None:
        if self.kind not in VALUE_KINDS:
            raise ValueError(f"query match kind {self.kind!r} is not one of {sorted(VALUE_KINDS)}")


@dataclass(frozen=True, slots=True)
class RouteMatch:
    path: PathMatch | None = None
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class BackendRef:
    """A backend Service (``service_key`` = ``Service.key``) on ``port``, chosen in proportion to weight."""

    service_key: str
    port: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """Gateway API's header filter: names in lower case, each at most once per list."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a request is retried (Envoy's ``retry_policy`` as Istio writes it).

    ``attempts`` retries at most (0: never retry); ``codes`` the response statuses retried
    (``retriable-status-codes``); ``backoff`` the base interval in seconds (None: Envoy's 25 ms).
    The conditions Istio always adds: ``retry_on_connect_failure`` (``connect-failure``: no
    connection, or the connect timed out), ``retry_on_refused_stream`` (``refused-stream``: the
    upstream refused the HTTP/2 stream), ``retriable_grpc_statuses`` (``cancelled`` = 1 and
    ``unavailable`` = 14, read from the response's ``grpc-status``). None of these can have reached
    the application, except the listed codes and gRPC statuses."""

    attempts: int
    codes: tuple[int, ...] = ()
    backoff: float | None = None
    retry_on_connect_failure: bool = True
    retry_on_refused_stream: bool = True
    retriable_grpc_statuses: tuple[int, ...] = (1, 14)


@dataclass(frozen=True, slots=True)
class FaultPolicy:
    """Istio's ``HTTPFaultInjection`` as Envoy's fault filter applies it, drawn per request.

    ``delay``: seconds to hold the request before it goes on (None: no delay), injected into
    ``delay_percent`` % of requests; ``abort_status`` (an HTTP status) or ``abort_grpc_status`` (a
    gRPC status code, answered as a trailers-only gRPC response): the answer given instead of
    forwarding, to ``abort_percent`` % of requests. The delay and the abort are drawn independently;
    a request drawn for both is delayed, then aborted. Percentages are 0..100 (fractions allowed)."""

    delay: float | None = None
    delay_percent: float = 0.0
    abort_status: int | None = None
    abort_grpc_status: int | None = None
    abort_percent: float = 0.0

    def __post_init__(self) -> None:
        if self.delay is not None and not (math.isfinite(self.delay) and self.delay > 0):
            raise ValueError(f"fault delay {self.delay!r} is not a positive number of seconds")
        for what, percent in (("delay", self.delay_percent), ("abort", self.abort_percent)):
            if not 0.0 <= percent <= 100.0:  # also refuses NaN
                raise ValueError(f"fault {what} percentage {percent!r} is not in 0..100")
        if self.abort_status is not None and self.abort_grpc_status is not None:
            raise ValueError("a fault aborts with an HTTP status or a gRPC status, not both")
        if self.abort_status is not None and not 200 <= self.abort_status <= 599:
            raise ValueError(f"fault abort status {self.abort_status} is not in 200..599")
        if self.abort_grpc_status is not None and not 0 <= self.abort_grpc_status <= MAX_GRPC_STATUS:
            raise ValueError(
                f"fault abort gRPC status {self.abort_grpc_status} is not in 0..{MAX_GRPC_STATUS}"
            )

    @property
    def aborts(self) -> bool:
        """Whether the policy has an abort (HTTP or gRPC) at all."""
        return self.abort_status is not None or self.abort_grpc_status is not None


@dataclass(frozen=True, slots=True)
class RouteRule:
    index: int  # position in spec.rules
    matches: tuple[RouteMatch, ...]
    backends: tuple[BackendRef, ...]
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    request_timeout: float | None = None
    backend_timeout: float | None = None
    retry: RetryPolicy | None = None
    invalid_weight: int = 0  # weight of dropped (invalid) backendRefs: that share answers 500
    fault: FaultPolicy | None = None  # VirtualService fault injection; None: none


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTPRoute, GRPCRoute or VirtualService as it applies to one parent Service (see the module
    docstring)."""

    kind: str  # HTTP_ROUTE | GRPC_ROUTE | VIRTUAL_SERVICE
    name: str
    namespace: str
    created: str  # metadata.creationTimestamp (RFC 3339), "" when unknown
    service_key: str  # the parent Service's key, <namespace>/<hostname>
    port: int | None  # the parentRef's port; None: every port of the Service
    rules: tuple[RouteRule, ...]

    def __post_init__(self) -> None:
        if self.kind not in ROUTE_KINDS:
            raise ValueError(f"route kind {self.kind!r} is not one of {sorted(ROUTE_KINDS)}")

    @property
    def route_key(self) -> str:
        """The route object: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"

    @property
    def key(self) -> str:
        """Unique per value: ``<namespace>/<kind>/<name>/<service_key>[:<port>]``."""
        key = f"{self.namespace}/{self.kind}/{self.name}/{self.service_key}"
        return key if self.port is None else f"{key}:{self.port}"
