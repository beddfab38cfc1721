"""The ztunnel app in-process against a real control plane (store, gRPC + mTLS, CA) and a fake node agent.

No namespaces: pods get loopback socket factories and a 127/8 listen address (the e2e tier covers the
netns path). Checks xDS sync, /config_dump, /healthz/ready (needs the agent's SnapshotSent), /metrics,
AddWorkload / DelWorkload acks, the cache files (0700 dir, 0600 files), and a second ztunnel that
serves from that cache while the control plane is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import stat
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ambit.control.app import ControlPlane, ControlPlaneConfig
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import issue, write_cert_files, write_pem
from ambit.model.identity import NodeIdentity
from ambit.protocol import zds
from ambit.proxy.sockets import LoopbackSocketFactory
from ambit.store import StoreClient
from ambit.store.server import StoreServer
from ambit.ztunnel.app import AppConfig, ZtunnelApp
from ambit.ztunnel.config import ZtunnelConfig

TD = "cluster.local"
NODE = "node-1"
SA = "bookinfo-productpage"
NETNS = "/proc/self/ns/net"


def _pod(name: str, node: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "productpage"}},
        "spec": {"nodeName": node, "serviceAccountName": SA, "containers": [{"name": "app", "image": "x"}]},
        "status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]},
    }


OBJECTS = [
    {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "default", "labels": {"istio.io/dataplane-mode": "ambient"}},
    },
    _pod("productpage-1", NODE, "10.244.1.5"),
    {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "productpage", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.10", "selector": {"app": "productpage"}, "ports": [{"port": 9080}]},
    },
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Env:
    root: Path
    ca: CertificateAuthority
    store_socket: Path
    node_dir: Path

    def plane_config(self) -> ControlPlaneConfig:
        return ControlPlaneConfig(
            state_dir=self.root / "state",
            grpc_host="127.0.0.1",
            grpc_port=0,
            token_port=0,
            http_host="127.0.0.1",
            http_port=0,
            debounce=0.05,
        )

    def app_config(self, xds_port: int) -> AppConfig:
        ports = {name: free_port() for name in ("admin_port", "metrics_port", "readiness_port")}
        return AppConfig(
            ztunnel=ZtunnelConfig(node=NODE, drain_deadline=1.0, **ports),
            node_dir=self.node_dir,
            bootstrap=(("127.0.0.1", xds_port),),
            public_host="127.0.0.1",
            listen_ip=f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.1",
            pod_wait=1.0,
            cache_interval=0.05,
            agent_backoff_max=0.1,
            sockets_for=lambda _fd: LoopbackSocketFactory(),
        )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    root = Path(tempfile.mkdtemp(prefix="ambit-zt-", dir="/tmp"))
    try:
        ca = CertificateAuthority.create(TD)
        ca.save(root / "state" / "ca")
        node_dir = root / "nodes" / NODE
        node_dir.mkdir(parents=True)
        write_cert_files(issue(ca, NodeIdentity(TD, NODE)), node_dir, "node")
        write_pem(node_dir / "trust-bundle.pem", ca.trust_bundle.roots_pem, mode=0o644)
        server = StoreServer(root / "store", root / "store.sock")
        await server.start()
        try:
            async with StoreClient(server.socket_path) as client:
                for obj in OBJECTS:
                    await client.apply(obj)
            yield Env(root, ca, server.socket_path, node_dir)
        finally:
            await server.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


class Agent:
    """The node agent's side of ZDS on the node's socket."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(os.fspath(path))
        self.server.listen(4)
        self.server.setblocking(False)
        self.conn: socket.socket | None = None

    async def accept(self) -> None:
        async with asyncio.timeout(5):
            conn, _ = await asyncio.get_running_loop().sock_accept(self.server)
        conn.setblocking(False)
        self.conn = conn
        assert await self.recv() == zds.Hello()

    async def recv(self) -> zds.Message:
        assert self.conn is not None
        async with asyncio.timeout(10):
            data = await asyncio.get_running_loop().sock_recv(self.conn, zds.MAX_MESSAGE)
        return zds.decode(data, fds=0)

    async def request(self, message: zds.Message) -> zds.Message:
        assert self.conn is not None
        frame = zds.encode(message)
        if frame.needs_fd:
            fd = os.open(NETNS, os.O_RDONLY)
            try:
                socket.send_fds(self.conn, [frame.data], [fd])
            finally:
                os.close(fd)
        else:
            self.conn.send(frame.data)
        return await self.recv()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


