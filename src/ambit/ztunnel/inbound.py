"""The HBONE inbound path (15008): one CONNECT to a local pod, decided then carried out.

Each local pod has its own :class:`~ambit.net.hbone.HboneServer` presenting **the pod's** certificate
(in-pod mode: the listener lives in the pod's namespace, so the dialled address picks the identity).
For each well-formed CONNECT (facts §1.3, DESIGN §2):

1. wait (up to ``sync_timeout``) until the config has synced and holds this pod, else ``503``;
2. :func:`~ambit.routing.inbound_source`: the client must be a workload identity (a node identity
   never is a client), else ``401``; the source IP is the TCP peer's address, or ``forwarded: for=``
   when the client is the pod's own waypoint (see :mod:`ambit.routing`);
3. :func:`~ambit.routing.plan_inbound` checks the target (``400`` wrong IP or a ztunnel port) and L4
   authorization (``401``); the refusal (status, response flag, reason) is the answer;
4. connect the app at ``plan.upstream`` from the client's IP (``IP_TRANSPARENT`` in production,
   marked ``0x539``); refused or timed out → ``503`` (``CONNECT``);
5. if the config changed while connecting, decide again on the new snapshot; then ``200`` and
   register the connection (:mod:`ambit.ztunnel.connections`) *in the same step*, so no policy
   change can slip between the decision and the registration;
6. join the stream and the app's connection (:func:`~ambit.net.duplex.join`: the handler's task ends
   here, the bytes move in callbacks) with half-close; when both ends are closed, metrics (reporter
   ``destination``, ``mutual_tls``) and the access log.

In in-pod mode the client's ztunnel dials from inside the client pod's namespace, so the TCP source
address of an HBONE connection *is* the client pod's IP; ambit uses it for authorization and spoofs
it toward the app.
"""

from __future__ import annotations

import asyncio
import logging

from ambit.model.identity import Identity, NodeIdentity
from ambit.model.workload import Service, Workload
from ambit.net.duplex import Duplex, RelayGroup, RelayResult, join
from ambit.net.hbone import InboundTunnel
from ambit.proxy import accesslog
from ambit.proxy.accesslog import format_address
from ambit.proxy.records import INBOUND, ConnectionRecord
from ambit.proxy.sockets import SocketFactory
from ambit.routing import FLAG_CONNECT, FLAG_DENY, FLAG_NONE, InboundRefusal, inbound_source, plan_inbound
from ambit.ztunnel.connections import LiveConnection
from ambit.ztunnel.inputs import PodInfo, ProxyInputs
from ambit.ztunnel.metrics import ConnectionMetrics
from ambit.ztunnel.telemetry import end_connection

log = logging.getLogger(__name__)

# --- the handler ------------------------------------------------------------------------------------


class InboundHandler:
    """Handles the CONNECTs arriving on one pod's 15008 listener."""

    def __init__(self, inputs: ProxyInputs, pod: PodInfo, sockets: SocketFactory, relays: RelayGroup) -> None:
        self.inputs = inputs
        self.pod = pod
        self.sockets = sockets
        self.relays = relays

    async def handle(self, tunnel: InboundTunnel) -> None:
        """Decide and carry out one CONNECT; refusals answer with their status."""
        request = tunnel.request
        tracker = InboundTracker(
            self.inputs,
            self.pod,
            direction=INBOUND,
            peer=tunnel.peer_identity,
            src=tunnel.peer_address,
            dst=(request.host, request.port),
            authority=request.authority,
        )
        try:
            await self._handle(tunnel, tracker)
        except asyncio.CancelledError:  # the server is closing (drain deadline, pod removed)
            tracker.finish(accesslog.ERROR, FLAG_NONE, "cancelled (drain deadline or shutdown)", None, None)
            raise

    async def _handle(self, tunnel: InboundTunnel, tracker: InboundTracker) -> None:
        inputs, config = self.inputs, self.inputs.config
        request = tunnel.request
        snapshot = inputs.state.ready(self.pod.uid)
        if snapshot is None:
            snapshot = await inputs.state.wait_ready(self.pod.uid, config.sync_timeout)
            if snapshot is None:
                self._refuse(tunnel, tracker, not_synced(self.pod.uid))
                return
        local = snapshot.workloads[self.pod.uid]
        tracker.local = local
        source = inbound_source(snapshot, local, tunnel.peer_identity, tunnel.peer_address, request.headers)
        if isinstance(source, InboundRefusal):
            self._refuse(tunnel, tracker, source)
            return
        tracker.service = source.service
        peer, source_ip = source.peer, source.ip
        decided = plan_inbound(snapshot, local, request.host, request.port, peer=peer, source_ip=source_ip)
        if isinstance(decided, InboundRefusal):
            self._refuse(tunnel, tracker, decided)
            return
        tracker.count_open()
        try:
            upstream = await self.sockets.connect_upstream(
                decided.upstream,
                source_ip=source_ip,
                transparent=config.spoof_inbound_source,
                mark=config.mark,
                connect_timeout=config.connect_timeout,
            )
        except OSError as exc:
            self._refuse(
                tunnel,
                tracker,
                InboundRefusal(503, f"app {format_address(decided.upstream)}: {exc}", FLAG_CONNECT),
            )
            return
        current = inputs.store.current
        if current is not snapshot:  # the config changed while connecting: decide again
            snapshot = current
            again = plan_inbound(snapshot, local, request.host, request.port, peer=peer, source_ip=source_ip)
            if isinstance(again, InboundRefusal):
                upstream.abort()
                self._refuse(tunnel, tracker, again)
                return
            decided = again
        stream = tunnel.accept()
        live = inputs.connections.register(
            decided.workload,
            peer,
            source_ip,
            decided.upstream,
            (stream, upstream),
            policies=snapshot.policies_for(decided.workload),
        )
        join_registered(live, stream, upstream, tracker, self.relays)

    @staticmethod
    def _refuse(tunnel: InboundTunnel, tracker: InboundTracker, refusal: InboundRefusal) -> None:
        tunnel.reject(refusal.status)
        tracker.refused(refusal)


