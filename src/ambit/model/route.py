"""Routes as waypoints see them: Gateway API HTTPRoute, GRPCRoute and TCPRoute attached to a Service
(GAMMA), and Istio's VirtualService on a Service host.

Data only; translation is ``ambit.control.translate_routes`` (Gateway API) and
``ambit.control.translate_virtualservice`` (VirtualService), matching and backend choice
``ambit.routing.http_routes``. Stdlib only. Meaning, as in the Gateway API:

* an :class:`HttpRoute` is one route object (``kind`` ``HTTPRoute``, ``GRPCRoute``, ``TCPRoute`` or
  ``VirtualService``) as it applies to ONE parent Service (``service_key``, ``Service.key`` =
  ``<namespace>/<hostname>``), on the parentRef's ``port`` or, when ``port`` is None, on every port
  of that Service. A route with several Service parents becomes several values;
* a route's rules (:class:`RouteRule`) keep their position in ``spec.rules`` (``index``); a rule applies to
  a request when ANY of its matches (:class:`RouteMatch`) does (translation always gives a rule at least
  one match: the Gateway API default is one ``PathPrefix /`` match);
* a :class:`RouteMatch` matches when EVERY condition it holds does: the path (None: any path; only
  GRPCRoute matches without a method, and TCPRoute rules, have none; ``StringPrefix`` is Istio's
  plain string prefix, only VirtualServices use it), the method (None: any), every header and every
  query parameter match;
* ``backends`` are the rule's valid backendRefs with a weight above zero; ``invalid_weight`` is the
  total weight of the backendRefs translation had to drop (another namespace, no port, no such
  Service): that share of requests answers 500, as the Gateway API requires for invalid backends.
  A rule with no backend weight at all answers 500 too. A VirtualService backend may name a
  DestinationRule ``subset`` of its Service (:class:`BackendRef`);
* timeouts are in seconds; None means no timeout (unset, or the Gateway API's ``0s``);
  ``request_timeout`` bounds the whole request including retries, ``backend_timeout`` each attempt;
* ``retry`` None means the mesh's default policy (``ambit.routing.http_routes.ISTIO_DEFAULT_RETRY``);
* ``fault`` (VirtualService only: Istio's ``http[].fault``) delays and/or aborts a share of the
  requests the rule takes, before they reach a backend (:class:`FaultPolicy`);
* a ``VirtualService`` route's rules are ordered (the first rule that matches wins, as Istio's
  ``http[]``), not ranked by the Gateway API precedence; ``ambit.routing.http_routes`` says how;
* ``redirect`` (:class:`RedirectFilter`: Gateway API ``RequestRedirect``, Istio ``http[].redirect``):
  the rule answers the request itself with a redirection; its backends, rewrite and mirrors are not
  used. ``rewrite`` (:class:`RewriteFilter`: ``URLRewrite``, Istio ``http[].rewrite``) changes the
  path and/or the host of the request sent to the backend. ``mirrors`` (:class:`MirrorFilter`:
  ``RequestMirror``, Istio ``mirror`` / ``mirrors``) each send a copy of a share of the requests to
  another backend, whose answers are ignored. ``ambit.routing.route_filters`` applies them;
* a ``TCPRoute`` (Gateway API v1alpha2, GAMMA) holds rules whose only match is ``RouteMatch()`` (a
  TCPRoute has no match) and whose weighted backends take the TCP connections to the parent Service
  port; it is never used for HTTP (``ambit.routing.http_routes.route_table`` leaves it out,
  ``tcp_backends`` picks it).

Keys: :attr:`HttpRoute.key` is unique per value: ``<namespace>/<kind>/<name>/<service_key>``, plus
``:<port>`` when the parentRef names a port (one route object may have several parents, and an
HTTPRoute and a GRPCRoute may share a name). :attr:`HttpRoute.route_key` is the object's
``<namespace>/<name>`` (the precedence tie-break).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Kinds are the Gateway API's spellings, held as plain strings (checked on construction) so the values
# go through ``ambit.model.jsonable`` like every other model value.
PATH_EXACT = "Exact"
PATH_PREFIX = "PathPrefix"
PATH_REGEX = "RegularExpression"
PATH_STRING_PREFIX = "StringPrefix"  # Istio's uri ``prefix``: a plain string prefix (/foo matches /foobar)
VALUE_EXACT = "Exact"
VALUE_REGEX = "RegularExpression"
HTTP_ROUTE = "HTTPRoute"
GRPC_ROUTE = "GRPCRoute"
VIRTUAL_SERVICE = "VirtualService"
TCP_ROUTE = "TCPRoute"

PATH_KINDS: frozenset[str] = frozenset({PATH_EXACT, PATH_PREFIX, PATH_REGEX, PATH_STRING_PREFIX})
VALUE_KINDS: frozenset[str] = frozenset({VALUE_EXACT, VALUE_REGEX})
ROUTE_KINDS: frozenset[str] = frozenset({HTTP_ROUTE, GRPC_ROUTE, VIRTUAL_SERVICE, TCP_ROUTE})
MAX_GRPC_STATUS = 16  # gRPC status codes are 0 (OK) .. 16 (UNAUTHENTICATED)
MAX_PORT = 65535

# Path modifiers of redirects and rewrites.
REPLACE_FULL_PATH = "ReplaceFullPath"  # the whole path
REPLACE_PREFIX_MATCH = "ReplacePrefixMatch"  # Gateway API: the matched PathPrefix, whole segments
PREFIX_REWRITE = "PrefixRewrite"  # Envoy's prefix_rewrite (VirtualService): the matched characters
PATH_MODIFIER_KINDS: frozenset[str] = frozenset({REPLACE_FULL_PATH, REPLACE_PREFIX_MATCH, PREFIX_REWRITE})

# Redirects: the statuses (Gateway API 301 and 302 core, 303, 307 and 308 extended; Istio all five),
# the schemes, and where the port of the Location comes from when the redirect names none.
REDIRECT_STATUSES: frozenset[int] = frozenset({301, 302, 303, 307, 308})
REDIRECT_SCHEMES: frozenset[str] = frozenset({"http", "https"})
PORT_FROM_LISTENER = "ListenerPort"  # the port the request addressed (the Service port)
PORT_FROM_SCHEME = "SchemeDefault"  # the Location's scheme's well-known port (80, 443)
PORT_FROM_HOST = "RequestHost"  # the port in the host the Location keeps (Envoy's default)
REDIRECT_PORT_MODES: frozenset[str] = frozenset({PORT_FROM_LISTENER, PORT_FROM_SCHEME, PORT_FROM_HOST})

_BAD_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\U0010ffff?#]")  # never in a path we write (ASCII only)
_BAD_HOST_CHARS = re.compile(r"[\x00-\x20\x7f-\U0010ffff/?#@\\]")  # ASCII only: IDNs come punycoded


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
    """A backend Service (``service_key`` = ``Service.key``) on ``port``, chosen in proportion to weight.

    ``subset`` (VirtualService destinations only): a DestinationRule subset of that Service; only its
    workloads are candidates (``ambit.routing.subsets.subset_members``). A subset no DestinationRule
    defines is kept as written: the waypoint answers 503 ``NC`` (Istio sends such a request to a cluster
    that does not exist)."""

    service_key: str
    port: int
    weight: int = 1
    subset: str | None = None

    def __post_init__(self) -> None:
        if self.subset is not None and not self.subset:
            raise ValueError("a backend subset is None or a non-empty name")


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


def check_host(what: str, host: str) -> str:
    """``host`` if it can stand as the host (and optional port) of a URL; ValueError otherwise."""
    if not host or _BAD_HOST_CHARS.search(host):
        raise ValueError(f"{what} {host!r} is not a host name")
    return host


@dataclass(frozen=True, slots=True)
class PathModifier:
    """How a redirect or a rewrite changes the request path (the query is always kept).

    ``ReplaceFullPath``: the path becomes ``value``. ``ReplacePrefixMatch`` (Gateway API): the part
    the rule's ``PathPrefix`` match matched, whole segments, becomes ``value`` (``/foo`` replaced by
    ``/xyz`` turns ``/foo/bar`` into ``/xyz/bar``; by ``""`` or ``/`` into ``/bar``); ``value`` may be
    empty. ``PrefixRewrite`` (Envoy's ``prefix_rewrite``, as Istio's VirtualService uses it): the
    characters a prefix match matched become ``value`` (``/foo`` replaced by ``/`` turns
    ``/foo/bar`` into ``//bar``); with no path condition the leading ``/`` (Istio's prefix ``/``),
    with an exact or regular-expression match the whole path.
    ``ambit.routing.route_filters.rewrite_path`` applies it."""

    kind: str  # REPLACE_FULL_PATH | REPLACE_PREFIX_MATCH | PREFIX_REWRITE
    value: str

    def __post_init__(self) -> None:
        if self.kind not in PATH_MODIFIER_KINDS:
            raise ValueError(f"path modifier kind {self.kind!r} is not one of {sorted(PATH_MODIFIER_KINDS)}")
        if _BAD_URL_CHARS.search(self.value):
            raise ValueError(
                f"path {self.value!r} contains a space, a control or non-ASCII character, '?' or '#'"
            )
        empty_allowed = self.kind == REPLACE_PREFIX_MATCH
        if not self.value.startswith("/") and not (empty_allowed and not self.value):
            raise ValueError(f"path {self.value!r} is not absolute")


@dataclass(frozen=True, slots=True)
class RedirectFilter:
    """Answer the request with a redirection to a URL built from the request's (``ambit.routing.
    route_filters.redirect_location``): ``scheme`` (None: the request's), ``hostname`` (None: the
    request's host, without its port), ``path`` (None: the request's path), the query as sent, and
    the port: ``port`` when set, else as ``derive_port`` says (``ListenerPort``: the port the request
    addressed; ``SchemeDefault``: 80 for http, 443 for https; ``RequestHost``: the port written in
    the host the Location keeps, if any). A port that is the scheme's default is never written.
    ``status``: 301, 302, 303, 307 or 308 (the Gateway API's default is 302, Istio's 301)."""

    status: int = 302
    scheme: str | None = None
    hostname: str | None = None
    port: int | None = None
    derive_port: str = PORT_FROM_LISTENER
    path: PathModifier | None = None

    def __post_init__(self) -> None:
        if self.status not in REDIRECT_STATUSES:
            raise ValueError(f"redirect status {self.status} is not one of {sorted(REDIRECT_STATUSES)}")
        if self.scheme is not None and self.scheme not in REDIRECT_SCHEMES:
            raise ValueError(f"redirect scheme {self.scheme!r} is not one of {sorted(REDIRECT_SCHEMES)}")
        if self.hostname is not None:
            check_host("redirect hostname", self.hostname)
        if self.port is not None and not 1 <= self.port <= MAX_PORT:
            raise ValueError(f"redirect port {self.port} is not in 1..{MAX_PORT}")
        if self.derive_port not in REDIRECT_PORT_MODES:
            modes = sorted(REDIRECT_PORT_MODES)
            raise ValueError(f"redirect port mode {self.derive_port!r} is not one of {modes}")


@dataclass(frozen=True, slots=True)
class RewriteFilter:
    """Change the request before it goes to the backend: ``hostname`` replaces the whole ``Host`` /
    ``:authority`` (None: kept), ``path`` the path (None: kept; the query is always kept)."""

    hostname: str | None = None
    path: PathModifier | None = None

    def __post_init__(self) -> None:
        if self.hostname is not None:
            check_host("rewrite hostname", self.hostname)


@dataclass(frozen=True, slots=True)
class MirrorFilter:
    """Send a copy of ``percent`` % of the requests (0..100, fractions allowed) to ``backend`` (its
    ``weight`` is not used); its answers are ignored, the client sees only the primary's."""

    backend: BackendRef
    percent: float = 100.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.percent <= 100.0:  # also refuses NaN
            raise ValueError(f"mirror percentage {self.percent!r} is not in 0..100")


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
    redirect: RedirectFilter | None = None  # answer with a redirection (backends not used)
    rewrite: RewriteFilter | None = None  # change the path / host before sending
    mirrors: tuple[MirrorFilter, ...] = ()  # copies of a share of the requests, answers ignored


@dataclass(frozen=True, slots=True)
class HttpRoute:
    """One HTTPRoute, GRPCRoute, VirtualService or TCPRoute as it applies to one parent Service (see the
    module docstring)."""

    kind: str  # HTTP_ROUTE | GRPC_ROUTE | VIRTUAL_SERVICE | TCP_ROUTE
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