async def eventually(predicate: Any, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as response:
        return response.status, await response.text()


async def started_app(stack: AsyncExitStack, config: AppConfig) -> ZtunnelApp:
    app = ZtunnelApp(config)
    stack.push_async_callback(app.close)
    await app.start()
    return app


def agent_for(stack: AsyncExitStack, config: AppConfig) -> Agent:
    config.agent_socket.unlink(missing_ok=True)
    agent = Agent(config.agent_socket)
    stack.callback(agent.close)
    return agent


async def test_syncs_serves_pods_and_restarts_from_the_cache(env: Env) -> None:
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        source = StoreClient(env.store_socket)
        stack.push_async_callback(source.close)
        plane = ControlPlane(env.plane_config(), source)
        await plane.start()
        stack.push_async_callback(plane.close)
        config = env.app_config(plane.grpc.port or 0)
        agent = agent_for(stack, config)
        app = await started_app(stack, config)
        ports = app.admin.ports if app.admin else {}
        await agent.accept()
        await eventually(lambda: app.ztunnel is not None and app.ztunnel.state.synced)
        assert not app.synced_from_cache
        # not ready before the agent's snapshot
        assert (await get(session, ports["readiness"], "/healthz/ready"))[0] == 503
        [workload] = app.store.current.workloads.values()
        assert workload.name == "productpage-1"

        # a pod: the workload is in xDS, its cert comes from the CA, its listeners open
        assert await agent.request(zds.AddWorkload(workload.uid, _info())) == zds.Ack(workload.uid)
        assert await agent.request(zds.AddWorkload("no-such-uid", _info())) == zds.Ack(
            "no-such-uid", "workload no-such-uid (default/productpage-1): not in the config after 1 s"
        )
        assert await agent.request(zds.SnapshotSent()) == zds.Ack("")
        assert (await get(session, ports["readiness"], "/healthz/ready"))[0] == 200
        with socket.create_connection((config.listen_ip, config.ztunnel.hbone_port), timeout=3):
            pass  # the pod's HBONE listener is up

        status, text = await get(session, ports["admin"], "/config_dump")
        assert status == 200
        dump = json.loads(text)
        assert list(dump["workloads"]) == [workload.uid]
        assert dump["workloads"][workload.uid]["service_account"] == SA
        assert dump["counts"] == {"workloads": 1, "services": 1, "policies": 0}
        assert dump["pods"][workload.uid]["identity"] == f"spiffe://{TD}/ns/default/sa/{SA}"
        assert list(dump["certificates"]) == [f"spiffe://{TD}/ns/default/sa/{SA}"]
        assert dump["agent"]["snapshot_processed"] is True
        for path in ("/metrics", "/stats/prometheus"):
            assert (await get(session, ports["metrics"], path))[0] == 200

        # the cache: 0700 directory, 0600 files
        cache = config.cache_dir
        await eventually(lambda: (cache / "state.pb").exists() and (cache / "certs.json").exists())
        assert stat.S_IMODE(cache.stat().st_mode) == 0o700
        for name in ("state.pb", "certs.json"):
            assert stat.S_IMODE((cache / name).stat().st_mode) == 0o600

        await app.close()
        agent.close()
        await plane.close()

        # the control plane is gone: a new ztunnel serves from the cache
        agent2 = agent_for(stack, config)
        config2 = env.app_config(plane.grpc.port or 1)
        config2 = AppConfig(**{**_fields(config2), "node_dir": config.node_dir})
        app2 = await started_app(stack, config2)
        await agent2.accept()
        assert app2.synced_from_cache and app2.ztunnel is not None and app2.ztunnel.state.synced
        assert list(app2.store.current.workloads) == [workload.uid]
        assert list(app2.ztunnel.credentials.secrets.snapshot()) == [workload.identity]
        assert await agent2.request(zds.AddWorkload(workload.uid, _info())) == zds.Ack(workload.uid)
        assert await agent2.request(zds.SnapshotSent()) == zds.Ack("")
        ports2 = app2.admin.ports if app2.admin else {}
        assert (await get(session, ports2["readiness"], "/healthz/ready"))[0] == 200
        assert not app2.xds.synced.is_set() if app2.xds else False


async def test_snapshot_drops_pods_not_replayed_and_drain_exits(env: Env) -> None:
    async with AsyncExitStack() as stack:
        source = StoreClient(env.store_socket)
        stack.push_async_callback(source.close)
        plane = ControlPlane(env.plane_config(), source)
        await plane.start()
        stack.push_async_callback(plane.close)
        config = env.app_config(plane.grpc.port or 0)
        agent = agent_for(stack, config)
        app = await started_app(stack, config)
        await agent.accept()
        await eventually(lambda: len(app.store.current.workloads) == 1)
        [workload] = app.store.current.workloads.values()
        assert await agent.request(zds.AddWorkload(workload.uid, _info())) == zds.Ack(workload.uid)
        # replaced (a replay), then removed: its netns fd is closed again
        assert await agent.request(zds.AddWorkload(workload.uid, _info())) == zds.Ack(workload.uid)
        assert len(app.fds) == 1
        netns_fds = netns_fd_count()
        assert await agent.request(zds.DelWorkload(workload.uid)) == zds.Ack(workload.uid)
        assert netns_fd_count() == netns_fds - 1
        assert app.ztunnel is not None and not app.ztunnel.pods and not app.fds
        assert await agent.request(zds.AddWorkload(workload.uid, _info())) == zds.Ack(workload.uid)
        # the agent reconnects and replays nothing: the pod is dropped at SnapshotSent
        assert agent.conn is not None
        agent.conn.close()
        agent.conn = None
        await agent.accept()
        assert await agent.request(zds.SnapshotSent()) == zds.Ack("")
        assert app.ztunnel is not None and not app.ztunnel.pods and not app.fds
        async with asyncio.timeout(5):
            await app.drain(0.5)
        assert not app.ready()


def netns_fd_count() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
    return count


def _info() -> zds.WorkloadInfo:
    return zds.WorkloadInfo(name="productpage-1", namespace="default", service_account=SA, node=NODE)


def _fields(config: AppConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in AppConfig.__slots__}  # type: ignore[attr-defined]
