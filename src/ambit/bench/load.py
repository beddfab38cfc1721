"""The load client of ``ambit bench hbone``: bulk transfer and request/response, one command at a time.

Run as ``python -m ambit.bench.load``. After its (empty) configuration line it reads one JSON
command per stdin line, runs it on a fresh ``uvloop.run`` loop and writes JSON lines back:
``{"event": "start"}`` when the measured window opens, ``{"event": "end"}`` when it closes (the
parent samples every process's CPU time at those two moments), then ``{"result": {...}}``.

* ``{"op": "bulk", "port": P, "bytes": N}``: one connection sends the 8-byte length then N bytes
  to the sink and waits for its count; the window spans the first byte to the count's arrival.
* ``{"op": "rr", "port": P, "conns": K, "size": S, "warmup": W, "seconds": T}``: K connections each
  send S bytes and wait for the S-byte echo, back to back. W seconds of warm-up are not counted;
  the next T seconds are: requests, and the 50th and 99th percentile round trip.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
import sys
import time
from typing import cast

import uvloop

from ambit.bench.child import JsonObject, announce, read_config

HOST = "127.0.0.1"
_COUNT = struct.Struct("!Q")
_CHUNK = 1024 * 1024


async def bulk(port: int, total: int) -> JsonObject:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await loop.sock_connect(sock, (HOST, port))
        chunk = os.urandom(_CHUNK)
        announce({"event": "start"})
        t0 = time.perf_counter()
        await loop.sock_sendall(sock, _COUNT.pack(total))
        left = total
        while left:
            n = min(left, _CHUNK)
            await loop.sock_sendall(sock, chunk if n == _CHUNK else chunk[:n])
            left -= n
        reply = b""
        while len(reply) < _COUNT.size:
            part = await loop.sock_recv(sock, _COUNT.size - len(reply))
            if not part:
                raise ConnectionError(f"sink closed after {len(reply)} reply bytes")
            reply += part
        elapsed = time.perf_counter() - t0
        announce({"event": "end"})
    finally:
        sock.close()
    (counted,) = _COUNT.unpack(reply)
    if counted != total:
        raise ConnectionError(f"sink counted {counted} bytes, {total} were sent")
    return {"bytes": total, "seconds": elapsed}


class _Window:
    """Round-trip times (ns) of requests that completed inside the measured window."""

    def __init__(self) -> None:
        self.running = True
        self.measuring = False
        self.samples: list[int] = []


class PingPong(asyncio.Protocol):
    """Sends `payload`, waits for as many echoed bytes, records the round trip, repeats."""

    def __init__(self, payload: bytes, window: _Window) -> None:
        self._payload = payload
        self._window = window
        self._got = 0
        self._sent_at = 0
        self.transport: asyncio.Transport | None = None
        self.idle: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> None:
        assert self.transport is not None
        self._sent_at = time.perf_counter_ns()
        self.transport.write(self._payload)

    def data_received(self, data: bytes) -> None:
        self._got += len(data)
        if self._got < len(self._payload):
            return
        rtt = time.perf_counter_ns() - self._sent_at
        self._got -= len(self._payload)
        if self._window.measuring:
            self._window.samples.append(rtt)
        if self._window.running:
            self.send()
        elif not self.idle.done():
            self.idle.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.idle.done():
            self.idle.set_exception(exc or ConnectionError("connection closed mid-request"))


def percentile(sorted_ns: list[int], q: float) -> float:
    """The q-quantile (nearest rank) in microseconds."""
    if not sorted_ns:
        return 0.0
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000


async def request_response(port: int, conns: int, size: int, warmup: float, seconds: float) -> JsonObject:
    loop = asyncio.get_running_loop()
    window = _Window()
    payload = os.urandom(size)
    clients: list[PingPong] = []
    try:
        for _ in range(conns):
            _t, client = await loop.create_connection(lambda: PingPong(payload, window), HOST, port)
            clients.append(client)
        for client in clients:
            client.send()
        await asyncio.sleep(warmup)
        announce({"event": "start"})
        window.measuring = True
        t0 = time.perf_counter()
        await asyncio.sleep(seconds)
        window.measuring = window.running = False
        elapsed = time.perf_counter() - t0
        announce({"event": "end"})
        await asyncio.wait_for(asyncio.gather(*(c.idle for c in clients)), 30)
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.close()
        await asyncio.sleep(0.05)  # let the closes reach the wire before the loop goes away
    samples = sorted(window.samples)
    return {
        "requests": len(samples),
        "seconds": elapsed,
        "p50_us": percentile(samples, 0.50),
        "p99_us": percentile(samples, 0.99),
    }


async def run(command: JsonObject) -> JsonObject:
    op = command.get("op")
    if op == "bulk":
        return await bulk(int(command["port"]), int(command["bytes"]))
    if op == "rr":
        return await request_response(
            int(command["port"]),
            int(command["conns"]),
            int(command["size"]),
            float(command["warmup"]),
            float(command["seconds"]),
        )
    raise ValueError(f"unknown command {op!r}")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    read_config()
    announce({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            result = uvloop.run(run(json.loads(line)))
        except Exception as exc:
            announce({"error": f"{type(exc).__name__}: {exc}"})
        else:
            announce({"result": result})


if __name__ == "__main__":
    main()
