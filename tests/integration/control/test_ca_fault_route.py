"""The CA fault switch of a control-plane replica (``POST /debug/fault/ca``, chaos tests only) and the
workload-certificate policy, on a replica started in-process as `ambit controlplane` starts it: a real
store, real gRPC over mTLS, the real CA client."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from ambit.control.app import ControlPlane, ControlPlaneConfig
from ambit.control.ca_server import CA_REFUSING, WorkloadCertPolicy
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue
from ambit.model.identity import Identity, NodeIdentity
from ambit.state.store import StateStore
from ambit.store import StoreClient
from ambit.store.server import StoreServer
from ambit.xds.ca_client import CaClient, CertificateDenied, CertificateFetchError
from ambit.xds.client import XdsClient

TD = "cluster.local"
WANTED = Identity(TD, "default", "productpage")
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "productpage-1", "namespace": "default", "labels": {"app": "productpage"}},
    "spec": {
        "nodeName": "node-1",
        "serviceAccountName": "productpage",
        "containers": [{"name": "app", "image": "x"}],
    },
    "status": {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "conditions": [{"type": "Ready", "status": "True"}],
    },
}


@dataclass
class Cluster:
    root: Path
    ca: CertificateAuthority
    socket: Path


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="ambit-caf-", dir="/tmp"))
    ca = CertificateAuthority.create(TD)
    ca.save(root / "state" / "ca")
    server = StoreServer(root / "store", root / "store.sock")
    await server.start()
    try:
        async with StoreClient(server.socket_path) as client:
            await client.apply(POD)
        yield Cluster(root, ca, server.socket_path)
    finally:
        await server.close()
        shutil.rmtree(root, ignore_errors=True)


async def started(
    stack: AsyncExitStack,
    cluster: Cluster,
    *,
    fault_endpoints: bool = False,
    policy: WorkloadCertPolicy | None = None,
) -> ControlPlane:
    """A replica as ``ambit.cli.controlplane._serve`` starts one (the options set before ``start``)."""
    config = ControlPlaneConfig(
        state_dir=cluster.root / "state",
        grpc_host="127.0.0.1",
        grpc_port=0,
        token_port=0,
        http_host="127.0.0.1",
        http_port=0,
        debounce=0.05,
        run_waypoint_controller=False,
        run_route_status_controller=False,
    )
    source = StoreClient(cluster.socket)
    stack.push_async_callback(source.close)
    plane = ControlPlane(config, source)
    if policy is not None:
        plane.ca_service.policy = policy
    plane.http.fault_endpoints = fault_endpoints
    await plane.start()
    stack.push_async_callback(plane.close)
    return plane


def ca_client(stack: AsyncExitStack, cluster: Cluster, plane: ControlPlane) -> CaClient:
    client = CaClient(
        addresses=lambda: [("127.0.0.1", plane.grpc.port or 0)],
        cert=issue(cluster.ca, NodeIdentity(TD, "node-1")),
        bundle=cluster.ca.trust_bundle,
    )
    stack.push_async_callback(client.close)
    return client


def url(plane: ControlPlane, path: str) -> str:
    host, port = plane.http.address
    return f"http://{host}:{port}{path}"


async def test_a_production_start_has_no_fault_route(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        plane = await started(stack, cluster)
        async with aiohttp.ClientSession() as http:
            async with http.get(url(plane, "/debug/fault/ca")) as r:
                assert r.status == 404
            async with http.post(url(plane, "/debug/fault/ca"), data={"state": "refuse"}) as r:
                assert r.status == 404
        assert plane.ca_service.refusing is False
        cert = await ca_client(stack, cluster, plane).fetch(WANTED)
        assert cert.identity == WANTED


async def test_refuse_makes_the_ca_unavailable_while_xds_serves_and_serve_restores_it(
    cluster: Cluster,
) -> None:
    async with AsyncExitStack() as stack:
        plane = await started(stack, cluster, fault_endpoints=True)
        client = ca_client(stack, cluster, plane)
        async with aiohttp.ClientSession() as http:
            async with http.get(url(plane, "/debug/fault/ca")) as r:
                assert (r.status, await r.json()) == (200, {"state": "serve", "refused": 0})
            await client.fetch(WANTED)

            async with http.post(url(plane, "/debug/fault/ca"), data={"state": "refuse"}) as r:
                assert r.status == 200
                assert await r.json() == {"state": "refuse", "refused": 0, "previous": "serve"}
            with pytest.raises(CertificateFetchError, match=CA_REFUSING) as refused:
                await client.fetch(WANTED)
            assert not isinstance(refused.value, CertificateDenied)  # UNAVAILABLE: retried, not final
            assert plane.ca_service.stats.recent_denials[-1].code == "UNAVAILABLE"

            # xDS keeps serving while the CA refuses: a new proxy still gets its config.
            state = StateStore()
            xds = XdsClient(
                addresses=lambda: [("127.0.0.1", plane.grpc.port or 0)],
                cert=issue(cluster.ca, NodeIdentity(TD, "node-1")),
                bundle=cluster.ca.trust_bundle,
                store=state,
            )
            xds.start()
            stack.push_async_callback(xds.close)
            await asyncio.wait_for(xds.synced.wait(), 10)
            assert state.current.workloads

            async with http.get(url(plane, "/metrics")) as r:
                metrics = await r.text()
            assert "citadel_server_csr_denied_count_total 1.0" in metrics
            async with http.get(url(plane, "/debug/syncz")) as r:
                assert (await r.json())["certificates_refused_by_fault"] == 1

            async with http.post(url(plane, "/debug/fault/ca?state=serve")) as r:
                assert (await r.json())["state"] == "serve"
            cert = await client.fetch(WANTED)
            assert cert.identity == WANTED

            # A JSON body works too; an unknown state is refused and changes nothing.
            async with http.post(url(plane, "/debug/fault/ca"), json={"state": "refuse"}) as r:
                assert (await r.json())["state"] == "refuse"
            async with http.post(url(plane, "/debug/fault/ca"), data="state=down") as r:
                assert r.status == 400
                assert "refuse" in (await r.json())["error"]
            assert plane.ca_service.refusing is True
            async with http.post(url(plane, "/debug/fault/ca"), data="state=serve") as r:
                assert r.status == 200
        assert plane.ca_service.stats.issued == 2


async def test_a_short_ttl_is_honoured_and_refreshed_at_half_life(cluster: Cluster) -> None:
    async with AsyncExitStack() as stack:
        policy = WorkloadCertPolicy.resolve(ttl=timedelta(seconds=60))
        plane = await started(stack, cluster, policy=policy)
        before = datetime.now(UTC)
        cert = await ca_client(stack, cluster, plane).fetch(WANTED)  # asks for 24 h
        after = datetime.now(UTC)
        assert before + timedelta(seconds=59) <= cert.not_after <= after + timedelta(seconds=61)
        refresh_in = (cert.refresh_at - after).total_seconds()
        assert 25 <= refresh_in <= 28  # ~half of 60 s, not "at once" as with the CA's 1 min backdate
