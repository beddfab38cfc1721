"""ambit.net.tls: TLS on the socket, as an asyncio transport (real mTLS with our CA, loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from ambit.net import tls
from ambit.net.tls import HIGH_WATER, TlsServer, TlsTransport, open_tls
from ambit.testing.hbone_env import HboneEnv, workload

SERVER = workload("server")
CLIENT = workload("client")
MiB = 1024 * 1024


_made: list[Recorder] = []  # every protocol of the running test, for the cleanup


@pytest.fixture(autouse=True)
async def close_everything() -> AsyncIterator[None]:
    _made.clear()
    yield
    for recorder in _made:
        if recorder.transport is not None:
            recorder.transport.abort()
    await asyncio.sleep(0)  # connection_lost is called soon after abort
    _made.clear()


class Recorder(asyncio.Protocol):
    """Records everything a transport reports."""

    def __init__(self, *, keep_open_on_eof: bool = False) -> None:
        _made.append(self)
        self.transport: TlsTransport | None = None
        self.data = bytearray()
        self.digest = hashlib.sha256()
        self.events: list[str] = []
        self.made = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        self.eof = asyncio.get_running_loop().create_future()
        self.keep_open_on_eof = keep_open_on_eof
        self.wanted = 0
        self.got_enough: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, TlsTransport)
        self.transport = transport
        self.events.append("made")
        self.made.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.digest.update(data)
        if len(self.data) < 1 * MiB:
            self.data += data[: 1 * MiB - len(self.data)]
        self.wanted -= len(data)
        if self.wanted <= 0 and not self.got_enough.done():
            self.got_enough.set_result(None)

    def eof_received(self) -> bool:
        self.events.append("eof")
        self.eof.set_result(None)
        return self.keep_open_on_eof

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")
        if not self.lost.done():
            self.lost.set_result(exc)


async def pair(
    env: HboneEnv, *, handshake_timeout: float | None = 5.0
) -> tuple[TlsServer, Recorder, Recorder]:
    servers: list[Recorder] = []

    def make() -> Recorder:
        servers.append(Recorder())
        return servers[-1]

    listener = socket.create_server(("127.0.0.1", 0))
    server = TlsServer(listener, env.server_ctx(env.cert(SERVER)), make, handshake_timeout=handshake_timeout)
    sock = socket.create_connection(listener.getsockname())
    _t, client = await open_tls(sock, env.client_ctx(env.cert(CLIENT)), Recorder, handshake_timeout=5.0)
    assert isinstance(client, Recorder)
    await asyncio.wait_for(servers[0].made, 5)
    return server, servers[0], client


async def test_bytes_both_ways_and_peer_identity_visible(env: HboneEnv) -> None:
    server, srv, cli = await pair(env)
    assert cli.transport is not None and srv.transport is not None
    ssl_object = srv.transport.get_extra_info("ssl_object")
    assert isinstance(ssl_object, ssl.SSLSocket)
    assert ssl_object.version() == "TLSv1.3"
    assert srv.transport.get_extra_info("peername") == cli.transport.get_extra_info("sockname")
    payload = os.urandom(100_000)
    srv.wanted = len(payload)
    cli.transport.write(payload)
    await asyncio.wait_for(srv.got_enough, 5)
    assert bytes(srv.data) == payload
    srv.transport.close()
    await asyncio.wait_for(cli.eof, 5)  # close_notify reached the client as EOF
    assert await asyncio.wait_for(cli.lost, 5) is None  # eof_received returned False: closed
    assert cli.events == ["made", "eof", "lost"]
    server.close()


async def test_a_reader_that_stops_pauses_the_writer_and_nothing_is_lost(env: HboneEnv) -> None:
    server, srv, cli = await pair(env)
    assert cli.transport is not None and srv.transport is not None
    srv.transport.pause_reading()
    chunk = os.urandom(256 * 1024)
    sent = hashlib.sha256()
    total = 0
    for _ in range(200):  # 50 MiB against a reader that reads nothing: the queue must grow
        cli.transport.write(chunk)
        sent.update(chunk)
        total += len(chunk)
        if "pause_writing" in cli.events:
            break
    assert "pause_writing" in cli.events
    assert cli.transport.get_write_buffer_size() > HIGH_WATER
    srv.wanted = total
    srv.transport.resume_reading()
    await asyncio.wait_for(srv.got_enough, 30)
    assert srv.digest.hexdigest() == sent.hexdigest()
    assert cli.events[-1] == "resume_writing"
    assert cli.transport.get_write_buffer_size() == 0
    server.close()


async def test_close_sends_what_is_queued_first(env: HboneEnv) -> None:
    server, srv, cli = await pair(env)
    assert cli.transport is not None and srv.transport is not None
    srv.transport.pause_reading()
    payload = os.urandom(8 * MiB)
    cli.transport.write(payload)
    assert cli.transport.get_write_buffer_size() > 0  # the socket did not take it all
    cli.transport.close()
    assert cli.transport.is_closing()
    srv.wanted = len(payload)
    srv.transport.resume_reading()
    await asyncio.wait_for(srv.eof, 10)
    assert srv.digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    assert await asyncio.wait_for(cli.lost, 5) is None
    server.close()


async def test_abort_drops_the_queue_and_the_peer_sees_the_end(env: HboneEnv) -> None:
    server, srv, cli = await pair(env)
    assert cli.transport is not None and srv.transport is not None
    srv.transport.pause_reading()
    cli.transport.write(os.urandom(8 * MiB))
    cli.transport.abort()
    assert await asyncio.wait_for(cli.lost, 5) is None
    assert cli.transport.get_write_buffer_size() == 0
    cli.transport.write(b"after the end")  # ignored, never raises
    srv.transport.resume_reading()
    await asyncio.wait_for(srv.lost, 10)  # no close_notify: the server sees a ragged end or a reset
    server.close()


async def test_records_decrypted_while_paused_are_delivered_on_resume(
    env: HboneEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that fills the buffer mid-record leaves the rest of that record inside OpenSSL: with
    the socket empty no fd event will come, so resume_reading must deliver it."""
    monkeypatch.setattr(tls, "READ_BUFFER", 20_000)  # not a multiple of the 16 KiB record size
    server, srv, cli = await pair(env)
    assert cli.transport is not None and srv.transport is not None
    srv.transport.pause_reading()
    payload = os.urandom(2 * tls.FULL_RECORD)  # two full records
    cli.transport.write(payload)
    await asyncio.sleep(0.2)  # both records are in the server's socket before the first read
    srv.wanted = len(payload)
    reads: list[int] = []
    original = srv.data_received

    def pause_after_each(data: bytes) -> None:
        original(data)
        reads.append(len(data))
        assert srv.transport is not None
        srv.transport.pause_reading()
        asyncio.get_running_loop().call_later(0.05, srv.transport.resume_reading)

    srv.data_received = pause_after_each  # type: ignore[method-assign]
    srv.transport.resume_reading()
    await asyncio.wait_for(srv.got_enough, 5)
    assert reads == [20_000, len(payload) - 20_000]  # the first read ended inside the second record
    assert srv.digest.hexdigest() == hashlib.sha256(payload).hexdigest()
    server.close()


