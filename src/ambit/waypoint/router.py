"""The waypoint's request handler: which destination, is it allowed, which endpoint, which protocol.

For each request a frontend hands over (:data:`~ambit.waypoint.exchange.RequestHandler`):

1. **Destination**: the tunnel's CONNECT authority (the original ``VIP:port`` or ``podIP:port`` the
   client ztunnel kept) is routed by :func:`ambit.routing.outbound_candidates` with
   ``at_waypoint=True`` from the waypoint's own workload: a service's healthy endpoints (locality
   first, then capacity-weighted random), or the pod itself. No destination: 404 ``NR``; no usable
   endpoint: 503 ``UH``.
2. **Policy**: the L7 AuthorizationPolicies whose ``targetRefs`` name this waypoint's Gateway apply to
   every request through it; those that name the Service apply only to service-addressed requests (a
   pod-addressed request is not "to the Service", as in Istio). DENY before ALLOW; a denial is 403
   ``RBAC: access denied`` (flag ``RBAC``) and never reaches an endpoint.
2b. **Rate limits**: the HTTPLocalRateLimitPolicies on its Gateway (all traffic) and on the Service
   (service-addressed traffic) admit the request or answer 429 ``local_rate_limited`` with
   ``retry-after`` (flag ``RL``; :mod:`ambit.routing.rate_limit`: token buckets, each limit
   service-wide, so this replica enforces its ÷ ready replicas share). After policy, so a denied
   request takes no token; before routes and faults, as Envoy's local rate limit filter.
3. **Path and headers**: the path is normalised first, for policy and for what the endpoint receives
   (:mod:`ambit.protocol.paths`, Istio's ``MERGE_SLASHES`` level: dot segments, unreserved
   ``%``-escapes, ``\\`` and ``//``; the query kept as sent); a path that cannot be is 400.
   ``x-request-id`` is added when absent (a UUID4); ``traceparent`` and everything else
   end to end pass unchanged.
4. **Endpoint and protocol**: the request goes to one endpoint per request (L7 balancing: each request
   of a keep-alive client may go elsewhere). HTTP/2 upstream when the Service port declares it
   (``appProtocol`` ``http2``, ``grpc``, ``h2c``, ``kubernetes.io/h2c``, or a port name starting
   ``http2``/``grpc``), HTTP/1.1 when it declares ``http``; undeclared: the client's own version. An
   Upgrade (WebSocket) always goes over HTTP/1.1. A connect failure (``UF``) moves on to the next
   endpoint, up to three, before the client sees a 503, and ejects the endpoint that failed
   (:mod:`ambit.routing.ejection`: tried last for 5 s, doubling; never more than half of them; shown in
   the config dump).
5. **Transport**: to an enrolled endpoint, an HBONE CONNECT to its ztunnel (``ip:15008``) with the
   waypoint's own certificate, the endpoint's identity required, and ``forwarded: for=<client
   ip>;host=<service>`` so the destination knows the original client and the service; to an endpoint
   outside the mesh, plain TCP from the waypoint's pod. Upstream HTTP connections are pooled per
   (endpoint, client IP, protocol): the client IP is part of the key because ``forwarded`` is per
   tunnel.
6. **Telemetry**: when the response has been sent, one ``istio_requests_total`` (and the duration and
   size histograms) and one access-log line.

**Routes and faults**: when the Service has routes (Gateway API or VirtualService,
:mod:`ambit.routing.http_routes`), the rule the request takes decides its backend, header changes,
timeouts and retries. A rule with a fault (a VirtualService ``fault``) is applied, as Envoy's fault
filter does, after the rule is selected and before a backend is chosen or anything is sent
(:func:`ambit.routing.http_routes.fault_action` draws delay and abort independently per request):

* the request first waits out the delay, and the access log's ``response_flags`` then carry ``DI``;
* then, when it is drawn to abort, the waypoint answers ``fault filter abort`` itself, flag ``FI``:
  with the HTTP status, or for a gRPC abort a trailers-only gRPC response (HTTP 200,
  ``content-type: application/grpc``, ``grpc-status: <code>``, ``grpc-message: fault filter abort``);
* **an injected abort is never retried**: it is answered before the retry loop (Envoy's fault filter
  answers before the router filter, whose retry policy covers only upstream attempts);
* **an injected delay does not count against the route's request timeout**: the timeout
  (``timeouts.request`` / VirtualService ``timeout``) starts after the delay, when the request goes
  upstream (Envoy's router starts its timer when the fault filter lets the request through).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ambit.authz import RBAC_DENIED_BODY, RequestAttributes, authorize_request
from ambit.model.identity import Identity
from ambit.model.policy import Action, L7Authorization
from ambit.model.route import BackendRef, RetryPolicy, RouteRule
from ambit.model.workload import Service, ServicePort, Workload
from ambit.net.duplex import Duplex, TcpDuplex, relay
from ambit.net.pool import HbonePool, PoolKey
from ambit.protocol.authority import parse_authority
from ambit.protocol.hbone import request_headers
from ambit.protocol.paths import WAYPOINT_NORMALIZATION, PathError, normalize_target
from ambit.proxy.config_dump import EjectionView, OutlierView, ejection_views
from ambit.routing import HbonePlan, OutboundPlan, RouteError, outbound_candidates
from ambit.routing.ejection import Ejections
from ambit.routing.http_routes import (
    RouteRequest,
    RouteTable,
    Selected,
    fault_action,
    is_retriable,
    pick_backend,
    retry_backoff,
    retry_policy,
    route_table,
    tcp_backends,
)
from ambit.routing.rate_limit import RateLimiter, rate_limits_through, ready_replicas
from ambit.routing.route_filters import mirrors_drawn, rewrite_target, rewritten_authority
from ambit.routing.subsets import subset_members
from ambit.state.snapshot import Snapshot
from ambit.state.store import StateStore
from ambit.waypoint.exchange import (
    BodyError,
    BodyStream,
    Downstream,
    Headers,
    Request,
    Response,
    local_response,
)
from ambit.waypoint.h2_client import H2Upstream
from ambit.waypoint.http1_client import Http1Upstream
from ambit.waypoint.metrics import RequestMetrics
from ambit.waypoint.rule_actions import fault_abort, modify_headers, redirect_response
from ambit.waypoint.service_traffic import ServiceTraffic, TrafficStates, observe_attempt, without_outliers
from ambit.waypoint.telemetry import observe_exchange
from ambit.waypoint.upstream_errors import UpstreamError

log = logging.getLogger(__name__)

SPIFFE = "spiffe://"
UPSTREAM_ATTEMPTS = 3
MAX_RETRY_BODY = 64 * 1024  # a request body up to this size is kept so a retry can send it again
NO_RETRY = RetryPolicy(attempts=0)  # traffic with no route: connect failures only (as before routes)
RATE_LIMITED_BODY = "local_rate_limited"  # Envoy's local rate limit filter's local reply
_DOT_SEGMENT = re.compile(r"(?:^|/)\.{1,2}(?:/|$)")  # "." or ".." as a whole path segment
MIRROR_TIMEOUT = 15.0  # seconds a mirrored request may take when its rule sets no request timeout
MAX_MIRRORS_IN_FLIGHT = 256  # per replica; beyond, mirrors are dropped (each holds up to 64 KiB of body)
H2_APP_PROTOCOLS = frozenset({"http2", "grpc", "grpc-web", "h2c", "kubernetes.io/h2c"})
HTTP1_APP_PROTOCOLS = frozenset({"http", "http1", "http/1.1"})


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a tunnel's authority leads, as the waypoint routes it."""

    plans: list[OutboundPlan] | RouteError  # endpoints best first (ejected last), or why there are none
    service: Service | None  # the service addressed (None: pod-addressed)
    port: int


