"""The delta xDS client: keeps a proxy's :class:`~ambit.state.StateStore` in step with the control plane.

One aggregated stream at a time, to any control-plane replica:

* the addresses come from a provider called before every connection attempt (the runtime feeds it
  the ready endpoints of Service ``ambit-system/controlplane``); a different replica than the last one
  is preferred whenever there is a choice;
* the connection is mTLS with the proxy's credential (node credential for a ztunnel, workload
  credential for a waypoint) and the server must present exactly the control plane's identity
  (``ambit.xds.channel`` explains how that is checked);
* every resource type (``codec.TYPE_URLS``: addresses, L4 policies, L7 policies, routes, traffic
  policies, rate limit policies) is subscribed with the wildcard, and every stream starts with
  ``initial_resource_versions`` taken from the store, so a reconnect is sent only what changed;
* each response is decoded (``ambit.xds.codec``), the good resources are applied to the store in one
  step, and the response is ACKed, or NACKed naming the resources that failed; those keep their
  previous version (ztunnel's per-resource semantics);
* a broken stream is retried with jittered exponential backoff from 10 ms up to 15 s (reset once a
  stream delivers a response); after ``max_connection_age`` (default 30 min, jittered down by up to
  10 %) the client closes the stream itself and reconnects at once, so proxies spread over replicas;
* a replica that silently vanishes (its node cut off the fabric: no FIN, no RST) is failed over in
  ~4 s: the keepalive (``keepalive``, a PING after 2 s without a byte, 2 s to answer; see "Liveness"
  in ``ambit.xds.channel``) gives the stream up at most 4 s after its last byte; it had delivered a
  response, so the backoff is back at its first step (5-10 ms), and the next attempt goes to another
  replica (``_pick`` never retries the one that just failed while there is another). An attempt on a
  dead address gives up after ``connect_timeout`` (2 s, TCP connect + TLS handshake). Measured with a
  blackholing relay (``tests/integration/xds/test_xds_failover.py``): the other replica's config
  applied 2.2-4.25 s after the blackhole; a client starting at that moment, trying the dead replica
  first, synced from the other after 2.03 s;
* ``synced`` is set once the first response of every type has been applied, and stays set: the
  store keeps the last good config while the control plane is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.secrets import backoff_delay
from ambit.model.identity import Identity, NodeIdentity
from ambit.protocol.xds import ClientSession
from ambit.resources.names import control_plane_identity
from ambit.state.snapshot import (
    L7_POLICY_PREFIX,
    POLICY_PREFIX,
    RATE_LIMIT_PREFIX,
    ROUTE_PREFIX,
    SERVICE_PREFIX,
    TRAFFIC_POLICY_PREFIX,
    WORKLOAD_PREFIX,
)
from ambit.state.store import StateStore
from ambit.xds import codec
from ambit.xds.channel import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_KEEPALIVE,
    Address,
    VerifiedChannel,
)
from ambit.xds.pb.discovery.v1 import discovery_pb2

log = logging.getLogger(__name__)

ADS_PATH = "/ambit.discovery.v1.AggregatedDiscoveryService/DeltaAggregatedResources"
DEFAULT_MAX_CONNECTION_AGE = 30 * 60.0
DEFAULT_BACKOFF_INITIAL = 0.01
DEFAULT_BACKOFF_MAX = 15.0
_AGE_JITTER = 0.1
_HISTORY = 64

_PREFIXES: Mapping[str, tuple[str, ...]] = {
    codec.ADDRESS_TYPE_URL: (WORKLOAD_PREFIX, SERVICE_PREFIX),
    codec.AUTHORIZATION_TYPE_URL: (POLICY_PREFIX,),
    codec.L7_AUTHORIZATION_TYPE_URL: (L7_POLICY_PREFIX,),
    codec.ROUTE_TYPE_URL: (ROUTE_PREFIX,),
    codec.TRAFFIC_POLICY_TYPE_URL: (TRAFFIC_POLICY_PREFIX,),
    codec.RATE_LIMIT_TYPE_URL: (RATE_LIMIT_PREFIX,),
}

AddressProvider = Callable[[], Sequence[Address]]


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """One received response, for observers (tests, metrics, debug pages)."""

    address: Address
    type_url: str
    nonce: str
    resources: tuple[str, ...]
    removed: tuple[str, ...]
    rejected: Mapping[str, str]
    size: int


@dataclass
class ClientStats:
    streams: int = 0
    responses: int = 0
    resources: int = 0
    acks: int = 0
    nacks: int = 0
    failures: int = 0
    aged_out: int = 0
    # addresses of streams that delivered at least one response, oldest first
    connected: deque[Address] = field(default_factory=lambda: deque(maxlen=_HISTORY))


class _Aged(Exception):
    """The stream reached its maximum age."""


class XdsClient:
    """Delta xDS client for a proxy; see the module docstring."""

    def __init__(
        self,
        *,
        addresses: AddressProvider,
        cert: WorkloadCert,
        bundle: TrustBundle,
        store: StateStore,
        server_identity: Identity | NodeIdentity | None = None,
        node_id: str = "",
        max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        keepalive: float = DEFAULT_KEEPALIVE,
        rng: random.Random | None = None,
        on_response: Callable[[ResponseInfo], None] | None = None,
    ) -> None:
        if max_connection_age <= 0 or backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need max_connection_age > 0 and 0 < backoff_initial <= backoff_max")
        self._addresses = addresses
        self._cert = cert
        self._bundle = bundle
        self._store = store
        self.server_identity = server_identity or control_plane_identity(cert.identity.trust_domain)
        self.node_id = node_id or str(cert.identity)
        self._max_age = max_connection_age
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._rng = rng or random.Random()
        self._on_response = on_response
        self._sessions = {type_url: ClientSession(type_url) for type_url in codec.TYPE_URLS}
        self.synced = asyncio.Event()
        self.stats = ClientStats()
        self.address: Address | None = None
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._got_response = False

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting in the background (on the running loop)."""
        if self._task is not None:
            raise RuntimeError("XdsClient already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="xds-client")

    async def close(self) -> None:
        """Stop: close the stream and channel; the store keeps what it has."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def update_credentials(self, cert: WorkloadCert, bundle: TrustBundle) -> None:
        """Use a renewed credential or trust bundle from the next connection on."""
        self._cert, self._bundle = cert, bundle

    # -- the loop -------------------------------------------------------------------------------

    def _pick(self, last: Address | None) -> Address | None:
        addresses = list(dict.fromkeys(self._addresses()))
        if not addresses:
            return None
        others = [a for a in addresses if a != last]
        return self._rng.choice(others or addresses)

    async def _run(self) -> None:
        failures = 0
        last: Address | None = None
        while not self._closing:
            address = self._pick(last)
            if address is None:
                self.last_error = "no control-plane address known"
            else:
                last = address
                try:
                    await self._stream(address)
                except _Aged:
                    self.stats.aged_out += 1
                    failures = 0
                    log.info("xDS stream to %s:%d reached its maximum age; reconnecting", *address)
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.last_error = f"{address[0]}:{address[1]}: {_describe(exc)}"
                    log.info("xDS stream failed: %s", self.last_error)
                finally:
                    self.address = None
                if self._got_response:
                    failures = 0
            failures += 1
            self.stats.failures += 1
            delay = backoff_delay(
                failures, initial=self._backoff_initial, maximum=self._backoff_max, rng=self._rng
            )
            await asyncio.sleep(delay)

    async def _stream(self, address: Address) -> None:
        self._got_response = False
        verified = await VerifiedChannel.open(
            address,
            cert=self._cert,
            bundle=self._bundle,
            expected=self.server_identity,
            connect_timeout=self._connect_timeout,
            keepalive=self._keepalive,
        )
        call: Any = None
        try:
            call = verified.channel.stream_stream(
                ADS_PATH,
                request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
            )()
            self.stats.streams += 1
            self.address = address
            age = self._max_age * (1.0 - self._rng.uniform(0.0, _AGE_JITTER))
            snapshot = self._store.current
            try:
                async with asyncio.timeout(age):
                    for type_url, session in self._sessions.items():
                        start = session.start_stream(
                            snapshot.versions(_PREFIXES[type_url]), node_id=self.node_id
                        )
                        await call.write(codec.request_to_pb(start))
                    while True:
                        response = await call.read()
                        if response is grpc.aio.EOF:
                            detail = verified.last_error or "server ended the stream"
                            raise ConnectionError(detail)
                        await self._handle(address, call, response)
            except TimeoutError:
                raise _Aged() from None
            except grpc.aio.AioRpcError as exc:
                if verified.last_error is not None:
                    raise ConnectionError(verified.last_error) from exc
                raise
        finally:
            if call is not None:
                call.cancel()
            await verified.close()

    async def _handle(self, address: Address, call: Any, pb: discovery_pb2.DeltaDiscoveryResponse) -> None:
        session = self._sessions.get(pb.type_url)
        if session is None:
            log.warning("ignoring a response for unsubscribed type %r from %s:%d", pb.type_url, *address)
            return
        response, decoded, rejected = codec.decode_response(pb)
        update = session.on_response(response, rejected)
        prefixes = _PREFIXES[pb.type_url]
        upserts = {ref.name: decoded[ref.name] for ref in update.accepted}
        removals = [name for name in update.removed if name.startswith(prefixes)]
        if upserts or removals:
            self._store.apply(upserts, removals)
        if rejected:
            self.stats.nacks += 1
            log.warning(
                "rejected %d resource(s) from %s:%d (nonce %s), keeping their last good versions: %s",
                len(rejected),
                *address,
                response.nonce,
                update.reply.error.message if update.reply.error else "",
            )
        else:
            self.stats.acks += 1
        await call.write(codec.request_to_pb(update.reply))
        if not self._got_response:
            self._got_response = True
            self.stats.connected.append(address)
        self.stats.responses += 1
        self.stats.resources += len(response.resources)
        if all(s.synced_on_stream for s in self._sessions.values()):
            self.synced.set()
        if self._on_response is not None:
            self._on_response(
                ResponseInfo(
                    address=address,
                    type_url=response.type_url,
                    nonce=response.nonce,
                    resources=tuple(ref.name for ref in response.resources),
                    removed=response.removed,
                    rejected=rejected,
                    size=pb.ByteSize(),
                )
            )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc) or type(exc).__name__
