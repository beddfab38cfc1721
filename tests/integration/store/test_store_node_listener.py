"""The store's node-heartbeat listener over real TLS: a node renews its own Lease and nothing else."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ambit.runtime.controllers.node_lifecycle import lease, parse_micro_time
from ambit.runtime.fabric_pki import FabricPki, node_of_peer
from ambit.store.client import StoreClient
from ambit.store.server import StoreServer, default_schema


@pytest.fixture
async def listener() -> AsyncIterator[tuple[StoreServer, FabricPki, int]]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-nl-", dir="/tmp"))
    pki = FabricPki(directory / "pki")
    pki.ensure(["node1", "node2"], "127.0.0.1")
    server = StoreServer(
        directory / "data",
        directory / "s.sock",
        schema=default_schema(),
        ensure_namespaces=("kube-node-lease",),
    )
    await server.start()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    await server.listen_for_nodes(sock, pki.server_context(), node_of_peer)
    try:
        yield server, pki, port
    finally:
        await server.close()
        shutil.rmtree(directory, ignore_errors=True)


async def put(port: int, context: ssl.SSLContext, path: str, body: bytes) -> int:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    writer.write(head.encode() + body)
    status = await reader.readline()
    writer.close()
    return int(status.split()[1])


async def test_a_node_renews_its_own_lease_and_only_its_own(
    listener: tuple[StoreServer, FabricPki, int],
) -> None:
    server, pki, port = listener
    node1 = pki.client_context("node1")
    own = json.dumps(lease("node1", 8, 1_800_000_000.25)).encode()
    assert await put(port, node1, "/objects/Lease/kube-node-lease/node1", own) == 200
    async with StoreClient(server.socket_path) as client:
        stored = await client.get("Lease", "node1", "kube-node-lease")
    assert parse_micro_time(stored["spec"]["renewTime"]) == 1_800_000_000.25
    other = json.dumps(lease("node2", 8, 1_800_000_000.0)).encode()
    assert await put(port, node1, "/objects/Lease/kube-node-lease/node2", other) == 403  # node1 for node2
    assert await put(port, node1, "/objects/Pod/default/x", b"{}") in (404, 405)  # nothing else is served
    assert await put(port, pki.client_context("node2"), "/objects/Lease/kube-node-lease/node2", other) == 200


async def test_no_client_certificate_no_connection(listener: tuple[StoreServer, FabricPki, int]) -> None:
    _, pki, port = listener
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.load_verify_locations(pki.ca)
    with pytest.raises((ssl.SSLError, ConnectionError, ValueError, IndexError)):
        await put(port, anonymous, "/objects/Lease/kube-node-lease/node1", b"{}")
