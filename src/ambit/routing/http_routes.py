"""Route selection for a waypoint (GAMMA and VirtualService): which rule a request takes, which backend,
retries, injected faults.

Pure: the caller gives the routes of the Service a request addresses (``Snapshot.routes_for``), the
request's method, normalised path, raw query and headers; randomness is injected (``rng``).

**The table** (:func:`route_table`): the routes that apply to one Service port (``HttpRoute.port``
equal to it, or None: every port), flattened into one entry per (route, rule, match) and sorted by
the Gateway API's precedence (HTTPRoute spec, "Precedence"), the first entry that matches wins:

1. the path: ``Exact`` before ``PathPrefix`` before ``RegularExpression`` before no path condition
   (only a GRPCRoute match without a method has none); within a kind, the longer value first (a
   longer prefix by characters; for a regular expression the longer pattern);
2. a match with a method before one without;
3. more header matches first; 4. more query parameter matches first;
5. then across routes: the oldest ``creationTimestamp`` first (an unknown one counts as oldest, as
   Istio's zero time does), then ``{namespace}/{name}`` alphabetically (then the kind, so the order is
   total); within a route the rule order, then the match order within the rule.

**VirtualService routes** (kind ``VirtualService``) are not ranked by that precedence: Istio applies
a VirtualService's ``http[]`` rules in order, the first that matches wins (istio/api
``networking/v1alpha3/virtual_service.proto``, ``VirtualService.http``: "The first rule matching an
incoming request is used"). Their entries come first in the table, in this order: the oldest
VirtualService first (Istio's waypoint merges several VirtualServices of one host since istio/istio#59484,
oldest first), then ``{namespace}/{name}``, then the rule order, then the match order. So every
VirtualService entry of a Service port ranks before every Gateway API entry of it. Translation never
sends both for one Service (``ambit.control.translate_virtualservice``: a Service with a
VirtualService has its HTTPRoutes and GRPCRoutes left out), so this only fixes what a waypoint does with
a mixture it should not get.

Where a ``RegularExpression`` path ranks is left to implementations by the spec. ambit ranks it as
Istio does: ``pilot/pkg/config/kube/gateway/conversion.go`` (istio/istio at 86c9f01f, ``sortHTTPRoutes``
with ``getURIRank``: "Exact > Prefix > Regex", a missing URI lowest, then ``getURILength``, which counts
a regex's characters too). Istio sorts the per-match routes of one host with a stable sort after
ordering the route objects by creation time, namespace and name (``sortRoutesByCreationTime``), so
the tie-breaks are the same.

**Matching** (:meth:`RouteTable.select`): a match matches when all its conditions do. ``Exact`` path:
the whole path; ``PathPrefix``: whole segments (``/foo`` matches ``/foo``, ``/foo/`` and ``/foo/bar``,
not ``/foobar``; ``/`` matches every path); ``RegularExpression``: the whole path (``re.fullmatch``);
``StringPrefix`` (Istio's uri ``prefix``, VirtualService only): the path starts with it (``/foo``
matches ``/foobar``).
The method exactly. A header: its values joined with ``,`` (Envoy's reading of repeated headers) equal
to, or fully matching, the value; an absent header never matches. A query parameter: the first
occurrence, percent-decoded (``+`` stays ``+``), compared the same way; an absent one never matches.
A match whose regular expression does not compile never matches (fail closed; the control plane
refuses such routes before they get here). None from ``select``: no route matches — Envoy answers
404 (``NR``) then. :class:`Selected` names the match that matched too: a redirect's or rewrite's
prefix replacement needs its path condition (``ambit.routing.route_filters``).

**TCPRoute** routes are never part of a table; :func:`tcp_backends` gives the rule whose weighted
backends take a TCP connection to a Service port (its docstring says how).

**Backends** (:func:`pick_backend`): weighted random over the rule's backends with a weight above
zero; the rule's ``invalid_weight`` is a share of requests that gets no backend (500, as the Gateway
API requires for invalid backendRefs); None when there is no backend to pick (500 too).

**Retries**: :data:`ISTIO_DEFAULT_RETRY` is what Istio applies to a route without a retry policy
(``pilot/pkg/networking/core/route/retry/retry.go``, ``DefaultPolicy``: ``NumRetries`` 2,
``RetryOn`` ``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes``,
``RetriableStatusCodes`` 503 only ``if !features.Exclude503FromDefaultRetries``, a flag
(``EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY``, ``pilot/pkg/features/pilot.go``) that defaults to true
since Istio 1.24.0: "Fixed default retry policy to exclude retries on 503 which is potentially unsafe
for idempotent requests" (istio.io, news/releases/1.24.x/announcing-1.24/change-notes, Traffic
Management; istio/istio#50506). So no status code is retried by default. Istio's default also
prefers hosts not tried yet (``previous_hosts``, up to 5 host selections): a retry should go to
another endpoint when there is one. :func:`is_retriable` says whether one failed attempt may be
retried; :func:`retry_backoff` is Envoy's jittered exponential backoff.

**Faults** (:func:`fault_action`): a rule's :class:`~ambit.model.route.FaultPolicy` decides per request,
as Envoy's fault filter (``envoy.filters.http.fault``) does: whether to delay (with probability
``delay_percent`` %) and, independently, whether to abort (``abort_percent`` %). The waypoint sleeps the
delay, then answers the abort instead of forwarding (``ambit.waypoint.router``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import unquote

from ambit.model.route import (
    PATH_EXACT,
    PATH_PREFIX,
    PATH_STRING_PREFIX,
    TCP_ROUTE,
    VALUE_EXACT,
    VIRTUAL_SERVICE,
    BackendRef,
    FaultPolicy,
    HttpRoute,
    PathMatch,
    RetryPolicy,
    RouteMatch,
    RouteRule,
)

__all__ = [
    "DEFAULT_BACKOFF_BASE",
    "ISTIO_DEFAULT_RETRY",
    "RouteEntry",
    "RouteRequest",
    "RouteTable",
    "Selected",
    "fault_action",
    "is_retriable",
    "pick_backend",
    "retry_backoff",
    "retry_policy",
    "route_table",
    "tcp_backends",
]

# Istio's DefaultPolicy since 1.24: 2 retries on connect-failure, refused-stream, gRPC unavailable and
# cancelled; no status code (503 only with EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY=false). See above.
ISTIO_DEFAULT_RETRY = RetryPolicy(attempts=2, codes=(), backoff=None)
DEFAULT_BACKOFF_BASE = 0.025  # Envoy's retry base interval when none is set (seconds)
_BACKOFF_MAX_FACTOR = 10  # Envoy: max_interval defaults to 10 x base_interval

_PATH_RANK = {PATH_EXACT: 3, PATH_PREFIX: 2}  # RegularExpression 1, no path 0


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """What route selection reads of a request: ``path`` already normalised and without the query,
    ``query`` the raw query string (no ``?``), ``headers`` with lower-case names, in order."""

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Selected:
    """The route and rule a request takes, and the match of the rule that matched it."""

    route: HttpRoute
    rule: RouteRule
    match: RouteMatch = field(default_factory=RouteMatch)


Predicate = Callable[[RouteRequest, dict[str, str], Callable[[], dict[str, str]]], bool]


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """One (route, rule, match) of a table, in precedence order; ``position`` is the match's index in
    the rule."""

    match: RouteMatch
    route: HttpRoute
    rule: RouteRule
    position: int
    predicate: Predicate = field(repr=False, compare=False)


class RouteTable:
    """The entries of one Service port in precedence order; see the module docstring."""

    __slots__ = ("entries",)

    def __init__(self, entries: Iterable[RouteEntry]) -> None:
        self.entries: tuple[RouteEntry, ...] = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def select(self, request: RouteRequest) -> Selected | None:
        """The route and rule of the first entry whose match matches ``request``; None if none does."""
        headers = _header_values(request.headers)
        parsed: list[dict[str, str]] = []

        def query() -> dict[str, str]:
            if not parsed:
                parsed.append(_query_values(request.query))
            return parsed[0]

        for entry in self.entries:
            if entry.predicate(request, headers, query):
                return Selected(entry.route, entry.rule, entry.match)
        return None


# --- building the table -------------------------------------------------------------------------


def _created_order(created: str) -> float:
    """Seconds since the epoch of an RFC 3339 time; an unknown or unreadable one is the oldest."""
    if not created:
        return -math.inf
    try:
        moment = datetime.fromisoformat(created)
    except ValueError:
        return -math.inf
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _path_rank(path: PathMatch | None) -> tuple[int, int]:
    if path is None:
        return 0, 0
    return _PATH_RANK.get(path.kind, 1), len(path.value)


def _precedence(entry: RouteEntry) -> tuple[object, ...]:
    match, route = entry.match, entry.route
    if route.kind == VIRTUAL_SERVICE:  # ordered rules, before every Gateway API entry
        return (0, _created_order(route.created), route.route_key, entry.rule.index, entry.position)
    rank, length = _path_rank(match.path)
    return (
        1,
        -rank,
        -length,
        match.method is None,
        -len(match.headers),
        -len(match.query),
        _created_order(route.created),
        route.route_key,
        route.kind,
        entry.rule.index,
        entry.position,
    )


def _value_test(kind: str, value: str) -> Callable[[str], bool]:
    if kind == VALUE_EXACT:
        return lambda seen: seen == value
    pattern = re.compile(value)
    return lambda seen: pattern.fullmatch(seen) is not None


def _path_test(path: PathMatch | None) -> Callable[[str], bool]:
    if path is None:
        return lambda _path: True
    value = path.value
    if path.kind == PATH_EXACT:
        return lambda seen: seen == value
    if path.kind == PATH_PREFIX:
        prefix = value.rstrip("/")
        if not prefix:
            return lambda _path: True
        below = prefix + "/"
        return lambda seen: seen == prefix or seen.startswith(below)
    if path.kind == PATH_STRING_PREFIX:
        return lambda seen: seen.startswith(value)
    pattern = re.compile(value)
    return lambda seen: pattern.fullmatch(seen) is not None


def _compile(match: RouteMatch) -> Predicate:
    """The match as one predicate; raises re.error for a regular expression that does not compile."""
    path = _path_test(match.path)
    method = match.method
    headers = [(h.name.lower(), _value_test(h.kind, h.value)) for h in match.headers]
    params = [(q.name, _value_test(q.kind, q.value)) for q in match.query]

    def matches(
        request: RouteRequest, header_values: dict[str, str], query: Callable[[], dict[str, str]]
    ) -> bool:
        if not path(request.path):
            return False
        if method is not None and request.method != method:
            return False
        for name, test in headers:
            seen = header_values.get(name)
            if seen is None or not test(seen):
                return False
        if params:
            values = query()
            for name, test in params:
                seen = values.get(name)
                if seen is None or not test(seen):
                    return False
        return True

    return matches


def _never(_request: RouteRequest, _headers: dict[str, str], _query: Callable[[], dict[str, str]]) -> bool:
    return False


def route_table(routes: Iterable[HttpRoute], port: int) -> RouteTable:
    """The entries of the routes that apply to ``port`` (a route with ``port`` None applies to every
    port): VirtualService entries in their order, then Gateway API ones by precedence (module
    docstring). TCPRoutes are left out: they never route HTTP."""
    entries: list[RouteEntry] = []
    for route in routes:
        if route.kind == TCP_ROUTE or (route.port is not None and route.port != port):
            continue
        for rule in route.rules:
            for position, match in enumerate(rule.matches):
                try:
                    predicate = _compile(match)
                except re.error:
                    predicate = _never  # fail closed: never matches
                entries.append(RouteEntry(match, route, rule, position, predicate))
    entries.sort(key=_precedence)
    return RouteTable(entries)


def tcp_backends(routes: Iterable[HttpRoute], port: int) -> RouteRule | None:
    """The TCPRoute rule that takes TCP connections to ``port`` of the Service whose routes these are;
    None when no TCPRoute applies (the connection goes to the Service itself, as without routes).

    Of the TCPRoutes that apply to the port (``port`` equal to it, or None: every port) the oldest
    wins (``creationTimestamp``, an unknown one oldest, then ``{namespace}/{name}``: the Gateway
    API's rule for conflicting routes), and of its rules the first. TCPRoute v1alpha2 allows up to
    16 rules but, having no matches, gives no way to choose among them; Istio turns each into an
    unconditional ``tcp`` route of a VirtualService, where the first one takes every connection, and
    TCPRoute v1 (Gateway API 1.6) allows one rule only. Draw the backend with :func:`pick_backend`;
    None from it (the ``invalid_weight`` share, or no backend at all) means: refuse the connection
    (TCPRoute spec: "the underlying implementation MUST actively reject connection attempts to this
    backend", in proportion to the weights)."""
    applying = [
        route
        for route in routes
        if route.kind == TCP_ROUTE and route.rules and (route.port is None or route.port == port)
    ]
    if not applying:
        return None
    oldest = min(applying, key=lambda r: (_created_order(r.created), r.route_key, r.key))
    return oldest.rules[0]


# --- the request side ---------------------------------------------------------------------------


def _header_values(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    joined: dict[str, list[str]] = {}
    for name, value in headers:
        joined.setdefault(name.lower(), []).append(value)
    return {name: ",".join(values) for name, values in joined.items()}


def _query_values(query: str) -> dict[str, str]:
    """The first value of each parameter, names and values percent-decoded (``+`` is not a space)."""
    values: dict[str, str] = {}
    for part in query.split("&"):
        if not part:
            continue
        name, _eq, value = part.partition("=")
        values.setdefault(unquote(name), unquote(value))
    return values


# --- backends and retries -----------------------------------------------------------------------


def pick_backend(rule: RouteRule, rng: random.Random) -> BackendRef | None:
    """A backend of ``rule`` at random in proportion to the weights; None for the ``invalid_weight``
    share (answer 500) and when no backend has a weight above zero."""
    candidates = [b for b in rule.backends if b.weight > 0]
    total = sum(b.weight for b in candidates)
    if total == 0:
        return None
    point = rng.randrange(total + max(rule.invalid_weight, 0))
    for backend in candidates:
        if point < backend.weight:
            return backend
        point -= backend.weight
    return None


def retry_policy(rule: RouteRule) -> RetryPolicy:
    """The rule's retry policy, or Istio's default when it has none."""
    return rule.retry if rule.retry is not None else ISTIO_DEFAULT_RETRY


def is_retriable(
    policy: RetryPolicy,
    status: int | None,
    connect_failure: bool,
    *,
    refused_stream: bool = False,
    grpc_status: int | None = None,
) -> bool:
    """Whether a failed attempt may be retried under ``policy`` (when attempts remain).

    ``connect_failure``: no connection to the endpoint (refused, unreachable, the connect timed out);
    ``refused_stream``: the upstream refused the HTTP/2 stream; ``status``: the response status (None
    when there was no response); ``grpc_status``: the response's ``grpc-status``, when it has one.
    A reset after the request was sent is never retried (Istio does not set ``reset``)."""
    if policy.attempts <= 0:
        return False
    if connect_failure:
        return policy.retry_on_connect_failure
    if refused_stream:
        return policy.retry_on_refused_stream
    if grpc_status is not None and grpc_status in policy.retriable_grpc_statuses:
        return True
    return status is not None and status in policy.codes


def retry_backoff(policy: RetryPolicy, retry: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (1 for the first): Envoy's fully jittered
    exponential backoff, uniform in [0, (2**retry - 1) x base], capped at 10 x base (with the default
    25 ms base: up to 25 ms, 75 ms, 175 ms, ...)."""
    base = policy.backoff if policy.backoff is not None else DEFAULT_BACKOFF_BASE
    upper = min((2 ** max(retry, 1) - 1) * base, _BACKOFF_MAX_FACTOR * base)
    return rng.uniform(0.0, upper)


# --- faults -------------------------------------------------------------------------------------


def _drawn(percent: float, rng: random.Random) -> bool:
    """True with probability ``percent`` % (exactly never at 0, always at 100)."""
    return rng.random() * 100.0 < percent


def fault_action(fault: FaultPolicy, rng: random.Random) -> tuple[float, int | None]:
    """What ``fault`` does to one request: (seconds to delay it, 0.0 for none; the status to abort it
    with, None to let it through). The status is an HTTP status, or the gRPC status when the policy
    aborts with ``abort_grpc_status``. Delay and abort are drawn independently, as Envoy's fault filter
    does; a request may get both (delayed, then aborted)."""
    delay = fault.delay if fault.delay is not None and _drawn(fault.delay_percent, rng) else 0.0
    status: int | None = None
    if fault.aborts and _drawn(fault.abort_percent, rng):
        status = fault.abort_status if fault.abort_status is not None else fault.abort_grpc_status
    return delay, status
