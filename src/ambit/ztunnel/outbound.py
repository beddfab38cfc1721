"""The outbound path (15001): one captured connection of a local pod, carried out as its plan says.

For each connection accepted on a pod's 15001 listener (DESIGN §2, facts §1.7):

1. read the original destination (SO_ORIGINAL_DST via the pod's :class:`SocketFactory`); a
   connection that was not redirected (made straight to 15001) is refused, never looped back;
2. take the current snapshot. Until the first config has synced and holds this pod, a destination
   inside the cluster CIDRs is held for up to ``sync_timeout`` and then refused (fail closed); a
   destination outside them passes through as plain TCP at once;
3. :func:`~ambit.routing.outbound_candidates` gives every usable plan, best first; a
   :class:`~ambit.routing.RouteError` resets the client;
4. an :class:`~ambit.routing.HbonePlan` opens a CONNECT stream on the pool with **the source pod's**
   certificate (key = source identity, destination identity, ``ip:15008``, source IP), with
   ``forwarded: for="<client>"[;host=<service>]``; a :class:`~ambit.routing.PassthroughPlan`
   connects plain TCP, marked ``0x539`` so the pod's capture rules let it out;
5. a failure to connect — TCP, TLS, wrong server identity, or a ``503`` (the endpoint could not reach
   its app) — moves on to the next candidate, up to ``outbound_attempts``, before the client sees
   anything. A ``401`` (denied by the destination's policy), a ``400``, or no certificate for the
   source identity ends the attempts: the client's connection is reset. Nothing is ever sent in
   plaintext instead of a tunnel;
6. join the client and the upstream (:func:`~ambit.net.duplex.join`: the handler's task ends here,
   the bytes move in callbacks) with half-close; when both ends are closed, one metrics update
   (reporter ``source``) and one access-log line.

:func:`hbone_connector` is the pool's connector: it presents the source identity's current client
certificate over the socket the request's dialer made (:func:`socket_dialer`: the handler passes its
pod's with each stream, so the connection leaves from the pod's namespace, with its IP and the mark).
"""

from __future__ import annotations

import asyncio
import logging
import socket

from ambit.identity.secrets import SecretUnavailable
from ambit.identity.tls import PeerIdentityError
from ambit.model.workload import Workload
from ambit.net.duplex import Duplex, RelayGroup, RelayResult, TcpDuplex, join
from ambit.net.hbone import HboneClientConnection, TunnelRejected
from ambit.net.pool import Connector, Dial, OnClosed, PoolKey, handshake
from ambit.protocol.hbone import HboneSettings, request_headers
from ambit.proxy import accesslog
from ambit.proxy.accesslog import format_address
from ambit.proxy.certs import WorkloadCredentials
from ambit.proxy.records import OUTBOUND, ConnectionRecord
from ambit.proxy.sockets import Address, OriginalDestinationError, SocketFactory
from ambit.routing import (
    FLAG_CONNECT,
    FLAG_DENY,
    FLAG_IDENTITY,
    FLAG_NONE,
    HbonePlan,
    OutboundPlan,
    PassthroughPlan,
    RouteError,
    answer_refusal,
    outbound_candidates,
)
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.inputs import PodInfo, ProxyInputs
from ambit.ztunnel.metrics import ConnectionMetrics
from ambit.ztunnel.telemetry import end_connection

log = logging.getLogger(__name__)


class _Stop(Exception):
    """No further candidate is tried; ``flags`` and ``outcome`` say why."""

    def __init__(self, reason: str, flags: str, outcome: str) -> None:
        super().__init__(reason)
        self.flags = flags
        self.outcome = outcome


def hbone_connector(config: ZtunnelConfig, credentials: WorkloadCredentials, default_dial: Dial) -> Connector:
    """The pool connector: TCP by the request's dialer (the source pod's: see :func:`socket_dialer`),
    else ``default_dial``; TLS with the source identity's cert, the server must present exactly
    ``key.destination`` (checked before any byte is sent)."""
    timeouts = config.hbone_timeouts
    settings = HboneSettings.client()

    async def connect(key: PoolKey, on_closed: OnClosed, dial: Dial | None) -> HboneClientConnection:
        context = await credentials.client_context(key.source)  # SecretUnavailable: fail closed
        sock = await (dial if dial is not None else default_dial)(key)
        return await handshake(sock, context, key, on_closed, settings=settings, timeouts=timeouts)

    return connect


def socket_dialer(sockets: SocketFactory, config: ZtunnelConfig) -> Dial:
    """A pool dialer whose sockets ``sockets`` makes (in the source pod's namespace), from the key's
    source IP, marked so the pod's capture lets them out. Made once per pod, never per connection."""

    async def dial(key: PoolKey) -> socket.socket:
        return await sockets.connect_socket(
            key.address, source_ip=key.source_ip, mark=config.mark, connect_timeout=config.connect_timeout
        )

    return dial


