"""The target server of ``ambit bench hbone``: an echo port and a sink port in one asyncio process.

* echo: every byte comes back (1 KiB request/response ping-pong);
* sink: the client first sends the payload length as an 8-byte big-endian integer, then the payload;
  the sink counts the bytes and replies with the count (8 bytes) once it has them all, or at EOF.
  Replying on the count rather than only on EOF keeps the workload independent of whether a hop
  can carry a half-close (a TLS transport cannot).

Run as ``python -m ambit.bench.target`` by ``ambit.bench.procs``; announces ``{"echo": port, "sink": port}``.
"""

from __future__ import annotations

import asyncio
import struct
from typing import cast

from ambit.bench.child import JsonObject, Stop, serve
from ambit.testing.hbone_env import EchoProtocol

_COUNT = struct.Struct("!Q")
_SINK_BUFFER = 256 * 1024


class SinkProtocol(asyncio.BufferedProtocol):
    """Counts payload bytes into one reused buffer; see the module docstring."""

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(_SINK_BUFFER))
        self._header = bytearray()
        self._expected: int | None = None
        self._count = 0
        self._replied = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._expected is None:
            take = min(_COUNT.size - len(self._header), nbytes)
            self._header += self._buffer[:take]
            nbytes -= take
            if len(self._header) == _COUNT.size:
                self._expected = _COUNT.unpack(self._header)[0]
        self._count += nbytes
        if self._expected is not None and self._count >= self._expected:
            self._reply()

    def eof_received(self) -> bool:
        self._reply()
        return False

    def _reply(self) -> None:
        if not self._replied and self.transport is not None:
            self._replied = True
            self.transport.write(_COUNT.pack(self._count))


async def start(_config: JsonObject) -> tuple[JsonObject, Stop]:
    loop = asyncio.get_running_loop()
    live: set[asyncio.Transport] = set()
    echo = await loop.create_server(lambda: EchoProtocol(live), "127.0.0.1", 0)
    sink = await loop.create_server(SinkProtocol, "127.0.0.1", 0)

    async def stop() -> None:
        for server in (echo, sink):
            server.close()
        for transport in list(live):
            transport.abort()

    return {"echo": echo.sockets[0].getsockname()[1], "sink": sink.sockets[0].getsockname()[1]}, stop


if __name__ == "__main__":
    serve(start)