@dataclass(frozen=True, slots=True)
class WaypointSelf:
    """Who this waypoint is: its Gateway, its identity and its pod's IP."""

    namespace: str
    gateway: str
    identity: Identity
    pod_ip: str


def declared_protocol(port: ServicePort | None) -> str:
    """``h2``, ``http1`` or ``""`` (undeclared) for a Service port, by appProtocol then name prefix."""
    if port is None:
        return ""
    app = port.app_protocol.lower()
    if app in H2_APP_PROTOCOLS:
        return "h2"
    if app in HTTP1_APP_PROTOCOLS:
        return "http1"
    name = port.name.lower()
    if name.startswith(("http2", "grpc")):
        return "h2"
    if name == "http" or name.startswith("http-"):
        return "http1"
    return ""


def service_port(service: Service | None, port: int) -> ServicePort | None:
    if service is None:
        return None
    return next((p for p in service.ports if p.port == port), None)


def _principal(identity: str) -> str:
    return identity[len(SPIFFE) :] if identity.startswith(SPIFFE) else identity


def _namespace_of(identity: str) -> str:
    parts = _principal(identity).split("/")
    return parts[2] if len(parts) >= 5 and parts[1] == "ns" else ""


def _header_grpc_status(response: Response) -> int | None:
    """The ``grpc-status`` of a trailers-only gRPC response (in its headers), as Envoy's retry policy
    reads it for ``retriable_grpc_statuses``; None for any other response."""
    for name, value in response.headers:
        if name == b"grpc-status":
            return int(value) if value.isdigit() else None
    return None


