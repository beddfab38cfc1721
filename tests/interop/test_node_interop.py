"""HBONE interop against an independent implementation: Node.js's built-in `http2` and `tls`.

Both directions, with certificates from the real `ambit ca` CLI (one CA for the module):

* Node as the HBONE client (`node/hbone_client.js`) → ambit's `HboneServer` → TCP echo upstream;
* ambit's `connect_hbone` client → Node as the HBONE server (`node/hbone_server.js`) → TCP echo.

Each side checks the other's SPIFFE identity (exactly one URI SAN) and the tests assert on both
sides' view. Payloads are larger than every window involved (Node's 64 KiB default stream window,
ambit's 4 MiB stream window and 1 MiB send watermark), so flow control and backpressure are
exercised, and END_STREAM ↔ FIN is carried through the echo in both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.tls import PeerIdentityError, client_context, server_context
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity
from ambit.net.hbone import HboneServer, HboneStream, InboundTunnel, TunnelRejected, connect_hbone
from ambit.testing.hbone_env import HboneEnv, forwarding_handler, workload

NODE = shutil.which("node")
HERE = Path(__file__).parent
CLIENT_JS = HERE / "node" / "hbone_client.js"
SERVER_JS = HERE / "node" / "hbone_server.js"
AMBIT_CLI = Path(sys.executable).parent / "ambit"

pytestmark = [
    pytest.mark.interop,
    pytest.mark.timeout(60),
    pytest.mark.skipif(NODE is None, reason="Node.js (`node`) is not installed; `make setup` installs it"),
]

MiB = 1024 * 1024
NODE_CLIENT = workload("node-client")
NODE_SERVER = workload("node-server")
AMBIT_CLIENT = workload("ambit-client")
AMBIT_SERVER = workload("ambit-server")
SOMEONE_ELSE = workload("someone-else")
NODE_RUN_TIMEOUT = 30.0


def san(identity: Identity) -> str:
    """How Node's `getPeerCertificate().subjectaltname` shows a certificate with one URI SAN."""
    return f"URI:{identity}"


# ------------------------------------------------------------------ certificates from the CLI


@dataclass(frozen=True)
class Pki:
    """A CA directory written by `ambit ca init` and credentials written by `ambit ca issue`."""

    dir: Path

    @property
    def root(self) -> Path:
        return self.dir / "root-cert.pem"

    def cert_path(self, identity: Identity) -> Path:
        return self.dir / f"{identity.service_account}-cert.pem"

    def key_path(self, identity: Identity) -> Path:
        return self.dir / f"{identity.service_account}-key.pem"

    def workload_cert(self, identity: Identity) -> WorkloadCert:
        cert = WorkloadCert.from_pem(
            self.cert_path(identity).read_bytes(), self.key_path(identity).read_bytes()
        )
        assert cert.identity == identity
        return cert

    def bundle(self) -> TrustBundle:
        return TrustBundle.from_file(self.root)

    def node_args(self, identity: Identity) -> list[str]:
        return [
            "--cert",
            str(self.cert_path(identity)),
            "--key",
            str(self.key_path(identity)),
            "--ca",
            str(self.root),
        ]


