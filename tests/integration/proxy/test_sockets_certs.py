"""The system socket factory on both loops, and certificate rotation on a running listener."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from ambit.identity.certs import WorkloadCert
from ambit.identity.secrets import SecretManager
from ambit.identity.tls import client_context
from ambit.model.identity import Identity
from ambit.net.duplex import TcpDuplex
from ambit.proxy.certs import WorkloadCredentials
from ambit.proxy.sockets import OriginalDestinationError, SystemSocketFactory
from ambit.testing.clock import FakeClock
from ambit.testing.ztunnel_mesh import Mesh

WEB = Identity("cluster.local", "default", "web")
SLEEP = Identity("cluster.local", "default", "sleep")


async def test_original_destination_of_a_connection_that_was_not_redirected(mesh: Mesh) -> None:
    factory = SystemSocketFactory(apply_marks=False)
    accepted: asyncio.Future[TcpDuplex] = asyncio.get_running_loop().create_future()

    class Accept(TcpDuplex):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            accepted.set_result(self)

    listener = await factory.listen((mesh.ip(2), 15001))
    server = await asyncio.get_running_loop().create_server(Accept, sock=listener)
    try:
        client = await factory.connect_upstream((mesh.ip(2), 15001), source_ip=mesh.ip(5), connect_timeout=5)
        conn = await asyncio.wait_for(accepted, 5)
        assert conn.transport is not None
        assert conn.transport.get_extra_info("peername")[0] == mesh.ip(5)
        # no NAT happened: the kernel has no original destination (on uvloop's PseudoSocket too)
        with pytest.raises(OriginalDestinationError):
            factory.original_destination(conn.transport)
        client.abort()
        conn.abort()
    finally:
        server.close()
        await server.wait_closed()


async def test_connect_timeout_and_refusal(mesh: Mesh) -> None:
    factory = SystemSocketFactory(apply_marks=False)
    with pytest.raises(ConnectionRefusedError):
        await factory.connect_upstream((mesh.ip(7), 1), connect_timeout=5)


@pytest.mark.skipif(os.geteuid() != 0, reason="SO_MARK needs CAP_NET_ADMIN")
async def test_sockets_carry_the_mark(mesh: Mesh) -> None:
    app = await mesh.app(3)
    factory = SystemSocketFactory()
    sock = await factory.connect_socket(app.address, mark=0x539, connect_timeout=5)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_MARK) == 0x539
    finally:
        sock.close()


async def test_a_listener_serves_the_rotated_certificate_from_the_next_handshake(mesh: Mesh) -> None:
    clock = FakeClock(datetime.now(UTC))
    issued: list[WorkloadCert] = []

    async def fetch(identity: Identity) -> WorkloadCert:
        # the first lives 1 h (refresh due at 30 min); the next 4 h, so its refresh is not due yet
        cert = mesh.pki.issue(identity, ttl=timedelta(hours=1 if not issued else 4))
        issued.append(cert)
        return cert

    credentials = WorkloadCredentials(SecretManager(fetch, clock=clock), lambda: mesh.pki.bundle, clock=clock)
    context = await credentials.listener_context(WEB)
    served: list[bytes] = []

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(on_client, mesh.ip(3), 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client_ctx = client_context(mesh.pki.issue(SLEEP), mesh.pki.bundle)

    async def handshake() -> bytes:
        _reader, writer = await asyncio.open_connection(mesh.ip(3), port, ssl=client_ctx, server_hostname="")
        sslobj = writer.get_extra_info("ssl_object")
        der = sslobj.getpeercert(binary_form=True)
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()
        return bytes(der)

    try:
        served.append(await handshake())
        clock.advance(40 * 60)  # past half-life: the secret manager fetches a new certificate
        await clock.settle()
        for _ in range(100):
            if len(issued) >= 2:
                break
            await asyncio.sleep(0.01)
        assert len(issued) == 2
        served.append(await handshake())
        leaves = [cert.leaf().public_bytes(Encoding.DER) for cert in issued]
        assert served == leaves  # the first handshake got the first certificate, the next one the new one
    finally:
        server.close()
        await server.wait_closed()
        await credentials.close()


async def test_a_listener_refuses_handshakes_once_its_certificate_expired(mesh: Mesh) -> None:
    clock = FakeClock(datetime.now(UTC))
    calls = 0

    async def fetch(identity: Identity) -> WorkloadCert:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise RuntimeError("CA unreachable")
        return mesh.pki.issue(identity, ttl=timedelta(hours=1))

    credentials = WorkloadCredentials(SecretManager(fetch, clock=clock), lambda: mesh.pki.bundle, clock=clock)
    context = await credentials.listener_context(WEB)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(on_client, mesh.ip(3), 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client_ctx = client_context(mesh.pki.issue(SLEEP), mesh.pki.bundle)
    try:
        clock.advance(2 * 3600)  # expired for the secret manager; every refresh fails
        await clock.settle()
        assert credentials.current_server_context(WEB) is None
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _reader, writer = await asyncio.open_connection(
                mesh.ip(3), port, ssl=client_ctx, server_hostname=""
            )
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
        await credentials.close()
