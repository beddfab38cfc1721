"""The plaintext inbound path (15006): a non-mesh client's connection captured in the pod's namespace.

The capture rules redirect every inbound TCP connection of the pod except to 15008 here. There is no
peer identity, so L4 authorization sees a connection without a principal: under PeerAuthentication
STRICT (the synthesized ``istio_converted_static_strict`` DENY policy) it is refused, under
PERMISSIVE it is admitted if the pod's other policies allow it (facts §1.6).

1. original destination (SO_ORIGINAL_DST: the pod's IP and the app's port); wait for the synced
   config holding this pod (up to ``sync_timeout``), else reset;
2. :func:`~ambit.routing.plan_inbound_plaintext`; a refusal resets the client (TCP RST);
3. connect the app from the client's IP (transparent, marked), decide again if the config changed
   meanwhile, register in the connection registry (rechecked on policy changes), relay, then metrics
   (reporter ``destination``, ``connection_security_policy=none``) and the access log.
"""

from __future__ import annotations

import asyncio
import logging

from ambit.net.duplex import RelayGroup, TcpDuplex
from ambit.proxy import accesslog
from ambit.proxy.records import INBOUND_PLAINTEXT
from ambit.proxy.sockets import OriginalDestinationError, SocketFactory
from ambit.routing import FLAG_CONNECT, InboundRefusal, plan_inbound_plaintext
from ambit.ztunnel.inbound import InboundTracker, join_registered, not_synced
from ambit.ztunnel.inputs import PodInfo, ProxyInputs

log = logging.getLogger(__name__)


class PlaintextInboundHandler:
    """Handles the connections captured on one pod's 15006 listener."""

    def __init__(self, inputs: ProxyInputs, pod: PodInfo, sockets: SocketFactory, relays: RelayGroup) -> None:
        self.inputs = inputs
        self.pod = pod
        self.sockets = sockets
        self.relays = relays

    async def handle(self, client: TcpDuplex) -> None:
        """Carry out one captured connection; failures reset the client."""
        inputs, config = self.inputs, self.inputs.config
        transport = client.transport
        assert transport is not None  # called from connection_made
        peer = transport.get_extra_info("peername")
        src = (str(peer[0]), int(peer[1])) if peer else None
        tracker = InboundTracker(
            inputs,
            self.pod,
            direction=INBOUND_PLAINTEXT,
            peer=None,
            src=src,
            dst=None,
            authority=None,
        )
        try:
            try:
                tracker.dst = dst = self.sockets.original_destination(transport)
            except OriginalDestinationError as exc:
                self._refuse(
                    client, tracker, InboundRefusal(400, f"cannot read the original destination: {exc}")
                )
                return
            snapshot = inputs.state.ready(self.pod.uid)
            if snapshot is None:
                snapshot = await inputs.state.wait_ready(self.pod.uid, config.sync_timeout)
                if snapshot is None:
                    self._refuse(client, tracker, not_synced(self.pod.uid))
                    return
            local = snapshot.workloads[self.pod.uid]
            tracker.local = local
            source_ip = src[0] if src is not None else ""
            decided = plan_inbound_plaintext(snapshot, local, dst[1], source_ip=source_ip)
            if isinstance(decided, InboundRefusal):
                self._refuse(client, tracker, decided)
                return
            tracker.count_open()
            try:
                upstream = await self.sockets.connect_upstream(
                    decided.upstream,
                    source_ip=source_ip or None,
                    transparent=config.spoof_inbound_source,
                    mark=config.mark,
                    connect_timeout=config.connect_timeout,
                )
            except OSError as exc:
                reason = f"app {decided.upstream[0]}:{decided.upstream[1]}: {exc}"
                self._refuse(client, tracker, InboundRefusal(503, reason, FLAG_CONNECT))
                return
            current = inputs.store.current
            if current is not snapshot:  # the config changed while connecting: decide again
                snapshot = current
                again = plan_inbound_plaintext(snapshot, local, dst[1], source_ip=source_ip)
                if isinstance(again, InboundRefusal):
                    upstream.abort()
                    self._refuse(client, tracker, again)
                    return
                decided = again
            live = inputs.connections.register(
                decided.workload,
                None,
                source_ip,
                decided.upstream,
                (client, upstream),
                policies=snapshot.policies_for(decided.workload),
            )
            join_registered(live, client, upstream, tracker, self.relays)
        except asyncio.CancelledError:
            client.abort()
            tracker.finish(accesslog.ERROR, "-", "cancelled (drain deadline or shutdown)", client, None)
            raise
        except Exception as exc:  # a bug: never let it escape into the loop's handler
            log.exception("plaintext inbound connection from %s failed", src)
            client.abort()
            tracker.finish(accesslog.ERROR, "-", f"internal error: {exc!r}", client, None)

    @staticmethod
    def _refuse(client: TcpDuplex, tracker: InboundTracker, refusal: InboundRefusal) -> None:
        client.abort()
        tracker.refused(refusal)
