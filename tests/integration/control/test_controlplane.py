"""Control-plane replicas end to end: a real store, real gRPC over mTLS, real xDS and CA clients."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambit.control.app import ControlPlane, ControlPlaneConfig
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.workload import HealthStatus, TunnelProtocol
from ambit.state.store import StateStore
from ambit.store import StoreClient
from ambit.store.server import StoreServer
from ambit.xds.ca_client import CaClient, CertificateDenied
from ambit.xds.client import XdsClient

TD = "cluster.local"


def pod(
    name: str, node: str, ip: str, *, sa: str = "bookinfo-productpage", labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "productpage"}},
        "spec": {
            "nodeName": node,
            "serviceAccountName": sa,
            "containers": [{"name": "app", "image": "x", "ports": [{"containerPort": 9080, "name": "http"}]}],
        },
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "productpage", "namespace": "default"},
    "spec": {
        "clusterIP": "10.96.0.10",
        "selector": {"app": "productpage"},
        "ports": [{"name": "http", "port": 9080}],
    },
}
AMBIENT_NS = {
    "apiVersion": "v1",
    "kind": "Namespace",
    "metadata": {"name": "default", "labels": {"istio.io/dataplane-mode": "ambient"}},
}


@dataclass
class Cluster:
    root: Path
    ca: CertificateAuthority
    store: StoreClient
    socket: Path

    def config(self, **overrides: Any) -> ControlPlaneConfig:
        values: dict[str, Any] = {
            "state_dir": self.root / "state",
            "grpc_host": "127.0.0.1",
            "grpc_port": 0,
            "token_port": 0,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "debounce": 0.05,
        }
        values.update(overrides)
        return ControlPlaneConfig(**values)


@pytest.fixture
def root() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-cp-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def cluster(root: Path) -> AsyncIterator[Cluster]:
    ca = CertificateAuthority.create(TD)
    ca.save(root / "state" / "ca")
    server = StoreServer(root / "store", root / "store.sock")
    await server.start()
    try:
        async with StoreClient(server.socket_path) as client:
            await client.apply(AMBIENT_NS)
            await client.apply(pod("productpage-1", "node-1", "10.244.1.5"))
            await client.apply(SERVICE)
            yield Cluster(root, ca, client, server.socket_path)
    finally:
        await server.close()


async def started(stack: AsyncExitStack, config: ControlPlaneConfig, socket: Path) -> ControlPlane:
    source = StoreClient(socket)
    stack.push_async_callback(source.close)
    plane = ControlPlane(config, source)
    await plane.start()
    stack.push_async_callback(plane.close)
    return plane


async def eventually(predicate: Any, within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - state stores offer no event for arbitrary predicates
            await asyncio.sleep(0.01)


def xds_client(
    cluster: Cluster, plane: ControlPlane, node: str = "node-1", **kw: Any
) -> tuple[XdsClient, StateStore]:
    state = StateStore()
    client = XdsClient(
        addresses=lambda: [("127.0.0.1", plane.grpc.port or 0)],
        cert=issue(cluster.ca, NodeIdentity(TD, node)),
        bundle=cluster.ca.trust_bundle,
        store=state,
        **kw,
    )
    return client, state


async def test_proxy_receives_translated_state_and_follows_a_change(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        plane = await started(stack, cluster.config(), cluster.socket)
        client, state = xds_client(cluster, plane)
        client.start()
        stack.push_async_callback(client.close)
        await asyncio.wait_for(client.synced.wait(), 10)
        [wl] = state.current.workloads.values()
        assert (wl.name, wl.node, wl.addresses, wl.tunnel_protocol) == (
            "productpage-1",
            "node-1",
            ("10.244.1.5",),
            TunnelProtocol.HBONE,
        )
        assert state.current.find_service_by_vip("10.96.0.10") is not None

        await cluster.store.apply(pod("productpage-2", "node-2", "10.244.2.7"))
        await eventually(lambda: len(state.current.workloads) == 2)
        # A graceful delete (the pod is bound): the workload stays, no longer healthy (not an endpoint) ...
        await cluster.store.delete("Pod", "productpage-1", "default")
        await eventually(
            lambda: (
                sorted((w.name, w.status.name) for w in state.current.workloads.values())
                == [
                    ("productpage-1", HealthStatus.UNHEALTHY.name),
                    ("productpage-2", HealthStatus.HEALTHY.name),
                ]
            )
        )
        # ... until its kubelet's final delete (grace period 0) removes it.
        await cluster.store.delete("Pod", "productpage-1", "default", grace_period=0)
        await eventually(lambda: [w.name for w in state.current.workloads.values()] == ["productpage-2"])


async def test_two_replicas_serve_identical_versions(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        a = await started(stack, cluster.config(), cluster.socket)
        b = await started(stack, cluster.config(run_waypoint_controller=False), cluster.socket)
        assert a.cache.current.version == b.cache.current.version
        await cluster.store.apply(pod("productpage-2", "node-2", "10.244.2.7"))
        await eventually(lambda: len(a.cache.current) == len(b.cache.current) == 3)
        await eventually(lambda: a.cache.current.version == b.cache.current.version)


async def test_failover_between_replicas_keeps_config(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        a = await started(stack, cluster.config(), cluster.socket)
        b = await started(stack, cluster.config(run_waypoint_controller=False), cluster.socket)
        state = StateStore()
        client = XdsClient(
            addresses=lambda: [("127.0.0.1", p.grpc.port or 0) for p in (a, b) if p.grpc.port],
            cert=issue(cluster.ca, NodeIdentity(TD, "node-1")),
            bundle=cluster.ca.trust_bundle,
            store=state,
            backoff_initial=0.01,
            backoff_max=0.2,
        )
        client.start()
        stack.push_async_callback(client.close)
        await asyncio.wait_for(client.synced.wait(), 10)
        first = client.address
        survivor = b if first == ("127.0.0.1", a.grpc.port) else a
        victim = a if survivor is b else b
        await victim.close()
        victim.grpc.port = None
        await cluster.store.apply(pod("productpage-2", "node-2", "10.244.2.7"))
        await eventually(lambda: len(state.current.workloads) == 2, within=10)
        assert client.address == ("127.0.0.1", survivor.grpc.port)


async def test_ca_signs_for_pods_on_the_callers_node_only(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        plane = await started(stack, cluster.config(), cluster.socket)
        wanted = Identity(TD, "default", "bookinfo-productpage")

        def ca_client(node: str) -> CaClient:
            c = CaClient(
                addresses=lambda: [("127.0.0.1", plane.grpc.port or 0)],
                cert=issue(cluster.ca, NodeIdentity(TD, node)),
                bundle=cluster.ca.trust_bundle,
            )
            stack.push_async_callback(c.close)
            return c

        cert = await ca_client("node-1").fetch(wanted)
        assert cert.identity == wanted
        with pytest.raises(CertificateDenied, match="node-2"):
            await ca_client("node-2").fetch(wanted)
        await cluster.store.delete("Pod", "productpage-1", "default", grace_period=0)
        await eventually(lambda: not plane._pods())
        with pytest.raises(CertificateDenied):
            await ca_client("node-1").fetch(wanted)
        assert plane.ca_service.stats.issued == 1
        assert plane.ca_service.stats.denied == 2


async def test_http_ready_debug_config_and_metrics(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        plane = await started(stack, cluster.config(), cluster.socket)
        client, _state = xds_client(cluster, plane)
        client.start()
        stack.push_async_callback(client.close)
        await asyncio.wait_for(client.synced.wait(), 10)
        host, port = plane.http.address
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://{host}:{port}/healthz/ready") as r:
                assert r.status == 200
            async with http.get(f"http://{host}:{port}/debug/config") as r:
                body = await r.json()
            names = {name for resources in body["resources"].values() for name in resources}
            assert "svc/default/productpage.default.svc.cluster.local" in names
            assert any(n.startswith("wl/") for n in names)
            async with http.get(f"http://{host}:{port}/metrics") as r:
                text = await r.text()
        assert "pilot_xds 1.0" in text
        assert "pilot_xds_pushes_total" in text
        assert "citadel_server_success_cert_issuance_count" in text