def recording_server(env: HboneEnv, handshake_timeout: float) -> tuple[TlsServer, list[Recorder]]:
    """A TlsServer on loopback and the list of the protocols it makes (one per accepted connection)."""
    made: list[Recorder] = []

    def make() -> Recorder:
        made.append(Recorder())
        return made[-1]

    listener = socket.create_server(("127.0.0.1", 0))
    return TlsServer(
        listener, env.server_ctx(env.cert(SERVER)), make, handshake_timeout=handshake_timeout
    ), made


async def test_handshake_failure_reports_connection_lost_without_made(env: HboneEnv) -> None:
    server, made = recording_server(env, 5.0)
    raw = socket.create_connection(server.sockets[0].getsockname())
    raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # not TLS
    exc = await asyncio.wait_for(made_lost(made), 5)
    assert isinstance(exc, ssl.SSLError)
    assert made[0].events == ["lost"]
    raw.close()
    server.close()


async def made_lost(made: list[Recorder]) -> Exception | None:
    """The first server-side protocol's connection_lost argument, once it has one."""
    async with asyncio.timeout(5):
        while not made:  # noqa: ASYNC110 - the protocol is made when the connection is accepted
            await asyncio.sleep(0.01)
    return await made[0].lost


async def test_a_silent_client_is_cut_at_the_handshake_timeout(env: HboneEnv) -> None:
    server, made = recording_server(env, 0.2)
    raw = socket.create_connection(server.sockets[0].getsockname())
    exc = await asyncio.wait_for(made_lost(made), 5)
    assert isinstance(exc, ConnectionAbortedError)
    assert "0.2 s" in str(exc)
    assert raw.recv(1) == b""  # the server closed the socket
    raw.close()
    server.close()


async def test_client_handshake_timeout_raises_and_closes_the_socket(env: HboneEnv) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) but never answers
    sock = socket.create_connection(silent.getsockname())
    with pytest.raises(TimeoutError):
        await open_tls(sock, env.client_ctx(env.cert(CLIENT)), Recorder, handshake_timeout=0.2)
    assert sock.fileno() == -1
    silent.close()


async def test_a_closed_server_accepts_nothing_more(env: HboneEnv) -> None:
    server, _srv, _cli = await pair(env)
    address = server.sockets[0].getsockname()
    server.close()
    assert not server.is_serving()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=2)
    await server.wait_closed()


# Run in a fresh interpreter: it lowers its own descriptor limit.
_OUT_OF_DESCRIPTORS = r"""
import asyncio, json, os, resource, socket, ssl, sys
from ambit.net import tls

async def main() -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # never gets as far as a handshake
    made = []
    listener = socket.create_server(("127.0.0.1", 0))
    server = tls.TlsServer(listener, context, lambda: made.append(1) or asyncio.Protocol())
    calls = 0
    original = server._accept_ready

    def counting() -> None:
        nonlocal calls
        calls += 1
        original()

    server._accept_ready = counting
    loop = asyncio.get_running_loop()
    loop.remove_reader(server.sockets[0].fileno())
    loop.add_reader(server.sockets[0].fileno(), counting)
    clients = [socket.create_connection(server.sockets[0].getsockname()) for _ in range(5)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    in_use = len(os.listdir("/proc/self/fd")) - 1  # not the directory listdir itself opened
    resource.setrlimit(resource.RLIMIT_NOFILE, (in_use, hard))  # no descriptor left to accept with
    await asyncio.sleep(0.5)
    starved = {"calls": calls, "errors": server.accept_errors, "made": len(made)}
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    await asyncio.sleep(tls.ACCEPT_RETRY_DELAY + 0.5)
    print(json.dumps({"starved": starved, "made_after": len(made)}))
    server.abort_handshakes()
    await server.wait_closed()
    server.close()
    for c in clients:
        c.close()

asyncio.run(main())
"""


def test_out_of_descriptors_pauses_accepting_instead_of_spinning() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS], capture_output=True, text=True, timeout=30, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    starved = result["starved"]
    assert starved["errors"] >= 1, result  # accept() failed with EMFILE
    assert starved["calls"] <= 3, result  # not a busy loop on the still-readable socket
    assert starved["made"] == 0, result
    assert result["made_after"] == 5, result  # accepting resumed once descriptors were back