def not_synced(uid: str) -> InboundRefusal:
    """The refusal of a connection to a pod the synced config does not hold (yet)."""
    return InboundRefusal(503, f"workload {uid} is not in the synced config")


def join_registered(
    live: LiveConnection, downstream: Duplex, upstream: Duplex, tracker: InboundTracker, relays: RelayGroup
) -> None:
    """Join an admitted connection's ends; when both are closed, unregister it and write its record."""
    tracker.live = live
    tracker.ends = (downstream, upstream)
    join(downstream, upstream, tracker.relay_done, group=relays)


class InboundTracker:
    """One inbound connection's telemetry: its :class:`ConnectionRecord` (made once), its metrics
    (reporter ``destination``) and its access-log line, written once when it ends."""

    __slots__ = (
        "_source",
        "_source_looked_up",
        "authority",
        "direction",
        "done",
        "dst",
        "ends",
        "inputs",
        "live",
        "local",
        "metrics",
        "peer",
        "pod",
        "service",
        "src",
        "started",
    )

    def __init__(
        self,
        inputs: ProxyInputs,
        pod: PodInfo,
        *,
        direction: str,
        peer: Identity | NodeIdentity | None,
        src: tuple[str, int] | None,
        dst: tuple[str, int] | None,
        authority: str | None,
    ) -> None:
        self.inputs = inputs
        self.pod = pod
        self.direction = direction
        self.peer = peer
        self.src = src
        self.dst = dst
        self.authority = authority
        self.started = asyncio.get_running_loop().time()
        self.local: Workload | None = None
        self.service: Service | None = None
        self.metrics: ConnectionMetrics | None = None
        self._source: Workload | None = None
        self._source_looked_up = False
        self.done = False
        self.live: LiveConnection | None = None  # registered for rechecks while relayed
        self.ends: tuple[Duplex, Duplex] | None = None  # (downstream, upstream) while relayed

    def relay_done(self, result: RelayResult) -> None:
        """Both ends of the relayed connection are closed: unregister it and write the record."""
        live, ends = self.live, self.ends
        self.live = self.ends = None
        downstream, upstream = ends if ends is not None else (None, None)
        if live is not None:
            self.inputs.connections.unregister(live)
            if live.revoked is not None:
                self.finish(
                    accesslog.DENIED, FLAG_DENY, f"closed by policy: {live.revoked}", downstream, upstream
                )
                return
        error = result.error
        if error is None:
            self.finish(accesslog.OK, FLAG_NONE, None, downstream, upstream)
        else:
            self.finish(accesslog.ERROR, FLAG_NONE, str(error) or type(error).__name__, downstream, upstream)

    @property
    def source(self) -> Workload | None:
        """The client's workload, looked up by its IP (for labels only; never for decisions)."""
        if not self._source_looked_up:
            self._source_looked_up = True
            if self.src is not None:
                self._source = self.inputs.store.current.find_workload_by_ip(self.src[0])
        return self._source

    def connection_record(self) -> ConnectionRecord:
        """The connection as known now: made when it is counted as opened and again at its end (the
        facts are settled by then); not kept in between, so an idle connection holds no record."""
        source, pod = self.source, self.pod
        return ConnectionRecord(
            direction=self.direction,
            src_addr=self.src,
            dst_addr=self.dst,
            hbone_addr=self.authority,
            source=source,
            source_name=source.name if source is not None else None,
            source_namespace=source.namespace if source is not None else None,
            source_principal=self.peer,
            destination=self.local,
            destination_name=pod.name,
            destination_namespace=pod.namespace,
            destination_principal=pod.identity,
            service=self.service,
        )

    def count_open(self) -> None:
        if self.metrics is None:
            self.metrics = self.inputs.metrics.open(self.connection_record())

    def refused(self, refusal: InboundRefusal) -> None:
        """The connection was refused; a denial (``DENY``) counts as opened, any other refusal after
        it was counted is a connect failure (``CONNECT``)."""
        status, reason = refusal.status, refusal.reason
        log.info(
            "%s %s -> %s refused (%d): %s",
            self.direction,
            format_address(self.src),
            self.authority or format_address(self.dst),
            status,
            reason,
        )
        if refusal.flag == FLAG_DENY:
            self.count_open()
            self.finish(accesslog.DENIED, FLAG_DENY, reason, None, None)
        else:
            flags = refusal.flag if refusal.flag != FLAG_NONE or self.metrics is None else FLAG_CONNECT
            self.finish(accesslog.REFUSED, flags, f"{status}: {reason}", None, None)

    def finish(
        self,
        outcome: str,
        flags: str,
        error: str | None,
        downstream: Duplex | None,
        upstream: Duplex | None,
    ) -> None:
        received = downstream.bytes_in if downstream is not None else 0
        sent = upstream.bytes_in if upstream is not None else 0
        end_connection(self, outcome, flags, error, received=received, sent=sent)