class WaypointRouter:
    """The :data:`~ambit.waypoint.exchange.RequestHandler` of one waypoint; see the module docstring."""

    def __init__(
        self,
        *,
        me: WaypointSelf,
        store: StateStore,
        pool: HbonePool,
        metrics: RequestMetrics,
        cluster_cidrs: Sequence[str],
        connect_timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.me = me
        self.store = store
        self.pool = pool
        self.metrics = metrics
        self.cluster_cidrs = tuple(cluster_cidrs)
        self.connect_timeout = connect_timeout
        self.rng = rng or random.Random()
        self.http1 = Http1Upstream()
        self.h2 = H2Upstream()
        self.ejections = Ejections()  # endpoints that refused or timed out: tried last for a while
        self._tables: dict[tuple[str, int], RouteTable | None] = {}
        self._tables_version = ""
        self.traffic_states = TrafficStates()  # DestinationRule state, by service key
        self.limiter = RateLimiter()  # HTTPLocalRateLimitPolicy buckets, kept across config pushes
        self._replicas = 1  # ready replicas of this waypoint in the snapshot of _tables_version
        self._mirrors: set[asyncio.Task[None]] = set()  # mirrored requests in flight (fire and forget)
        self.mirrors_dropped = 0  # mirrors not sent: too many in flight, or over the target's limits

    def outlier_views(self, snapshot: Snapshot) -> tuple[OutlierView, ...]:
        """Every endpoint the outlier detection of a Service's DestinationRule tracks (config dump)."""
        return self.traffic_states.outlier_views(snapshot)

    def ejection_views(self, snapshot: Snapshot) -> tuple[EjectionView, ...]:
        return ejection_views(self.ejections, snapshot.workloads, time.monotonic())

    def _order(self, plans: list[OutboundPlan]) -> list[OutboundPlan]:
        """``plans`` with the endpoints this waypoint ejects last (at most half count as ejected)."""
        uids = [p.endpoint.uid for p in plans if p.endpoint is not None]
        out = self.ejections.ejected(uids, time.monotonic())
        if not out:
            return plans
        last = [p for p in plans if p.endpoint is not None and p.endpoint.uid in out]
        return [p for p in plans if p not in last] + last

    async def close(self) -> None:
        for task in list(self._mirrors):
            task.cancel()
        if self._mirrors:
            await asyncio.gather(*self._mirrors, return_exceptions=True)
        await self.http1.close()
        await self.h2.close()

    def _self_workload(self, snapshot: Snapshot) -> Workload:
        known = snapshot.find_workload_by_ip(self.me.pod_ip)
        if known is not None:
            return known
        from ambit.model.workload import TunnelProtocol  # a waypoint the config does not list yet

        return Workload(
            uid=f"{self.me.namespace}/{self.me.gateway}",
            name=self.me.gateway,
            namespace=self.me.namespace,
            service_account=self.me.identity.service_account,
            node="",
            addresses=(self.me.pod_ip,),
            tunnel_protocol=TunnelProtocol.HBONE,
            trust_domain=self.me.identity.trust_domain,
        )

    def destination(self, snapshot: Snapshot, target: str) -> Destination:
        """Where a tunnel's authority leads: the endpoint plans (or why none), the service, the port."""
        try:
            dst_ip, dst_port = parse_authority(target)
        except ValueError as exc:
            return Destination(RouteError(str(exc)), None, 0)
        plans = outbound_candidates(
            snapshot,
            self._self_workload(snapshot),
            dst_ip,
            dst_port,
            cluster_cidrs=self.cluster_cidrs,
            rng=self.rng,
            at_waypoint=True,
        )
        if not isinstance(plans, RouteError):
            plans = self._order(plans)
        return Destination(plans, snapshot.find_service_by_vip(dst_ip), dst_port)

    def policies(self, snapshot: Snapshot, service: Service | None) -> list[L7Authorization]:
        """The L7 policies for traffic through this waypoint: those targeting its Gateway, plus those
        targeting the Service when the traffic is service-addressed (as Istio)."""
        policies = list(snapshot.l7_policies_for("Gateway", self.me.namespace, self.me.gateway))
        if service is not None:
            policies += snapshot.l7_policies_for("Service", service.namespace, service.name)
        return policies

    async def open_upstream(self, plan: OutboundPlan, downstream: Downstream) -> Duplex:
        """A byte stream to ``plan``'s endpoint: HBONE with the waypoint's certificate (``forwarded``
        names the client and the service) or plain TCP; UpstreamError ``UF`` when it cannot be had."""
        try:
            if isinstance(plan, HbonePlan):
                key = PoolKey(self.me.identity, plan.destination_identity, plan.address)
                host = plan.service.hostname if plan.service is not None else None
                headers = request_headers(downstream.peer_ip, host=host)
                return await asyncio.wait_for(
                    self.pool.open_stream(key, plan.authority, headers), self.connect_timeout
                )
            loop = asyncio.get_running_loop()
            _transport, duplex = await asyncio.wait_for(
                loop.create_connection(TcpDuplex, plan.address[0], plan.address[1]), self.connect_timeout
            )
            return duplex
        except (OSError, TimeoutError, ConnectionError) as exc:
            where = f"{plan.address[0]}:{plan.address[1]}"
            raise UpstreamError("UF", f"{where}: {exc or type(exc).__name__}") from exc

    def connected(self, plan: OutboundPlan, error: UpstreamError | None) -> None:
        """Record the outcome of reaching ``plan``'s endpoint: a connect failure ejects it, a success
        forgives it."""
        if plan.endpoint is None:
            return
        if error is None:
            self.ejections.succeeded(plan.endpoint.uid)
        elif error.flags == "UF":
            self.ejections.failed(plan.endpoint.uid, time.monotonic(), str(error))

    async def handle(self, request: Request, downstream: Downstream) -> Response:
        started = time.monotonic()
        snapshot = self.store.current
        delayed = False  # a fault delayed the request (flag DI)

        def answer(
            response: Response, service: Service | None = None, endpoint: Workload | None = None
        ) -> Response:
            return observe_exchange(
                self.metrics,
                self.store.current,
                request,
                downstream,
                started=started,
                service=service,
                endpoint=endpoint,
                response=response,
                delayed=delayed,
            )

        try:  # as Envoy's HCM: before routing, policy and forwarding; the query is kept as sent
            normalized = normalize_target(request.path.decode("latin-1"), WAYPOINT_NORMALIZATION)
        except PathError as exc:
            return answer(
                local_response(400, f"invalid path: {exc.reason}", details="path_normalization_failed")
            )
        request.path = normalized.encode("latin-1")
        where = self.destination(snapshot, downstream.target)
        service, plans = where.service, where.plans
        if isinstance(plans, RouteError):
            status, flags = (503, "UH") if service is not None else (404, "NR")
            log.info("no route for %s: %s", downstream.target, plans.reason)
            return answer(local_response(status, plans.reason, flags=flags), service)
        denied = self._authorize(snapshot, request, downstream, service, where.port)
        if denied is not None:
            return answer(denied, service)
        limited = self._rate_limit(snapshot, service, downstream)
        if limited is not None:
            return answer(limited, service)
        if request.header(b"x-request-id") is None:
            request.headers.append((b"x-request-id", str(uuid.uuid4()).encode()))
        selected = self._select(snapshot, service, where.port, request)
        if isinstance(selected, Response):
            return answer(selected, service)
        rule = selected.rule if selected is not None else None
        matched = selected.match.path if selected is not None else None
        backend_service, backend_port = service, where.port
        if rule is not None:
            if rule.redirect is not None:  # the rule answers itself: nothing goes upstream
                return answer(redirect_response(rule, matched, request, where.port), service)
            if rule.fault is not None:  # before the backend and the request timeout (module docstring)
                delay, abort = fault_action(rule.fault, self.rng)
                if delay > 0:
                    delayed = True
                    await asyncio.sleep(delay)
                    snapshot = self.store.current  # the endpoints as they are after the delay
                if abort is not None:
                    return answer(fault_abort(rule.fault, abort), service)
            routed = self._backend(snapshot, rule)
            if isinstance(routed, Response):
                return answer(routed, service)
            backend_service, backend_port, plans = routed
            if rule.request_headers is not None:
                request.headers = modify_headers(request.headers, rule.request_headers)
            if rule.rewrite is not None:  # what the backend gets, every retry included
                target = rewrite_target(
                    rule.rewrite, matched=matched, path_and_query=request.path.decode("latin-1")
                )
                if _DOT_SEGMENT.search(target.partition("?")[0]):
                    # a prefix rewrite glued a replacement to what followed the prefix and made a dot
                    # segment the backend would resolve: it would see a path policy never checked
                    reason = "the rewritten path has a dot segment"
                    return answer(local_response(400, reason, details="rewrite_dot_segment"), service)
                request.path = target.encode("latin-1")
                authority = rewritten_authority(rule.rewrite, request.authority.decode("latin-1"))
                request.authority = authority.encode("latin-1")
            await self._mirror(snapshot, rule, request, downstream)
        return await self._deliver(
            request,
            downstream,
            started=started,
            delayed=delayed,
            rule=rule,
            service=backend_service,
            port=backend_port,
            plans=plans,
            snapshot=snapshot,
        )

    async def _deliver(
        self,
        request: Request,
        downstream: Downstream,
        *,
        started: float,
        delayed: bool,
        rule: RouteRule | None,
        service: Service | None,
        port: int,
        plans: list[OutboundPlan],
        snapshot: Snapshot,
    ) -> Response:
        """Send ``request`` to ``service``'s endpoints: its DestinationRule (outlier ejection, the
        connection pool's request limit and, to an HTTP/1.1 upstream, its connection slots with their
        pending queue: 503 ``UO`` beyond them), the rule's timeouts and retries."""

        def answer(
            response: Response, endpoint: Workload | None = None, release: Callable[[], None] | None = None
        ) -> Response:
            return observe_exchange(
                self.metrics,
                self.store.current,
                request,
                downstream,
                started=started,
                service=service,
                endpoint=endpoint,
                response=response,
                delayed=delayed,
                on_end=release,
            )

        protocol = self._upstream_protocol(request, service, port)
        policy = retry_policy(rule) if rule is not None else NO_RETRY
        traffic = self.traffic(snapshot, service)
        plans = without_outliers(plans, traffic)
        if not plans:
            return answer(local_response(503, "no healthy upstream", flags="UH"))
        if traffic is not None and not traffic.requests.try_acquire():
            return answer(local_response(503, "upstream overflow", flags="UO"))
        slots = traffic.connections if traffic is not None and protocol == "http1" else None
        held = False  # a connection slot is held (released with the request slot when the response ends)

        def release() -> None:
            if traffic is not None:
                traffic.requests.release()
            if held and slots is not None:
                slots.release()

        try:  # the request timeout covers a wait for a connection slot too, as Envoy's router timer does
            async with asyncio.timeout(rule.request_timeout if rule is not None else None):
                if slots is not None:
                    if not await slots.acquire():  # may wait as a pending request
                        release()
                        return answer(local_response(503, "upstream overflow (connections)", flags="UO"))
                    held = True
                response, endpoint = await self._forward(
                    plans,
                    request,
                    downstream,
                    protocol,
                    policy=policy,
                    per_try=rule.backend_timeout if rule is not None else None,
                    traffic=traffic,
                )
        except TimeoutError:
            return answer(local_response(504, "upstream request timeout", flags="UT"), release=release)
        except BaseException:
            release()
            raise
        if rule is not None and rule.response_headers is not None:
            response.headers = modify_headers(response.headers, rule.response_headers)
        return answer(response, endpoint, release)

    # -- routes (Gateway API, GAMMA; VirtualService) --------------------------------------------------

    def _select(
        self, snapshot: Snapshot, service: Service | None, port: int, request: Request
    ) -> Selected | Response | None:
        """The rule a route picks for ``request`` (and the match that matched); None when no route is
        attached to the service (plain forwarding); a 404 response when no rule matches."""
        if service is None:
            return None  # pod-addressed: routes attach to Services
        table = self._route_table(snapshot, service, port)
        if table is None:
            return None
        path, _, query = request.path.decode("latin-1").partition("?")
        headers = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers)
        headers += (("host", request.authority.decode("latin-1")),)
        selected = table.select(RouteRequest(request.method.decode("latin-1"), path, query, headers))
        if selected is None:
            return local_response(404, "no route rule matched", flags="NR")
        return selected

    async def _mirror(
        self, snapshot: Snapshot, rule: RouteRule, request: Request, downstream: Downstream
    ) -> None:
        """Start the rule's mirrors drawn for this request, fire and forget: each gets a copy of the
        request as the primary will get it, to one endpoint of its backend; its answer is read and
        dropped, never retried, never seen by the client. The body must be buffered for the copies:
        a request whose body cannot be (more than 64 KiB, or of unknown length and still streaming)
        and an Upgrade are not mirrored. The host is unchanged (Istio's default since 1.28:
        ``DISABLE_SHADOW_HOST_SUFFIX``)."""
        backends = mirrors_drawn(rule, self.rng)
        if not backends or request.upgrade is not None:
            return
        buffered = await self._buffered(request)
        if buffered is None:
            log.debug("not mirrored: the request body cannot be buffered")
            return
        data, trailers = buffered
        request.body = BodyStream.of(data, trailers)
        timeout = rule.request_timeout or MIRROR_TIMEOUT
        for backend in backends:
            if len(self._mirrors) >= MAX_MIRRORS_IN_FLIGHT:  # a slow mirror target must not pile up memory
                self.mirrors_dropped += 1
                log.debug(
                    "mirror to %s dropped: %d mirrors in flight", backend.service_key, MAX_MIRRORS_IN_FLIGHT
                )
                continue
            copy = Request(
                request.method,
                request.scheme,
                request.authority,
                request.path,
                list(request.headers),
                BodyStream.of(data, trailers),
                request.version,
            )
            task = asyncio.get_running_loop().create_task(
                self._shadow(snapshot, backend, copy, downstream, timeout), name="waypoint-mirror"
            )
            self._mirrors.add(task)
            task.add_done_callback(self._mirrors.discard)

    async def _shadow(
        self, snapshot: Snapshot, backend: BackendRef, copy: Request, downstream: Downstream, within: float
    ) -> None:
        """One mirrored request: sent once within the mirror target's DestinationRule limits (as Envoy's
        shadow requests count against the target cluster's circuit breakers: over them, it is dropped),
        its answer drained and dropped; whatever goes wrong stays here."""
        routed = self._backend_plans(snapshot, backend)
        if isinstance(routed, Response):
            return
        target, plans = routed
        traffic = self.traffic(snapshot, target)
        if traffic is not None and not traffic.requests.try_acquire():
            self.mirrors_dropped += 1
            return
        protocol = self._upstream_protocol(copy, target, backend.port)
        try:
            async with asyncio.timeout(within):
                response = await self._send(plans[0], copy, downstream, protocol, traffic)
                async for _chunk in response.body:
                    pass
        except Exception as exc:  # fire and forget: a mirror never fails anything else
            log.debug("mirror to %s failed: %r", backend.service_key, exc)
        finally:
            if traffic is not None:
                traffic.requests.release()

    def _backend(
        self, snapshot: Snapshot, rule: RouteRule
    ) -> tuple[Service, int, list[OutboundPlan]] | Response:
        """The backend service, port and endpoint plans ``rule`` picks; a response when it has none
        (500 no usable backend, 503 the backend has no endpoint)."""
        backend = pick_backend(rule, self.rng)
        if backend is None:
            return local_response(500, "the route rule has no usable backend", flags="NR")
        routed = self._backend_plans(snapshot, backend)
        if isinstance(routed, Response):
            return routed
        return routed[0], backend.port, routed[1]

    def _backend_plans(
        self, snapshot: Snapshot, backend: BackendRef
    ) -> tuple[Service, list[OutboundPlan]] | Response:
        """The backend Service and its endpoint plans (ejected last), only the members of the backend's
        DestinationRule subset when it names one (:mod:`ambit.routing.subsets`); a response when there
        are none: 503 ``UH`` (no address, no endpoint), 503 ``NC`` (a subset no rule defines)."""
        target = snapshot.services.get(backend.service_key)
        if target is None or not target.vips:
            return local_response(503, f"backend {backend.service_key} has no address", flags="UH")
        plans = outbound_candidates(
            snapshot,
            self._self_workload(snapshot),
            target.vips[0],
            backend.port,
            cluster_cidrs=self.cluster_cidrs,
            rng=self.rng,
            at_waypoint=True,
        )
        if isinstance(plans, RouteError):
            return local_response(503, plans.reason, flags="UH")
        if backend.subset is not None:
            members = subset_members(snapshot.traffic_policy_for(backend.service_key), backend.subset)
            if members is None:
                reason = f"no DestinationRule defines subset {backend.subset!r} of {backend.service_key}"
                return local_response(503, reason, flags="NC")
            plans = [p for p in plans if p.endpoint is not None and p.endpoint.uid in members]
            if not plans:
                reason = f"subset {backend.subset!r} of {backend.service_key} has no healthy endpoint"
                return local_response(503, reason, flags="UH")
        return target, self._order(plans)

    def tcp_backend(self, snapshot: Snapshot, rule: RouteRule) -> list[OutboundPlan] | None:
        """The endpoint plans of the backend a TCPRoute ``rule`` draws for one connection; None when the
        draw falls on the invalid share or the backend has no endpoint (the connection is refused, as
        the TCPRoute spec requires)."""
        routed = self._backend(snapshot, rule)
        return None if isinstance(routed, Response) else routed[2]

    def traffic(self, snapshot: Snapshot, service: Service | None) -> ServiceTraffic | None:
        """The DestinationRule state of ``service`` (:class:`TrafficStates`)."""
        return self.traffic_states.get(snapshot, service)

    def _refresh(self, snapshot: Snapshot) -> None:
        """Per config version: drop the route tables, count this waypoint's ready replicas, forget the
        buckets of rate limit policies that are gone."""
        if self._tables_version == snapshot.version:
            return
        self._tables, self._tables_version = {}, snapshot.version
        self._replicas = ready_replicas(snapshot, self.me.namespace, self.me.gateway)
        self.limiter.retain(snapshot.rate_limits.keys())

    def _rate_limit(
        self, snapshot: Snapshot, service: Service | None, downstream: Downstream
    ) -> Response | None:
        """Envoy's local rate limit, as an HTTPLocalRateLimitPolicy asks: None when the request may go
        on; else 429 ``local_rate_limited`` with ``retry-after`` (flag ``RL``), counted per policy and
        bucket. Each limit is service-wide: this replica enforces its share (÷ ready replicas)."""
        policies = rate_limits_through(snapshot, self.me.namespace, self.me.gateway, service)
        if not policies:
            return None
        self._refresh(snapshot)
        principal = _principal(downstream.peer_identity)
        decision = self.limiter.admit(policies, principal, time.monotonic(), self._replicas)
        if decision.allowed:
            return None
        self.metrics.rate_limited(decision.policy, decision.bucket)
        response = local_response(429, RATE_LIMITED_BODY, flags="RL", details="local_rate_limited")
        response.headers.append((b"retry-after", str(decision.retry_after).encode()))
        return response

    def _route_table(self, snapshot: Snapshot, service: Service, port: int) -> RouteTable | None:
        """The service port's route table, built once per config version."""
        self._refresh(snapshot)
        key = (service.key, port)
        if key not in self._tables:
            routes = snapshot.routes_for(service.key)
            table = route_table(routes, port) if routes else None
            self._tables[key] = table if table else None
        return self._tables[key]

    # -- attempts ---------------------------------------------------------------------------------------

    async def _replayable(self, request: Request, policy: RetryPolicy) -> tuple[bytes, Headers] | None:
        """The request body, read whole, when retries may need to send it again; None when there is
        nothing to retry or it cannot be replayed (then no retries)."""
        if policy.attempts <= 0:
            return None
        return await self._buffered(request)

    @staticmethod
    async def _buffered(request: Request) -> tuple[bytes, Headers] | None:
        """The request body and trailers, read whole, for a body already complete (and no larger than
        MAX_RETRY_BODY) or still arriving with a declared ``content-length`` no larger than it (as Envoy
        buffers up to a limit); None when it cannot be — decided before anything is read, since a read
        past the limit could not be put back for the request itself."""
        length = request.header(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_RETRY_BODY):
            return None
        if request.body.done:
            if request.body.received > MAX_RETRY_BODY:
                return None
        elif length is None:
            return None  # still streaming, size unknown
        try:
            data = await request.body.read_all(MAX_RETRY_BODY)
        except BodyError:
            return None
        return data, list(request.body.trailers)

    async def _forward(
        self,
        plans: list[OutboundPlan],
        request: Request,
        downstream: Downstream,
        protocol: str,
        *,
        policy: RetryPolicy,
        per_try: float | None,
        traffic: ServiceTraffic | None = None,
    ) -> tuple[Response, Workload | None]:
        """Send ``request`` to the endpoints in ``plans``: a connect failure moves on to the next one
        (up to UPSTREAM_ATTEMPTS, as before routes existed); a retriable answer under ``policy`` is
        retried on another endpoint (Envoy's previous-hosts predicate) after a jittered backoff: a
        listed status, a trailers-only gRPC answer whose ``grpc-status`` is listed (Istio always lists
        ``cancelled`` and ``unavailable``), or an HTTP/2 stream the upstream refused unprocessed."""
        body = await self._replayable(request, policy)
        retries_left = policy.attempts if body is not None else 0
        connect_failures: list[str] = []
        index, retries = 0, 0
        while True:
            plan = plans[index % len(plans)]
            index += 1
            if body is not None:
                request.body = BodyStream.of(body[0], body[1])
            try:
                async with asyncio.timeout(per_try):
                    response = await self._send(plan, request, downstream, protocol, traffic)
            except TimeoutError:
                response = local_response(504, "upstream per-try timeout", flags="UT")
                self.connected(plan, None)
                observe_attempt(traffic, plan, 504, len(plans))
                return response, plan.endpoint
            except UpstreamError as exc:
                self.connected(plan, exc)
                observe_attempt(traffic, plan, None, len(plans))
                if exc.flags == "UF":
                    connect_failures.append(str(exc))
                    if len(connect_failures) < min(UPSTREAM_ATTEMPTS, len(plans) + retries_left):
                        continue
                    reason = "upstream connect error: " + "; ".join(connect_failures)
                    return local_response(503, reason, flags="UF"), None
                if (
                    exc.refused
                    and retries < retries_left
                    and is_retriable(policy, None, False, refused_stream=True)
                ):
                    retries += 1  # never processed upstream: safe to send again (refused-stream)
                    await asyncio.sleep(retry_backoff(policy, retries, self.rng))
                    continue
                return local_response(503, f"upstream {exc}", flags=exc.flags), plan.endpoint
            self.connected(plan, None)
            observe_attempt(traffic, plan, response.status, len(plans))
            grpc_status = _header_grpc_status(response)
            if retries < retries_left and is_retriable(
                policy, response.status, False, grpc_status=grpc_status
            ):
                retries += 1
                response.body.abandon()
                await asyncio.sleep(retry_backoff(policy, retries, self.rng))
                continue
            return response, plan.endpoint

    # -- policy -------------------------------------------------------------------------------------

    def _authorize(
        self, snapshot: Snapshot, request: Request, downstream: Downstream, service: Service | None, port: int
    ) -> Response | None:
        attributes = RequestAttributes(
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1").split("?", 1)[0],
            host=request.authority.decode("latin-1"),
            destination_port=port,
            headers=tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers),
            source_principal=_principal(downstream.peer_identity),
            source_namespace=_namespace_of(downstream.peer_identity),
            source_ip=downstream.peer_ip,
        )
        decision = authorize_request(self.policies(snapshot, service), attributes)
        if decision.allowed:
            return None
        log.info(
            "denied %s %s from %s: %s",
            attributes.method,
            attributes.path,
            downstream.peer_identity,
            decision.reason,
        )
        return local_response(403, RBAC_DENIED_BODY, flags="RBAC", details=decision.reason)

    # -- upstream -----------------------------------------------------------------------------------

    def _upstream_protocol(self, request: Request, service: Service | None, port: int) -> str:
        if request.upgrade is not None:
            return "http1"
        declared = declared_protocol(service_port(service, port))
        if declared:
            return declared
        return "h2" if request.version == "2" else "http1"

    async def _send(
        self,
        plan: OutboundPlan,
        request: Request,
        downstream: Downstream,
        protocol: str,
        traffic: ServiceTraffic | None = None,
    ) -> Response:
        async def connect() -> Duplex:
            return await self.open_upstream(plan, downstream)

        key = (plan.address, getattr(plan, "authority", ""), downstream.peer_ip, protocol)
        upstream = self.h2 if protocol == "h2" else self.http1
        pool = traffic.policy.connection_pool if traffic is not None else None
        per_connection = pool.max_requests_per_connection if pool is not None else None
        return await upstream.send(key, connect, request, max_requests_per_connection=per_connection)

    # -- telemetry ----------------------------------------------------------------------------------