def _ambit(*args: str) -> None:
    proc = subprocess.run([str(AMBIT_CLI), *args], capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        pytest.fail(f"`ambit {' '.join(args)}` exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("interop-ca")
    _ambit("ca", "init", "--dir", str(directory))
    for identity in (NODE_CLIENT, NODE_SERVER, AMBIT_CLIENT, AMBIT_SERVER):
        _ambit(
            "ca", "issue", "--dir", str(directory), "--identity", str(identity),
            "--out", str(directory / identity.service_account),
        )  # fmt: skip
    return Pki(directory)


@pytest.fixture
async def env() -> AsyncIterator[HboneEnv]:
    """Used for its TCP echo upstreams (which count accepted connections) and server clean-up."""
    e = HboneEnv.create()
    try:
        yield e
    finally:
        await e.close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ Node subprocesses


async def _reap(proc: asyncio.subprocess.Process) -> tuple[bytes, bytes]:
    """Kill if still running and read the pipes to EOF, so no transport outlives the test."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    return await proc.communicate()


@dataclass
class NodeClientRun:
    returncode: int
    result: dict[str, Any]
    stderr: str


async def start_node_client(
    pki: Pki,
    port: int,
    authority: str,
    *extra: str,
    expect_server: Identity = AMBIT_SERVER,
    nbytes: int = MiB,
    streams: int = 1,
    stdin: int = asyncio.subprocess.DEVNULL,
) -> asyncio.subprocess.Process:
    assert NODE is not None
    return await asyncio.create_subprocess_exec(
        NODE, str(CLIENT_JS), "--port", str(port), "--authority", authority,
        *pki.node_args(NODE_CLIENT), "--expect-server", str(expect_server),
        "--bytes", str(nbytes), "--streams", str(streams), "--timeout", str(NODE_RUN_TIMEOUT - 5), *extra,
        stdin=stdin, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def run_node_client(
    pki: Pki,
    port: int,
    authority: str,
    *,
    expect_server: Identity = AMBIT_SERVER,
    nbytes: int = MiB,
    streams: int = 1,
) -> NodeClientRun:
    """Run the Node client to completion; its result is the JSON line it prints."""
    proc = await start_node_client(
        pki, port, authority, expect_server=expect_server, nbytes=nbytes, streams=streams
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_RUN_TIMEOUT)
    finally:
        await _reap(proc)
    assert proc.returncode is not None
    lines = out.decode().splitlines()
    assert lines, f"the Node client printed nothing (exit {proc.returncode}); stderr:\n{err.decode()}"
    return NodeClientRun(proc.returncode, json.loads(lines[-1]), err.decode())


@dataclass
class NodeServer:
    proc: asyncio.subprocess.Process
    port: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""
    stopped: bool = False

    async def stop(self) -> None:
        """Close stdin (the script prints its totals and exits), then collect every line it printed."""
        if self.stopped:
            return
        self.stopped = True
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            out, err = await asyncio.wait_for(self.proc.communicate(), 10)
        finally:
            await _reap(self.proc)  # killed only if it did not exit in time
        self.stderr = err.decode()
        self.events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == kind]


@asynccontextmanager
async def node_server(pki: Pki, *, expect_client: Identity = AMBIT_CLIENT) -> AsyncIterator[NodeServer]:
    """The Node HBONE server; its events are in `.events` once the block has exited."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE, str(SERVER_JS), *pki.node_args(NODE_SERVER), "--expect-client", str(expect_client),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    server = NodeServer(proc)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if not line:
            await server.stop()
            pytest.fail(f"the Node server exited before listening; stderr:\n{server.stderr}")
        server.port = int(json.loads(line)["listening"])
        yield server
    finally:
        await server.stop()
    assert server.events and server.events[-1].get("event") == "exit", server.stderr


# ------------------------------------------------------------------ ambit side helpers


@dataclass
class RecordingServer:
    server: HboneServer
    port: int
    tunnels: list[tuple[object, str]]


async def ambit_server(pki: Pki, env: HboneEnv, *, deny: bool = False) -> RecordingServer:
    """ambit's HBONE server presenting the CLI-issued certificate; records every CONNECT it handles."""
    tunnels: list[tuple[object, str]] = []
    forward = forwarding_handler(deny=lambda _t: deny)

    async def handler(tunnel: InboundTunnel) -> None:
        tunnels.append((tunnel.peer_identity, tunnel.request.authority))
        await forward(tunnel)

    ctx = server_context(pki.workload_cert(AMBIT_SERVER), pki.bundle())
    server = HboneServer(ctx, handler, trust_domain=DEFAULT_TRUST_DOMAIN)
    env.servers.append(server)  # closed by env.close()
    _host, port = await server.start("127.0.0.1", 0)
    return RecordingServer(server, port, tunnels)


async def echo_through(stream: HboneStream, size: int, chunk: int = 256 * 1024) -> tuple[str, str, int]:
    """Write `size` random bytes (respecting drain) then half-close, while reading to EOF concurrently."""
    sent = hashlib.sha256()
    received = hashlib.sha256()
    got = 0

    async def writer() -> None:
        left = size
        while left:
            part = os.urandom(min(chunk, left))
            sent.update(part)
            stream.write(part)
            await stream.drain()
            left -= len(part)
        stream.write_eof()

    async def reader() -> None:
        nonlocal got
        while data := await stream.read():
            received.update(data)
            got += len(data)

    await asyncio.gather(writer(), reader())
    return sent.hexdigest(), received.hexdigest(), got


# ------------------------------------------------------------------ Node client → ambit server


async def test_node_client_through_ambit_server(pki: Pki, env: HboneEnv) -> None:
    echo = await env.echo_upstream()
    amb = await ambit_server(pki, env)
    authority = f"127.0.0.1:{echo}"

    run = await run_node_client(pki, amb.port, authority, nbytes=8 * MiB)

    assert run.returncode == 0, (run.result, run.stderr)
    r = run.result
    assert r["ok"] and r["stage"] == "done"
    assert r["peer_san"] == san(AMBIT_SERVER)
    assert (r["alpn"], r["tls_version"]) == ("h2", "TLSv1.3")
    [s] = r["streams"]
    assert s["status"] == 200
    assert s["bytes_sent"] == s["bytes_received"] == 8 * MiB
    assert s["sha256_sent"] == s["sha256_received"]
    assert s["rst_code"] == 0  # closed by END_STREAM both ways, not by a reset
    # ambit's side: the CONNECT came from the Node client's identity and reached the upstream once.
    assert amb.tunnels == [(NODE_CLIENT, authority)]
    assert env.upstreams.accepted == 1


async def test_node_client_concurrent_streams(pki: Pki, env: HboneEnv) -> None:
    """Several CONNECT streams multiplexed on one Node session, all flowing at once."""
    echo = await env.echo_upstream()
    amb = await ambit_server(pki, env)
    authority = f"127.0.0.1:{echo}"

    run = await run_node_client(pki, amb.port, authority, nbytes=2 * MiB, streams=4)

    assert run.returncode == 0, (run.result, run.stderr)
    assert len(run.result["streams"]) == 4
    for s in run.result["streams"]:
        assert s["status"] == 200
        assert s["bytes_received"] == 2 * MiB
        assert s["sha256_sent"] == s["sha256_received"]
    assert amb.tunnels == [(NODE_CLIENT, authority)] * 4
    assert env.upstreams.accepted == 4


async def test_node_client_refuses_wrong_server_identity(pki: Pki, env: HboneEnv) -> None:
    echo = await env.echo_upstream()
    amb = await ambit_server(pki, env)

    run = await run_node_client(pki, amb.port, f"127.0.0.1:{echo}", expect_server=SOMEONE_ELSE)

    assert run.returncode == 2, (run.result, run.stderr)
    r = run.result
    assert not r["ok"]
    assert r["stage"] == "tls"  # refused inside the handshake: no HTTP/2 frame was ever sent
    assert r["peer_san"] == san(AMBIT_SERVER)
    assert r["streams"] == []
    assert amb.tunnels == []
    assert env.upstreams.accepted == 0


async def test_node_client_sees_ambit_rejections(pki: Pki, env: HboneEnv) -> None:
    """ambit's non-200 answers reach Node as HTTP/2 statuses: 401 (denied) and 503 (upstream refused)."""
    echo = await env.echo_upstream()
    denying = await ambit_server(pki, env, deny=True)
    run = await run_node_client(pki, denying.port, f"127.0.0.1:{echo}")
    assert run.returncode == 3, (run.result, run.stderr)
    assert [s["status"] for s in run.result["streams"]] == [401]
    assert denying.tunnels == [(NODE_CLIENT, f"127.0.0.1:{echo}")]
    assert env.upstreams.accepted == 0

    forwarding = await ambit_server(pki, env)
    dead = f"127.0.0.1:{closed_port()}"
    run = await run_node_client(pki, forwarding.port, dead)
    assert run.returncode == 3, (run.result, run.stderr)
    assert [s["status"] for s in run.result["streams"]] == [503]
    assert forwarding.tunnels == [(NODE_CLIENT, dead)]


class RecordingEcho(asyncio.Protocol):
    """An echo upstream that reports when its connection is gone (`lost`), whoever closed it."""

    def __init__(self, env: HboneEnv, lost: asyncio.Future[Exception | None]) -> None:
        self.env = env
        self.lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.env.upstreams.accepted += 1
        self.env.upstreams.live.add(self.transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.env.upstreams.live.discard(self.transport)
        if not self.lost.done():
            self.lost.set_result(exc)


async def recording_echo(env: HboneEnv) -> tuple[int, asyncio.Future[Exception | None]]:
    """A one-connection echo upstream (closed by `env.close()`) and a future set when that connection ends."""
    lost: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
    server = await asyncio.get_running_loop().create_server(lambda: RecordingEcho(env, lost), "127.0.0.1", 0)
    env.upstreams.servers.append(server)
    return int(server.sockets[0].getsockname()[1]), lost


async def test_node_client_reset_tears_down_upstream(pki: Pki, env: HboneEnv) -> None:
    """Node's RST_STREAM(CANCEL) mid-transfer: ambit drops that tunnel's upstream, keeps the connection."""
    port, upstream_lost = await recording_echo(env)
    amb = await ambit_server(pki, env)
    proc = await start_node_client(
        pki, amb.port, f"127.0.0.1:{port}", "--reset-after", str(256 * 1024), "--hold",
        nbytes=4 * MiB, stdin=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = await asyncio.wait_for(proc.stdout.readline(), NODE_RUN_TIMEOUT)
        assert line, "the Node client printed nothing"
        result = json.loads(line)
        assert result["ok"], result
        [s] = result["streams"]
        assert (s["status"], s["reset_sent"], s["rst_code"]) == (200, True, 8)  # 8 = CANCEL
        # The Node session is still open (held until stdin closes): only the reset can have done this.
        await asyncio.wait_for(upstream_lost, 5)
        assert len(amb.server.connections) == 1
        proc.stdin.close()
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        await _reap(proc)
    assert proc.returncode == 0
    assert amb.tunnels == [(NODE_CLIENT, f"127.0.0.1:{port}")]


# ------------------------------------------------------------------ ambit client → Node server


async def test_ambit_client_through_node_server(pki: Pki, env: HboneEnv) -> None:
    echo = await env.echo_upstream()
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki) as node:
        conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
        try:
            assert conn.peer_identity == NODE_SERVER
            stream = await conn.open_stream(f"127.0.0.1:{echo}")
            sent, received, got = await asyncio.wait_for(echo_through(stream, 8 * MiB), 30)
            await asyncio.wait_for(stream.wait_closed(), 5)
        finally:
            conn.drain()
            await asyncio.wait_for(conn.wait_closed(), 5)
    assert got == 8 * MiB
    assert sent == received
    assert stream.error is None  # both directions ended cleanly (END_STREAM both ways, no reset)
    # The Node side: it verified ambit's client certificate and relayed exactly those bytes.
    [session] = node.of("session")
    assert session["client_san"] == san(AMBIT_CLIENT)
    assert (session["alpn"], session["tls_version"]) == ("h2", "TLSv1.3")
    [connect] = node.of("connect")
    assert connect["method"] == "CONNECT"
    assert connect["authority"] == f"127.0.0.1:{echo}"
    assert connect["client_san"] == san(AMBIT_CLIENT)
    assert connect["status"] == 200
    [closed] = node.of("stream_closed")
    assert closed["rst_code"] == 0
    assert closed["to_upstream"] == closed["from_upstream"] == 8 * MiB
    assert env.upstreams.accepted == 1


class HalfCloseUpstream(asyncio.Protocol):
    """Speaks first and half-closes at once, then collects what the client sends until its FIN."""

    def __init__(self, received: asyncio.Future[bytes]) -> None:
        self.received = received
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(b"banner")
        self.transport.write_eof()

    def data_received(self, data: bytes) -> None:
        self.buf += data

    def eof_received(self) -> bool:
        if not self.received.done():
            self.received.set_result(bytes(self.buf))
        self.transport.close()
        return True


async def test_half_close_upstream_first_through_node(pki: Pki, env: HboneEnv) -> None:
    """Upstream FIN → Node's END_STREAM → ambit reads EOF; ambit's direction stays open until its FIN."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    upstream = await asyncio.get_running_loop().create_server(
        lambda: HalfCloseUpstream(received), "127.0.0.1", 0
    )
    port = upstream.sockets[0].getsockname()[1]
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    try:
        async with node_server(pki) as node:
            conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
            try:
                stream = await conn.open_stream(f"127.0.0.1:{port}")
                assert await asyncio.wait_for(stream.read_all(), 5) == b"banner"
                assert stream.eof_in and not stream.closed
                stream.write(b"sent after the upstream's FIN")
                await stream.drain()
                stream.write_eof()
                assert await asyncio.wait_for(received, 5) == b"sent after the upstream's FIN"
                await asyncio.wait_for(stream.wait_closed(), 5)
                assert stream.error is None
            finally:
                conn.drain()
                await asyncio.wait_for(conn.wait_closed(), 5)
    finally:
        upstream.close()
        await upstream.wait_closed()
    [closed] = node.of("stream_closed")
    assert closed["rst_code"] == 0


async def test_ambit_client_concurrent_streams_to_node(pki: Pki, env: HboneEnv) -> None:
    echo = await env.echo_upstream()
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki) as node:
        conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
        try:
            streams = [await conn.open_stream(f"127.0.0.1:{echo}") for _ in range(4)]
            results = await asyncio.wait_for(asyncio.gather(*(echo_through(s, 2 * MiB) for s in streams)), 30)
        finally:
            conn.drain()
            await asyncio.wait_for(conn.wait_closed(), 5)
    for sent, received, got in results:
        assert got == 2 * MiB and sent == received
    assert len(node.of("session")) == 1  # all four on one connection
    assert [c["status"] for c in node.of("connect")] == [200] * 4
    assert env.upstreams.accepted == 4


async def test_ambit_reset_reaches_node(pki: Pki, env: HboneEnv) -> None:
    """ambit's RST_STREAM(CANCEL) mid-transfer: Node drops the upstream; the connection carries on."""
    port, upstream_lost = await recording_echo(env)
    echo = await env.echo_upstream()
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki) as node:
        conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
        try:
            stream = await conn.open_stream(f"127.0.0.1:{port}")
            stream.write(os.urandom(MiB))
            await asyncio.wait_for(stream.read_exactly(64 * 1024), 5)
            stream.abort()
            await asyncio.wait_for(upstream_lost, 5)
            # Same connection, new tunnel: a stream reset must not have harmed the session.
            again = await conn.open_stream(f"127.0.0.1:{echo}")
            sent, received, got = await asyncio.wait_for(echo_through(again, 256 * 1024), 10)
            assert sent == received and got == 256 * 1024
        finally:
            conn.drain()
            await asyncio.wait_for(conn.wait_closed(), 5)
    assert len(node.of("session")) == 1
    assert [c["rst_code"] for c in node.of("stream_closed")] == [8, 0]  # CANCEL, then a clean close


async def test_ambit_client_refuses_wrong_node_server_identity(pki: Pki, env: HboneEnv) -> None:
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki) as node:
        with pytest.raises(PeerIdentityError, match="node-server"):
            await connect_hbone("127.0.0.1", node.port, ctx, SOMEONE_ELSE)
    assert node.of("connect") == []
    assert node.events[-1]["connects"] == 0


async def test_node_server_rejects_unexpected_client(pki: Pki, env: HboneEnv) -> None:
    echo = await env.echo_upstream()
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki, expect_client=SOMEONE_ELSE) as node:
        conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
        try:
            with pytest.raises(TunnelRejected) as excinfo:
                await conn.open_stream(f"127.0.0.1:{echo}")
            assert excinfo.value.status == 401
        finally:
            conn.drain()
            await asyncio.wait_for(conn.wait_closed(), 5)
    [connect] = node.of("connect")
    assert (connect["status"], connect["client_san"]) == (401, san(AMBIT_CLIENT))
    assert env.upstreams.accepted == 0


async def test_node_server_upstream_refused(pki: Pki, env: HboneEnv) -> None:
    ctx = client_context(pki.workload_cert(AMBIT_CLIENT), pki.bundle())
    async with node_server(pki) as node:
        conn = await connect_hbone("127.0.0.1", node.port, ctx, NODE_SERVER)
        try:
            with pytest.raises(TunnelRejected) as excinfo:
                await conn.open_stream(f"127.0.0.1:{closed_port()}")
            assert excinfo.value.status == 503
        finally:
            conn.drain()
            await asyncio.wait_for(conn.wait_closed(), 5)
    assert [c["status"] for c in node.of("connect")] == [503]
