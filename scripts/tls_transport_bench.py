"""CPU of the TLS transport: uvloop's (memory BIOs) against ``ambit.net.tls`` (OpenSSL on the socket).

    .venv/bin/python scripts/tls_transport_bench.py            # both transports, bulk and echo
    .venv/bin/python scripts/tls_transport_bench.py tls echo   # one transport, one workload

The server under test runs on uvloop in this process and counts its own CPU (getrusage); the peer is a
blocking TLS client in a forked child, the same for both transports. ``bulk`` receives 1 GiB and
reports CPU seconds per GiB; ``echo`` answers 20,000 1 KiB messages one at a time and reports CPU per
round trip. Loopback, TLS 1.3, a P-256 certificate made with openssl.
"""

from __future__ import annotations

import asyncio
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import uvloop

from ambit.net.tls import TlsServer

BULK_BYTES = 1 << 30
ECHOES = 20_000
MESSAGE = 1024


def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    d = tempfile.mkdtemp()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{d}/key.pem", "-out", f"{d}/cert.pem", "-days", "1", "-subj", "/CN=bench"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(f"{d}/cert.pem", f"{d}/key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return server, client


def peer(workload: str, port: int, context: ssl.SSLContext) -> None:
    """The blocking client, in the child."""
    sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)))
    if workload == "bulk":
        chunk = b"x" * 65536
        for _ in range(BULK_BYTES // len(chunk)):
            sock.sendall(chunk)
    else:
        message = b"y" * MESSAGE
        for _ in range(ECHOES):
            sock.sendall(message)
            got = 0
            while got < MESSAGE:
                got += len(sock.recv(65536))
    sock.close()


class Sink(asyncio.Protocol):
    def __init__(self, done: asyncio.Future[int], echo: bool) -> None:
        self.done, self.echo, self.received = done, echo, 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.echo:
            self.transport.write(data)  # type: ignore[attr-defined]

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.received)


async def measure(transport: str, workload: str) -> str:
    server_ctx, client_ctx = contexts()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    echo = workload == "echo"
    if transport == "uvloop":
        server = await loop.create_server(lambda: Sink(done, echo), sock=listener, ssl=server_ctx)
    else:
        server = TlsServer(listener, server_ctx, lambda: Sink(done, echo))  # type: ignore[assignment]
    child = os.fork()
    if child == 0:
        peer(workload, port, client_ctx)
        os._exit(0)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    received = await done
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.to_thread(os.waitpid, child, 0)
    server.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if workload == "bulk":
        return (
            f"{transport:7} bulk: {received * 8 / seconds / 1e9:5.2f} Gbit/s, "
            f"{cpu / (received / (1 << 30)):.3f} CPU s per GiB received"
        )
    return f"{transport:7} echo: {cpu / ECHOES * 1e6:5.1f} µs CPU per 1 KiB round trip"


def main() -> None:
    transports = [sys.argv[1]] if len(sys.argv) > 1 else ["uvloop", "tls"]
    workloads = [sys.argv[2]] if len(sys.argv) > 2 else ["bulk", "echo"]
    for workload in workloads:
        for transport in transports:
            print(uvloop.run(measure(transport, workload)), flush=True)


if __name__ == "__main__":
    main()
