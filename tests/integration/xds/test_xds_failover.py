"""Failover from a control-plane replica that silently vanishes (its node cut off the fabric).

Real grpc.aio replicas, real mTLS clients, loopback. The clients reach replica A through a TCP relay
that can be switched to a blackhole: the sockets stay open, no byte moves in either direction, nothing
is ever closed, and new connections are accepted and then ignored, as when a node's packets are
dropped (no FIN, no RST). Only the HTTP/2 keepalive can tell such a stream from a quiet one. In one
run, against the same blackhole and the same bound:

* a client with the 2 s keepalive (``ambit.xds.channel``, "Liveness") gives the dead stream up within
  ~4 s and has the new state from replica B;
* a client with the old 30 s keepalive is still on the dead stream, with the old state;
* a client starting at the blackhole tries A first and gets past it within ``connect_timeout`` (2 s);
* a client on B that PINGs once a second gets no ``GOAWAY too_many_pings``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import pytest

from ambit.control.cache import SnapshotCache, versioned
from ambit.control.grpc_server import ControlPlaneServer
from ambit.control.xds_server import XdsServer
from ambit.model.workload import PortMapping, Service, ServicePort, TunnelProtocol, Workload
from ambit.state import StateStore
from ambit.testing.pki import Pki
from ambit.xds.channel import DEFAULT_KEEPALIVE
from ambit.xds.client import XdsClient

if TYPE_CHECKING:
    from _typeshed import SupportsLenAndGetItem

log = logging.getLogger(__name__)

Address = tuple[str, int]
_T = TypeVar("_T")

WEB_KEY = "default/web.default.svc.cluster.local"
SYNC_TIMEOUT = 10.0
# keepalive (2 s) + its timeout (2 s) is the detection bound; reconnecting to B and the push of the
# new state take well under a second on loopback, the rest is margin for a loaded machine
FAILOVER_BOUND = 6.0
OLD_KEEPALIVE = 30.0  # the keepalive before node liveness: a dead stream lingered 30 s + 10 s


def pod(i: int) -> Workload:
    return Workload(
        uid=f"uid-{i}",
        name=f"web-{i}",
        namespace="default",
        service_account="web",
        node="n1",
        addresses=(f"10.244.0.{i + 1}",),
        tunnel_protocol=TunnelProtocol.HBONE,
        services=((WEB_KEY, (PortMapping(80, 8080),)),),
    )


def mesh(pods: int) -> list[Workload | Service]:
    web = Service(
        "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
    )
    return [web, *(pod(i) for i in range(pods))]


class FirstChoice(random.Random):
    """Makes the client's replica choice deterministic: the first address it may take (the relay first,
    B after the relay failed)."""

    def choice(self, seq: SupportsLenAndGetItem[_T]) -> _T:
        return seq[0]


class BlackholeRelay:
    """A TCP relay to ``upstream``; :meth:`blackhole` stops it forwarding anything, in both directions,
    for the connections it relays and for new ones (accepted, then held), and it never closes a
    socket until :meth:`close`."""

    def __init__(self, upstream: Address) -> None:
        self.upstream = upstream
        self.blackholed = False
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._closed = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._pumps: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> Address:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return (host, port)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    def blackhole(self) -> None:
        self.blackholed = True
        for task in list(self._pumps):  # bytes in flight are dropped; the sockets stay as they are
            task.cancel()

    async def close(self) -> None:
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for writer in self._writers:
            writer.transport.abort()
        self._closed.set()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.append(writer)
        self.accepted += 1
        if not self.blackholed:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._writers.append(upstream_writer)
            for src, dst in ((reader, upstream_writer), (upstream_reader, writer)):
                pump = asyncio.create_task(self._pump(src, dst))
                self._pumps.add(pump)
                pump.add_done_callback(self._pumps.discard)
        await self._closed.wait()  # hold the connection open until the test ends

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(64 * 1024):
            dst.write(data)
            await dst.drain()
        dst.close()  # an end before the blackhole is passed on


@dataclasses.dataclass
class Replica:
    cache: SnapshotCache
    server: ControlPlaneServer


class Env:
    """Replicas, relays and clients, always all stopped."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.replicas: list[Replica] = []
        self.relays: list[BlackholeRelay] = []
        self.clients: list[XdsClient] = []

    async def replica(self) -> Replica:
        cache = SnapshotCache()
        server = ControlPlaneServer(
            cert=self.pki.workload("ambit-system", "controlplane"),
            bundle=self.pki.bundle,
            xds=XdsServer(cache, debounce=0.05, trust_domain=self.pki.trust_domain),
            host="127.0.0.1",
            port=0,
        )
        await server.start()
        replica = Replica(cache, server)
        self.replicas.append(replica)
        return replica

    async def relay(self, upstream: Address) -> BlackholeRelay:
        relay = BlackholeRelay(upstream)
        await relay.start()
        self.relays.append(relay)
        return relay

    def client(self, addresses: Sequence[Address], store: StateStore, *, keepalive: float) -> XdsClient:
        client = XdsClient(
            addresses=lambda: list(addresses),
            cert=self.pki.node("n1"),
            bundle=self.pki.bundle,
            store=store,
            keepalive=keepalive,
            rng=FirstChoice(),
        )
        client.start()
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for relay in self.relays:
            await relay.close()
        for replica in self.replicas:
            await replica.server.stop(None)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
