"""The delta xDS server: streams the snapshot cache to every proxy, pushing only what changed.

One ``DeltaAggregatedResources`` stream per proxy connection; per stream, one
:class:`~ambit.protocol.xds.ServerSession` per resource type does the bookkeeping (what the proxy
holds, the outstanding nonce, ACK/NACK). This module is the asyncio/gRPC edge around them:

* the proxy's identity is the SPIFFE ID of its verified client certificate (the TLS handshake
  required one); the node id it sends is only a label in logs;
* cache changes are debounced: the first change after a quiet period starts a timer of ``debounce``
  seconds (default 100 ms) and when it fires the cache's state at that moment is published to every
  stream. So a burst of changes is one push, and no change waits longer than ``debounce``;
* nothing is served until the cache has been filled once (a replica that has not yet read the store
  must not tell proxies to delete everything); streams opened before that simply wait;
* a NACK is logged with the proxy, its node id, the type, the nonce and the resources it names, is
  counted, and is passed to ``on_nack``; the proxy keeps its last good version of those resources and
  the rejected version is not sent to it again.

The service is registered under our path and under Envoy's
(``/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources``): the messages
are wire-compatible with Envoy's, so clients built on Envoy's protos can use it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from ambit.control.cache import CacheSnapshot, SnapshotCache
from ambit.identity.certs import CertError, identity_of_certificate
from ambit.model.identity import Identity, NodeIdentity
from ambit.net.tasks import spawn
from ambit.protocol.xds import Acked, Nacked, ServerSession, StaleNonce
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2

log = logging.getLogger(__name__)

ADS_SERVICE = "ambit.discovery.v1.AggregatedDiscoveryService"
ENVOY_ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"
ADS_METHOD = "DeltaAggregatedResources"
DEFAULT_DEBOUNCE = 0.1
_QUEUE_LIMIT = 64
_NACK_HISTORY = 100


def peer_identity(context: Any) -> Identity | NodeIdentity | None:
    """The SPIFFE identity of the verified client certificate of a gRPC call, or None."""
    auth = context.auth_context()
    pems = auth.get("x509_pem_cert") if auth else None
    if not pems:
        return None
    try:
        return identity_of_certificate(bytes(next(iter(pems))))
    except CertError:
        return None


@dataclass(frozen=True, slots=True)
class NackRecord:
    """One NACK: who refused what, and why."""

    proxy: str
    node_id: str
    type_url: str
    nonce: str
    resource_names: tuple[str, ...]
    message: str


@dataclass(frozen=True, slots=True)
class PushRecord:
    """One response sent to one proxy."""

    proxy: str
    type_url: str
    nonce: str
    resources: int
    removed: int
    size: int


@dataclass
class XdsServerStats:
    streams_total: int = 0
    streams_active: int = 0
    publishes: int = 0
    responses: int = 0
    resources_sent: int = 0
    removals_sent: int = 0
    acks: int = 0
    nacks: int = 0
    stale_nonces: int = 0
    recent_nacks: deque[NackRecord] = field(default_factory=lambda: deque(maxlen=_NACK_HISTORY))


_WAKE = object()
_EOF = object()


class _Stream:
    def __init__(self, stream_id: int, proxy: Identity | NodeIdentity) -> None:
        self.id = stream_id
        self.proxy = proxy
        self.node_id = ""
        self.queue: asyncio.Queue[object] = asyncio.Queue(_QUEUE_LIMIT)
        self.sessions: dict[str, ServerSession] = {}

    def wake(self) -> None:
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(_WAKE)

    @property
    def label(self) -> str:
        return f"{self.proxy} (node id {self.node_id or '-'})"


class XdsServer:
    """The ADS servicer over a :class:`SnapshotCache`; see the module docstring."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        debounce: float = DEFAULT_DEBOUNCE,
        trust_domain: str | None = None,
        on_nack: Callable[[NackRecord], None] | None = None,
        on_push: Callable[[PushRecord], None] | None = None,
    ) -> None:
        if debounce < 0:
            raise ValueError("debounce must not be negative")
        self._cache = cache
        self._debounce = debounce
        self._trust_domain = trust_domain
        self._on_nack = on_nack
        self._on_push = on_push
        self.stats = XdsServerStats()
        self._published: CacheSnapshot | None = None
        # per type: (the previously published versions, the names whose version differs in _published)
        self._changes: dict[str, tuple[Mapping[str, str], frozenset[str]]] = {}
        self._streams: set[_Stream] = set()
        self._ids = itertools.count(1)
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Follow the cache (call on the running loop, before serving)."""
        self._loop = asyncio.get_running_loop()
        if self._unsubscribe is None:
            self._unsubscribe = self._cache.subscribe(self._on_cache_change)
        if self._cache.ready and self._published is None:
            self._publish()

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def register(self, server: Any) -> None:
        """Add the ADS method (our path and Envoy's) to a ``grpc.aio`` server."""
        handler = grpc.stream_stream_rpc_method_handler(
            self._ads,
            request_deserializer=discovery_pb2.DeltaDiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DeltaDiscoveryResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            tuple(
                grpc.method_handlers_generic_handler(service, {ADS_METHOD: handler})
                for service in (ADS_SERVICE, ENVOY_ADS_SERVICE)
            )
        )

    @property
    def published(self) -> CacheSnapshot | None:
        """The cache state streams are currently being brought to (None until the cache is ready)."""
        return self._published

    @property
    def streams(self) -> int:
        return len(self._streams)

    def resource_sync(self, type_url: str, name: str) -> tuple[int, int]:
        """(streams that consume ``type_url``, those that have ACKed the cache's current version of
        ``name``, or its absence). The kubelet waits on this before stopping a deleted pod."""
        version = self._cache.current.versions(type_url).get(name)
        consuming = [s.sessions[type_url] for s in self._streams if type_url in s.sessions]
        return len(consuming), sum(1 for session in consuming if session.holds(name, version))

    # -- debounce -------------------------------------------------------------------------------

    def _on_cache_change(self, _snapshot: CacheSnapshot) -> None:
        if self._loop is None:
            return
        if self._published is None:
            self._publish()  # first content: serve the streams that are waiting at once
            return
        if self._timer is None:
            self._timer = self._loop.call_later(self._debounce, self._publish)

    def _publish(self) -> None:
        self._timer = None
        snapshot = self._cache.current
        if not snapshot.ready or snapshot is self._published:
            return
        previous = self._published
        self._changes = {} if previous is None else _changes(previous, snapshot)
        self._published = snapshot
        self.stats.publishes += 1
        for stream in self._streams:
            stream.wake()

    # -- streams --------------------------------------------------------------------------------

    async def _ads(self, request_iterator: Any, context: Any) -> None:
        proxy = peer_identity(context)
        if proxy is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate")
            return
        if self._trust_domain is not None and proxy.trust_domain != self._trust_domain:
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED, f"{proxy} is not in trust domain {self._trust_domain}"
            )
            return
        stream = _Stream(next(self._ids), proxy)
        self._streams.add(stream)
        self.stats.streams_total += 1
        self.stats.streams_active += 1
        log.info("xDS stream %d opened by %s", stream.id, proxy)
        reader = spawn(self._read(request_iterator, stream), name=f"xds-read-{stream.id}")
        try:
            await self._serve(stream, context)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._streams.discard(stream)
            self.stats.streams_active -= 1
            log.info("xDS stream %d of %s closed", stream.id, stream.label)

    async def _read(self, request_iterator: Any, stream: _Stream) -> None:
        try:
            async for request in request_iterator:
                await stream.queue.put(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await stream.queue.put(exc)
            return
        await stream.queue.put(_EOF)

    async def _serve(self, stream: _Stream, context: Any) -> None:
        while True:
            item = await stream.queue.get()
            if item is _EOF:
                return
            if isinstance(item, BaseException):
                log.info("xDS stream %d of %s ended: %s", stream.id, stream.label, item)
                return
            if item is not _WAKE:
                assert isinstance(item, discovery_pb2.DeltaDiscoveryRequest)
                self._on_request(stream, item)
            await self._flush(stream, context)

    def _on_request(self, stream: _Stream, pb: discovery_pb2.DeltaDiscoveryRequest) -> None:
        request = codec.request_from_pb(pb)
        if request.node_id:
            stream.node_id = request.node_id
        if request.type_url not in codec.TYPE_URLS:
            log.warning("xDS stream %d of %s asked for unknown type %r", stream.id, stream.label, pb.type_url)
            return
        session = stream.sessions.get(request.type_url)
        if session is None:
            session = ServerSession(request.type_url, nonce_prefix=f"{stream.id}.")
            stream.sessions[request.type_url] = session
        for event in session.on_request(request):
            if isinstance(event, Acked):
                self.stats.acks += 1
            elif isinstance(event, Nacked):
                self._nacked(stream, request.type_url, event)
            elif isinstance(event, StaleNonce):
                self.stats.stale_nonces += 1

    def _nacked(self, stream: _Stream, type_url: str, event: Nacked) -> None:
        record = NackRecord(
            proxy=str(stream.proxy),
            node_id=stream.node_id,
            type_url=type_url,
            nonce=event.nonce,
            resource_names=event.resource_names,
            message=event.message,
        )
        self.stats.nacks += 1
        self.stats.recent_nacks.append(record)
        log.warning(
            "proxy %s NACKed %s nonce %s: resources %s (it keeps their last good versions): %s",
            stream.label,
            type_url,
            event.nonce,
            ", ".join(event.resource_names) or "-",
            event.message,
        )
        if self._on_nack is not None:
            self._on_nack(record)

    async def _flush(self, stream: _Stream, context: Any) -> None:
        snapshot = self._published
        if snapshot is None:
            return
        for type_url, session in stream.sessions.items():
            previous, changed = self._changes.get(type_url, (None, frozenset()))
            response = session.next_response(
                snapshot.versions(type_url),
                system_version=snapshot.version,
                previous=previous,
                changed=changed,
            )
            if response is None:
                continue
            payloads: Mapping[str, discovery_pb2.Resource] = snapshot.wire(
                type_url, (ref.name for ref in response.resources)
            )
            pb = codec.response_to_pb(response, payloads)
            await context.write(pb)
            self.stats.responses += 1
            self.stats.resources_sent += len(response.resources)
            self.stats.removals_sent += len(response.removed)
            if self._on_push is not None:
                self._on_push(
                    PushRecord(
                        proxy=str(stream.proxy),
                        type_url=type_url,
                        nonce=response.nonce,
                        resources=len(response.resources),
                        removed=len(response.removed),
                        size=pb.ByteSize(),
                    )
                )


def _changes(
    previous: CacheSnapshot, current: CacheSnapshot
) -> dict[str, tuple[Mapping[str, str], frozenset[str]]]:
    """Per type: (``previous``'s versions, the names added, changed or gone in ``current``)."""
    out: dict[str, tuple[Mapping[str, str], frozenset[str]]] = {}
    for type_url in codec.TYPE_URLS:
        before, after = previous.versions(type_url), current.versions(type_url)
        changed = {name for name, version in after.items() if before.get(name) != version}
        changed.update(name for name in before if name not in after)
        out[type_url] = (before, frozenset(changed))
    return out
