"""Delta xDS end to end: real grpc.aio control-plane replicas and real clients over loopback mTLS.

Every acceptance point of the config-push issue is one test here: ACK; NACK keeps the last good
config; a reconnect with initial versions resends nothing unchanged; one pod change pushes only that
resource; a burst is debounced into one push; max connection age makes the client move; replica
failover; two replicas serve identical versions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence

import grpc
import pytest

from ambit.control.cache import SnapshotCache, Value, versioned
from ambit.control.grpc_server import ControlPlaneServer
from ambit.control.xds_server import ENVOY_ADS_SERVICE, XdsServer
from ambit.identity.certs import WorkloadCert
from ambit.model.policy import Action, Authorization, Scope
from ambit.model.workload import PortMapping, Service, ServicePort, TunnelProtocol, Workload
from ambit.resources.names import control_plane_identity
from ambit.state import StateStore
from ambit.testing.pki import Pki
from ambit.xds import codec
from ambit.xds.channel import VerifiedChannel
from ambit.xds.client import ResponseInfo, XdsClient
from ambit.xds.pb.discovery.v1 import discovery_pb2

TIMEOUT = 10.0
WEB_KEY = "default/web.default.svc.cluster.local"


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


def pod(i: int, *, version: int = 0, sa: str = "web") -> Workload:
    return Workload(
        uid=f"uid-{i}",
        name=f"web-{i}",
        namespace="default",
        service_account=sa,
        node=f"n{i % 3}",
        addresses=(f"10.244.{i // 250}.{i % 250 + 1}",),
        tunnel_protocol=TunnelProtocol.HBONE,
        services=((WEB_KEY, (PortMapping(80, 8080),)),),
        canonical_revision=f"v{version}",
    )


def mesh(pods: int = 10, *, version: int = 0) -> list[Workload | Service | Authorization]:
    return [
        Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)),
        Authorization("allow-all", "default", Scope.NAMESPACE, Action.ALLOW, ()),
        *(pod(i, version=version) for i in range(pods)),
    ]


async def eventually(
    predicate: Callable[[], bool], *, within: float = TIMEOUT, what: str = "condition"
) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


MARKER = 999  # a pod no test uses: its push closes a window, see ``marker_pushed``


async def marker_pushed(replica: Replica, values: Sequence[Value], responses: list[ResponseInfo]) -> None:
    """Publish one more change (a new pod, :data:`MARKER`) and wait for its push. Pushes on a stream
    arrive in order, so the responses before it are all the stream sent for earlier changes: a
    positive end to "nothing else was pushed" instead of a fixed sleep."""
    replica.cache.set(versioned([*values, pod(MARKER)]))
    marker = (f"wl/uid-{MARKER}",)
    await eventually(lambda: any(r.resources == marker for r in responses), what="the marker's push")


@dataclasses.dataclass
class Replica:
    cache: SnapshotCache
    xds: XdsServer
    server: ControlPlaneServer

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address


class Harness:
    """Starts replicas and clients and always stops them all."""

    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.replicas: list[Replica] = []
        self.clients: list[XdsClient] = []
        self.channels: list[VerifiedChannel] = []

    async def replica(
        self,
        cache: SnapshotCache | None = None,
        *,
        debounce: float = 0.1,
        cert: WorkloadCert | None = None,
        **server_options: float,
    ) -> Replica:
        cache = cache if cache is not None else SnapshotCache()
        xds = XdsServer(cache, debounce=debounce, trust_domain=self.pki.trust_domain)
        server = ControlPlaneServer(
            cert=cert or self.pki.workload("ambit-system", "controlplane"),
            bundle=self.pki.bundle,
            xds=xds,
            host="127.0.0.1",
            port=0,
            **server_options,  # type: ignore[arg-type]
        )
        await server.start()
        replica = Replica(cache, xds, server)
        self.replicas.append(replica)
        return replica

    def client(
        self,
        addresses: Callable[[], Sequence[tuple[str, int]]],
        *,
        store: StateStore | None = None,
        cert: WorkloadCert | None = None,
        responses: list[ResponseInfo] | None = None,
        **options: float,
    ) -> XdsClient:
        client = XdsClient(
            addresses=addresses,
            cert=cert or self.pki.node("n1"),
            bundle=self.pki.bundle,
            store=store if store is not None else StateStore(),
            on_response=responses.append if responses is not None else None,
            **options,  # type: ignore[arg-type]
        )
        client.start()
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for channel in self.channels:
            await channel.close()
        for replica in self.replicas:
            await replica.server.stop(None)


@pytest.fixture
async def harness(pki: Pki) -> AsyncIterator[Harness]:
    h = Harness(pki)
    try:
        yield h
    finally:
        await h.close()


def fixed(*addresses: tuple[str, int]) -> Callable[[], list[tuple[str, int]]]:
    return lambda: list(addresses)


# -- acceptance --------------------------------------------------------------------------------


async def test_client_syncs_and_acks(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(5)))
    store = StateStore()
    client = harness.client(fixed(replica.address), store=store)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    snap = store.current
    assert len(snap.workloads) == 5 and len(snap.services) == 1 and len(snap.policies) == 1
    assert snap.endpoints(WEB_KEY)[0].uid == "uid-0"
    assert snap.find_workload_by_ip("10.244.0.3") == pod(2)
    # both responses (Address, Authorization) were ACKed, nothing NACKed
    await eventually(lambda: replica.xds.stats.acks == len(codec.TYPE_URLS), what="one ACK per type")
    assert replica.xds.stats.nacks == 0
    assert client.stats.acks == len(codec.TYPE_URLS) and client.stats.nacks == 0
    # the server knows the proxy by its certificate
    assert replica.xds.stats.streams_active == 1


async def test_waypoint_subscribes_with_its_workload_credential(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(2)))
    pushes: list[str] = []
    replica.xds._on_push = lambda record: pushes.append(record.proxy)
    client = harness.client(fixed(replica.address), cert=harness.pki.workload("default", "waypoint"))
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    assert set(pushes) == {"spiffe://cluster.local/ns/default/sa/waypoint"}


async def test_nack_keeps_last_good_config(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    replica = await harness.replica(debounce=0.01)
    good = versioned(mesh(3))
    replica.cache.set(good)
    store = StateStore()
    responses: list[ResponseInfo] = []
    client = harness.client(fixed(replica.address), store=store, responses=responses)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    good_version, good_value = store.current.entries["wl/uid-1"]

    # a workload the client must refuse (invalid service account) next to a valid change
    bad = dataclasses.replace(pod(1), service_account="bad/sa")
    changed = dataclasses.replace(pod(2), canonical_revision="v2")
    caplog.set_level(logging.WARNING, logger="ambit.control.xds_server")
    replica.cache.set(versioned([*mesh(3)[:2], pod(0), bad, changed]))
    await eventually(lambda: replica.xds.stats.nacks == 1, what="the NACK")

    record = replica.xds.stats.recent_nacks[-1]
    assert record.resource_names == ("wl/uid-1",)
    assert record.proxy == "spiffe://cluster.local/node/n1"
    assert record.type_url == codec.ADDRESS_TYPE_URL
    assert "service account" in record.message
    assert "spiffe://cluster.local/node/n1" in caplog.text and "wl/uid-1" in caplog.text
    # the proxy kept the last good wl/uid-1 and applied the good change next to it
    assert store.current.entries["wl/uid-1"] == (good_version, good_value)
    assert store.current.workloads["uid-2"] == changed
    assert client.stats.nacks == 1

    # the rejected version is not pushed again; the next version is
    count, current = len(responses), replica.cache.current
    # setting the same content again is no change: nothing to publish
    assert replica.cache.set(versioned([*mesh(3)[:2], pod(0), bad, changed])) is current
    fixed_pod = dataclasses.replace(pod(1), canonical_revision="v3")
    replica.cache.set(versioned([*mesh(3)[:2], pod(0), fixed_pod, changed]))
    await eventually(lambda: store.current.workloads["uid-1"] == fixed_pod, what="the fixed pod")
    # in order on the stream: between the NACK and the fixed pod, nothing was pushed
    assert [r.resources for r in responses[count:] if r.resources or r.removed] == [("wl/uid-1",)]
    assert replica.xds.stats.nacks == 1


async def test_reconnect_with_initial_versions_resends_nothing_unchanged(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(20)))
    store = StateStore()
    first: list[ResponseInfo] = []
    client = harness.client(fixed(replica.address), store=store, responses=first)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    assert sum(len(r.resources) for r in first) == 22
    await client.close()
    sent_before = replica.xds.stats.resources_sent

    # a new client (e.g. ztunnel restarted with its state restored) resumes from the same store
    second: list[ResponseInfo] = []
    again = harness.client(fixed(replica.address), store=store, responses=second)
    await asyncio.wait_for(again.synced.wait(), TIMEOUT)
    assert len(second) == len(codec.TYPE_URLS)  # one (empty) answer per type: "you are in sync"
    assert sum(len(r.resources) for r in second) == 0
    assert sum(len(r.removed) for r in second) == 0
    assert replica.xds.stats.resources_sent == sent_before

    # something changed while away: only that is sent (and what was deleted is removed)
    await again.close()
    values = mesh(18)
    values[2 + 3] = dataclasses.replace(pod(3), canonical_revision="new")
    replica.cache.set(versioned(values))
    third: list[ResponseInfo] = []
    last = harness.client(fixed(replica.address), store=store, responses=third)
    await asyncio.wait_for(last.synced.wait(), TIMEOUT)
    # (the change is published within the debounce delay)
    await eventually(lambda: "uid-19" not in store.current.workloads, what="the update")
    await marker_pushed(replica, values, third)
    assert [r.resources for r in third if r.resources] == [("wl/uid-3",), (f"wl/uid-{MARKER}",)]
    assert sorted(name for r in third for name in r.removed) == ["wl/uid-18", "wl/uid-19"]
    assert "uid-19" not in store.current.workloads


async def test_one_pod_change_pushes_only_that_resource(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(100)))
    responses: list[ResponseInfo] = []
    client = harness.client(fixed(replica.address), responses=responses)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    full = sum(r.size for r in responses)
    responses.clear()

    values = mesh(100)
    values[2 + 42] = dataclasses.replace(pod(42), addresses=("10.244.9.9",))
    replica.cache.set(versioned(values))
    await eventually(lambda: len(responses) == 1, what="the push")
    await marker_pushed(replica, values, responses)
    (push, _marker) = responses
    assert push.type_url == codec.ADDRESS_TYPE_URL
    assert push.resources == ("wl/uid-42",)
    assert push.removed == ()
    assert push.size < 300, push.size
    assert push.size * 50 < full


async def test_burst_of_changes_is_debounced_into_one_push(harness: Harness) -> None:
    replica = await harness.replica(debounce=0.1)
    replica.cache.set(versioned(mesh(50)))
    responses: list[ResponseInfo] = []
    client = harness.client(fixed(replica.address), responses=responses)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    await asyncio.sleep(0.15)
    responses.clear()
    publishes = replica.xds.stats.publishes

    values = mesh(50)
    updates = []
    for i in range(50):  # 50 separate changes, each its own cache update
        values[2 + i] = pod(i, version=1)
        updates.append(versioned(values))
    started = time.monotonic()
    for update in updates:
        replica.cache.set(update)
        await asyncio.sleep(0)
    elapsed = time.monotonic() - started
    # typically ~10 ms here; it must fall inside one debounce window for "one push" to be the rule
    assert elapsed < 0.1, f"the burst took {elapsed * 1000:.0f} ms"
    await eventually(lambda: len(responses) >= 1, what="the push")
    await marker_pushed(replica, values, responses)
    assert len(responses) == 2, [r.resources for r in responses]  # the burst's push, then the marker's
    assert len(responses[0].resources) == 50
    assert replica.xds.stats.publishes == publishes + 2


async def test_max_connection_age_moves_the_client_between_replicas(harness: Harness) -> None:
    a = await harness.replica()
    b = await harness.replica()
    a.cache.set(versioned(mesh(10)))
    b.cache.set(versioned(mesh(10)))
    store = StateStore()
    responses: list[ResponseInfo] = []
    client = harness.client(
        fixed(a.address, b.address), store=store, responses=responses, max_connection_age=0.3
    )
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    await eventually(lambda: client.stats.aged_out >= 2, what="two age-outs")
    connected = list(client.stats.connected)
    assert {a.address, b.address} <= set(connected)
    # with a choice, it never reconnected to the replica it just left
    assert all(x != y for x, y in itertools.pairwise(connected))
    # the replicas serve the same versions, so moving resent nothing
    assert sum(len(r.resources) for r in responses) == 12
    assert len(store.current.workloads) == 10


async def test_server_max_connection_age_makes_the_client_reconnect(harness: Harness) -> None:
    replica = await harness.replica(max_connection_age=0.3, max_connection_age_grace=0.1)
    replica.cache.set(versioned(mesh(3)))
    client = harness.client(fixed(replica.address))
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    await eventually(lambda: client.stats.streams >= 3, what="reconnections")
    assert len(client.stats.connected) >= 2


async def test_failover_to_another_replica_keeps_config(harness: Harness) -> None:
    a = await harness.replica()
    b = await harness.replica()
    for r in (a, b):
        r.cache.set(versioned(mesh(10)))
    store = StateStore()
    client = harness.client(fixed(a.address, b.address), store=store)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    version = store.current.version
    first = client.address
    assert first is not None
    dead, alive = (a, b) if first == a.address else (b, a)

    await dead.server.stop(None)
    await eventually(lambda: client.address == alive.address, what="the move to the other replica")
    assert store.current.version == version  # nothing lost, nothing changed
    assert len(store.current.workloads) == 10

    alive.cache.set(versioned(mesh(11)))
    await eventually(lambda: "uid-10" in store.current.workloads, what="a change from the new replica")
    assert client.address == alive.address


async def test_two_replicas_serve_identical_versions(harness: Harness) -> None:
    a = await harness.replica()
    b = await harness.replica()
    # each replica translates the same store on its own
    a.cache.set(versioned(mesh(30)))
    b.cache.set(versioned(list(reversed(mesh(30)))))
    assert a.cache.current.version == b.cache.current.version
    for type_url in codec.TYPE_URLS:
        assert dict(a.cache.current.versions(type_url)) == dict(b.cache.current.versions(type_url))
    store_a, store_b = StateStore(), StateStore()
    ca = harness.client(fixed(a.address), store=store_a)
    cb = harness.client(fixed(b.address), store=store_b)
    await asyncio.wait_for(asyncio.gather(ca.synced.wait(), cb.synced.wait()), TIMEOUT)
    assert store_a.current.version == store_b.current.version
    assert dict(store_a.current.entries) == dict(store_b.current.entries)


# -- safety ------------------------------------------------------------------------------------


async def test_client_refuses_a_server_with_another_identity(harness: Harness) -> None:
    impostor = await harness.replica(cert=harness.pki.workload("default", "evil"))
    impostor.cache.set(versioned(mesh(2)))
    store = StateStore()
    client = harness.client(fixed(impostor.address), store=store)
    await eventually(lambda: client.stats.failures >= 2, what="refused connections")
    assert not client.synced.is_set()
    assert len(store.current) == 0
    assert client.last_error is not None and "is not the control plane" in client.last_error
    assert impostor.xds.stats.streams_total == 0
    assert client.server_identity == control_plane_identity("cluster.local")


async def test_unready_replica_does_not_wipe_a_resuming_proxy(harness: Harness) -> None:
    replica = await harness.replica()
    source = SnapshotCache()
    source.set(versioned(mesh(3)))
    store = StateStore()
    for value in mesh(3):  # state the proxy kept from before
        store.apply(versioned([value]))
    version = store.current.version
    responses: list[ResponseInfo] = []
    client = harness.client(fixed(replica.address), store=store, responses=responses)
    await eventually(lambda: replica.xds.stats.streams_active == 1, what="the stream")
    assert responses == [] and store.current.version == version
    replica.cache.set(versioned(mesh(3)))
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)
    # in order on the stream: had the unready replica answered, that answer would come first
    assert len(responses) == len(codec.TYPE_URLS), (
        responses
    )  # one (empty) answer per type, both after the cache was set
    assert sum(len(r.resources) + len(r.removed) for r in responses) == 0
    assert store.current.version == version


async def test_no_address_then_address_appears(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(1)))
    known: list[tuple[str, int]] = []
    client = harness.client(lambda: list(known))
    await eventually(lambda: client.stats.failures >= 3, what="retries")
    assert client.last_error == "no control-plane address known"
    known.append(replica.address)
    await asyncio.wait_for(client.synced.wait(), TIMEOUT)


async def test_envoy_method_path_is_served(harness: Harness) -> None:
    replica = await harness.replica()
    replica.cache.set(versioned(mesh(2)))
    channel = await VerifiedChannel.open(
        replica.address,
        cert=harness.pki.node("n1"),
        bundle=harness.pki.bundle,
        expected=control_plane_identity("cluster.local"),
    )
    harness.channels.append(channel)
    call = channel.channel.stream_stream(
        f"/{ENVOY_ADS_SERVICE}/DeltaAggregatedResources",
        request_serializer=discovery_pb2.DeltaDiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DeltaDiscoveryResponse.FromString,
    )()
    try:
        await call.write(
            discovery_pb2.DeltaDiscoveryRequest(
                type_url=codec.ADDRESS_TYPE_URL, resource_names_subscribe=["*"]
            )
        )
        response = await asyncio.wait_for(call.read(), TIMEOUT)
        assert response.type_url == codec.ADDRESS_TYPE_URL
        assert sorted(r.name for r in response.resources) == [
            "svc/default/web.default.svc.cluster.local",
            "wl/uid-0",
            "wl/uid-1",
        ]
        await call.done_writing()
        assert await call.read() is grpc.aio.EOF
    finally:
        call.cancel()
    assert channel.peer == control_plane_identity("cluster.local")