class OutboundHandler:
    """Handles the connections captured on one pod's 15001 listener."""

    def __init__(self, inputs: ProxyInputs, pod: PodInfo, sockets: SocketFactory, relays: RelayGroup) -> None:
        self.inputs = inputs
        self.pod = pod
        self.sockets = sockets
        self.relays = relays
        self.dial = socket_dialer(sockets, inputs.config)  # HBONE connections leave from this pod

    async def handle(self, client: TcpDuplex) -> None:
        """Carry out one captured connection; never raises (failures reset the client)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        transport = client.transport
        assert transport is not None  # called from connection_made
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        src: Address = (str(peer[0]), int(peer[1])) if peer else ("", 0)
        tracker = _OutboundTracker(self, src, started)
        try:
            try:
                dst = self.sockets.original_destination(transport)
            except OriginalDestinationError as exc:
                raise _Stop(
                    f"cannot read the original destination: {exc}", FLAG_NONE, accesslog.ERROR
                ) from exc
            tracker.dst = dst
            if local and (str(local[0]), int(local[1])) == dst:
                raise _Stop(
                    "connection was not redirected (made to the listener itself)",
                    FLAG_NONE,
                    accesslog.REFUSED,
                )
            await self._route(client, src, dst, tracker)
        except _Stop as stop:
            client.abort()
            tracker.finish(stop.outcome, stop.flags, str(stop))
        except asyncio.CancelledError:
            client.abort()
            tracker.finish(accesslog.ERROR, FLAG_NONE, "cancelled (drain deadline or shutdown)")
            raise
        except Exception as exc:  # a bug: never let it escape into the loop's handler
            log.exception("outbound connection from %s failed", format_address(src))
            client.abort()
            tracker.finish(accesslog.ERROR, FLAG_NONE, f"internal error: {exc!r}")

    async def _route(self, client: TcpDuplex, src: Address, dst: Address, tracker: _OutboundTracker) -> None:
        inputs, config = self.inputs, self.inputs.config
        snapshot = inputs.state.ready(self.pod.uid)
        if snapshot is None:
            if not config.in_cluster(dst[0]):
                # outside the cluster: plain TCP, no need to wait for the config
                upstream = await self._connect_passthrough(dst, src, tracker, None, None)
                self._join(client, upstream, tracker)
                return
            snapshot = await inputs.state.wait_ready(self.pod.uid, config.sync_timeout)
            if snapshot is None:
                reason = (
                    f"config has not synced within {config.sync_timeout:g} s"
                    if not inputs.state.synced
                    else f"workload {self.pod.uid} is not in the config after {config.sync_timeout:g} s"
                )
                raise _Stop(f"{reason}; refusing in-cluster destination", FLAG_NONE, accesslog.REFUSED)
        source = snapshot.workloads[self.pod.uid]
        tracker.source = source
        now = asyncio.get_running_loop().time()
        candidates = outbound_candidates(
            snapshot,
            source,
            dst[0],
            dst[1],
            cluster_cidrs=config.cluster_cidrs,
            rng=inputs.rng,
            ejected=lambda uids: inputs.ejections.ejected(uids, now),
        )
        if isinstance(candidates, RouteError):
            raise _Stop(candidates.reason, FLAG_NONE, accesslog.REFUSED)
        upstream = await self._first_that_connects(candidates[: config.outbound_attempts], src, tracker)
        self._join(client, upstream, tracker)

    async def _first_that_connects(
        self, candidates: list[OutboundPlan], src: Address, tracker: _OutboundTracker
    ) -> Duplex:
        errors: list[str] = []
        for plan in candidates:
            tracker.plan = plan
            try:
                if isinstance(plan, HbonePlan):
                    stream = await self._open_hbone(plan, src)
                    if plan.waypoint is not None:
                        self.inputs.ejections.succeeded(plan.endpoint.uid)
                    return stream
                return await self._connect_passthrough(plan.address, src, tracker, plan, plan.endpoint)
            except TunnelRejected as exc:
                refusal = answer_refusal(exc.status, f"{_describe(plan)} answered {exc.status}")
                if refusal is not None:
                    tracker.count_open()
                    outcome = accesslog.DENIED if refusal.flag == FLAG_DENY else accesslog.REFUSED
                    raise _Stop(refusal.reason, refusal.flag, outcome) from exc
                errors.append(f"{_describe(plan)}: 503")
                self._eject(plan, errors[-1])
            except SecretUnavailable as exc:
                tracker.count_open()
                raise _Stop(str(exc), FLAG_IDENTITY, accesslog.REFUSED) from exc
            except (OSError, PeerIdentityError) as exc:
                errors.append(f"{_describe(plan)}: {exc or type(exc).__name__}")
                self._eject(plan, errors[-1])
            if plan is not candidates[-1]:
                log.info("outbound %s: %s; trying the next endpoint", format_address(src), errors[-1])
        tracker.count_open()
        raise _Stop("no endpoint could be reached: " + "; ".join(errors), FLAG_CONNECT, accesslog.ERROR)

    def _eject(self, plan: OutboundPlan, reason: str) -> None:
        """A waypoint replica that refused or timed out is tried last for a while."""
        if isinstance(plan, HbonePlan) and plan.waypoint is not None:
            now = asyncio.get_running_loop().time()
            ejection = self.inputs.ejections.failed(plan.endpoint.uid, now, reason)
            log.warning(
                "waypoint replica %s/%s ejected for %.0f s (failure %d): %s",
                plan.endpoint.namespace,
                plan.endpoint.name,
                ejection.until - now,
                ejection.failures,
                reason,
            )

    async def _open_hbone(self, plan: HbonePlan, src: Address) -> Duplex:
        key = PoolKey(self.pod.identity, plan.destination_identity, plan.address, src[0])
        host = plan.service.hostname if plan.service is not None else None
        headers = request_headers(src[0], source_port=src[1], host=host)
        return await self.inputs.pool.open_stream(key, plan.authority, headers, dial=self.dial)

    async def _connect_passthrough(
        self,
        dst: Address,
        src: Address,
        tracker: _OutboundTracker,
        plan: PassthroughPlan | None,
        endpoint: Workload | None,
    ) -> Duplex:
        config = self.inputs.config
        try:
            return await self.sockets.connect_upstream(
                dst, source_ip=src[0] or None, mark=config.mark, connect_timeout=config.connect_timeout
            )
        except OSError as exc:
            if plan is None:  # the only way out (external, before sync): nothing to retry
                tracker.count_open()
                raise _Stop(
                    f"connect to {format_address(dst)}: {exc}", FLAG_CONNECT, accesslog.ERROR
                ) from exc
            raise

    def _join(self, client: TcpDuplex, upstream: Duplex, tracker: _OutboundTracker) -> None:
        tracker.count_open()
        join(client, upstream, tracker.relay_done, group=self.relays)


def _describe(plan: OutboundPlan) -> str:
    if isinstance(plan, HbonePlan):
        return f"HBONE {format_address(plan.address)} ({plan.authority})"
    return f"TCP {format_address(plan.address)}"


class _OutboundTracker:
    """One outbound connection's telemetry: its :class:`ConnectionRecord` (made once), its metrics
    (reporter ``source``) and its access-log line, written once when it ends."""

    __slots__ = ("done", "dst", "handler", "metrics", "plan", "source", "src", "started")

    def __init__(self, handler: OutboundHandler, src: Address, started: float) -> None:
        self.handler = handler
        self.src = src
        self.started = started
        self.dst: Address | None = None
        self.source: Workload | None = None
        self.plan: OutboundPlan | None = None  # the candidate being tried, then the one that carried it
        self.metrics: ConnectionMetrics | None = None
        self.done = False

    def connection_record(self) -> ConnectionRecord:
        """The connection as known now, labelled with the plan's destination: made when it is counted
        as opened and again at its end (the plan is settled by then); not kept in between, so an idle
        connection holds no record."""
        plan, pod = self.plan, self.handler.pod
        endpoint = plan.endpoint if plan is not None else None
        hbone = plan if isinstance(plan, HbonePlan) else None
        return ConnectionRecord(
            direction=OUTBOUND,
            src_addr=self.src,
            dst_addr=self.dst,
            hbone_addr=hbone.authority if hbone is not None else None,
            source=self.source,
            source_name=pod.name,
            source_namespace=pod.namespace,
            source_principal=pod.identity,
            destination=endpoint,
            destination_name=endpoint.name if endpoint is not None else None,
            destination_namespace=endpoint.namespace if endpoint is not None else None,
            destination_principal=hbone.destination_identity if hbone is not None else None,
            service=plan.service if plan is not None else None,
        )

    def count_open(self) -> None:
        """Count the connection as opened (once), labelled with the current plan's destination."""
        if self.metrics is None:
            self.metrics = self.handler.inputs.metrics.open(self.connection_record())

    def relay_done(self, result: RelayResult) -> None:
        """Both ends of the relayed connection are closed."""
        error = result.error
        self.finish(
            accesslog.OK if error is None else accesslog.ERROR,
            FLAG_NONE,
            None if error is None else str(error) or type(error).__name__,
            received=result.a_to_b,
            sent=result.b_to_a,
        )

    def finish(
        self, outcome: str, flags: str, error: str | None, *, received: int = 0, sent: int = 0
    ) -> None:
        end_connection(self, outcome, flags, error, received=received, sent=sent)