async def env(pki: Pki) -> AsyncIterator[Env]:
    e = Env(pki)
    try:
        yield e
    finally:
        await e.close()


async def seconds_until(predicate: Callable[[], bool], since: float, *, within: float) -> float | None:
    """Seconds from ``since`` until ``predicate()`` first held (polled every 10 ms), or None if it did not
    hold by ``since + within``."""
    while not predicate():
        if time.monotonic() > since + within:
            return None
        await asyncio.sleep(0.01)
    return time.monotonic() - since


async def test_blackholed_replica_is_failed_over_within_the_keepalive_bound(env: Env) -> None:
    a = await env.replica()
    b = await env.replica()
    for replica in (a, b):
        replica.cache.set(versioned(mesh(3)))
    relay = await env.relay(a.server.address)
    addresses = (relay.address, b.server.address)  # each client tries the relay (A) first
    fast_store, slow_store, late_store = StateStore(), StateStore(), StateStore()
    fast = env.client(addresses, fast_store, keepalive=DEFAULT_KEEPALIVE)
    slow = env.client(addresses, slow_store, keepalive=OLD_KEEPALIVE)
    # a bystander on B that PINGs as often as gRPC lets a client (1/s): B must take that for the whole
    # test without a GOAWAY (gRPC's default server policy sends one at the 4th PING)
    bystander = env.client([b.server.address], StateStore(), keepalive=1.0)
    clients = (fast, slow, bystander)
    await asyncio.wait_for(asyncio.gather(*(c.synced.wait() for c in clients)), SYNC_TIMEOUT)
    for client in (fast, slow):  # both synced from A, through the relay
        assert client.address == relay.address and list(client.stats.connected) == [relay.address]
    assert relay.accepted == 2

    relay.blackhole()
    blackholed = time.monotonic()
    for replica in (a, b):  # every replica translates the same store: both serve the new pod
        replica.cache.set(versioned(mesh(4)))
    new_pod = "uid-3"
    # a proxy starting now tries the dead replica first: the connection attempt must give up quickly
    late = env.client(addresses, late_store, keepalive=DEFAULT_KEEPALIVE)
    detected, applied, late_applied = await asyncio.gather(
        seconds_until(lambda: fast.address != relay.address, blackholed, within=FAILOVER_BOUND),
        seconds_until(lambda: new_pod in fast_store.current.workloads, blackholed, within=FAILOVER_BOUND),
        seconds_until(lambda: new_pod in late_store.current.workloads, blackholed, within=FAILOVER_BOUND),
    )
    log.info(
        "2 s keepalive: dead stream given up after %s s, new state applied after %s s; "
        "a client starting at the blackhole synced from B after %s s",
        detected,
        applied,
        late_applied,
    )
    assert detected is not None, f"the dead stream was not noticed within {FAILOVER_BOUND} s"
    assert applied is not None, f"the new state was not applied within {FAILOVER_BOUND} s"
    assert fast.address == b.server.address
    assert list(fast.stats.connected) == [relay.address, b.server.address]
    assert fast.last_error is not None and "ping timeout" in fast.last_error, fast.last_error
    assert late_applied is not None, f"a starting client was not synced within {FAILOVER_BOUND} s"
    assert list(late.stats.connected) == [b.server.address]
    assert late.last_error is not None and "cannot connect" in late.last_error, late.last_error
    assert relay.accepted >= 3  # the late client's attempt was held (accepted, then nothing), not refused

    # the same blackhole, the same bound: the old keepalive has noticed nothing
    await asyncio.sleep(max(0.0, blackholed + FAILOVER_BOUND - time.monotonic()))
    log.info("30 s keepalive: after %.1f s still on the dead stream", time.monotonic() - blackholed)
    assert slow.address == relay.address
    assert slow.stats.failures == 0 and slow.stats.streams == 1
    assert new_pod not in slow_store.current.workloads
    assert len(slow_store.current.workloads) == 3  # it keeps the last good config meanwhile

    assert bystander.stats.streams == 1 and bystander.stats.failures == 0, bystander.last_error
