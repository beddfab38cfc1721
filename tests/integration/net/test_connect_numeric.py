"""`connect_numeric`: connects without the resolver, and reports the kernel's error."""

from __future__ import annotations

import asyncio
import socket

import pytest

from ambit.net.connect import connect_numeric
from ambit.net.duplex import TcpDuplex


async def test_connects_and_the_socket_becomes_a_transport() -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.set_result(await reader.readexactly(5))
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await connect_numeric(sock, ("127.0.0.1", port))
        transport, duplex = await asyncio.get_running_loop().create_connection(TcpDuplex, sock=sock)
        duplex.deliver(b"hello")
        assert await asyncio.wait_for(got, 5) == b"hello"
        transport.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_is_connection_refused() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens on this port now
    sock = socket.socket()
    sock.setblocking(False)
    with sock, pytest.raises(ConnectionRefusedError):
        await connect_numeric(sock, ("127.0.0.1", port))


async def test_many_connections_in_parallel() -> None:
    accepted = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    socks = [socket.socket() for _ in range(100)]
    try:
        for s in socks:
            s.setblocking(False)
        await asyncio.gather(*(connect_numeric(s, ("127.0.0.1", port)) for s in socks))
        for _ in range(100):
            if accepted == 100:
                break
            await asyncio.sleep(0.01)
        assert accepted == 100
    finally:
        for s in socks:
            s.close()
        server.close()
        await server.wait_closed()