async def relay_tcp(router: WaypointRouter, stream: Duplex, downstream: Downstream, initial: bytes) -> None:
    """Opaque TCP through the waypoint (L4 only): route as for HTTP, authorize, then relay bytes. A
    TCPRoute on the Service port picks the backend per connection by weight (``tcp_backends``).

    Policy on opaque TCP fails closed: the request attributes are empty (no method, path, host or
    headers), so an ALLOW rule that names an HTTP attribute cannot match; and since a DENY rule that
    names one could not match either (which would let denied traffic through), any DENY policy that
    applies refuses opaque TCP altogether.
    """
    snapshot = router.store.current
    where = router.destination(snapshot, downstream.target)
    if isinstance(where.plans, RouteError):
        log.info("opaque TCP to %s refused: %s", downstream.target, where.plans.reason)
        stream.abort()
        return
    policies = router.policies(snapshot, where.service)
    attributes = RequestAttributes(
        method="",
        path="",
        host="",
        destination_port=where.port,
        headers=(),
        source_principal=_principal(downstream.peer_identity),
        source_namespace=_namespace_of(downstream.peer_identity),
        source_ip=downstream.peer_ip,
    )
    has_deny = any(p.action is Action.DENY and not p.dry_run for p in policies)
    if has_deny or not authorize_request(policies, attributes).allowed:
        log.info("opaque TCP to %s from %s denied by policy", downstream.target, downstream.peer_identity)
        stream.abort()
        return
    plans = where.plans
    rule = tcp_backends(snapshot.routes_for(where.service.key), where.port) if where.service else None
    if rule is not None:  # a TCPRoute: the connection goes to the backend its weights draw
        routed = router.tcp_backend(snapshot, rule)
        if routed is None:
            log.info("opaque TCP to %s refused: the TCPRoute's draw has no usable backend", downstream.target)
            stream.abort()
            return
        plans = routed
    for plan in plans[:UPSTREAM_ATTEMPTS]:
        try:
            upstream = await router.open_upstream(plan, downstream)
        except UpstreamError as exc:
            router.connected(plan, exc)
            log.info("opaque TCP to %s: %s", downstream.target, exc)
            continue
        router.connected(plan, None)
        if initial:
            upstream.write(initial)
        await relay(stream, upstream)
        return
    stream.abort()
