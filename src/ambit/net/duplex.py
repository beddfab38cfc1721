"""Byte endpoints and the relay that joins two of them, driven by callbacks (no coroutine per chunk).

A `Duplex` is one end of a byte stream: a TCP connection (`TcpDuplex`) or an HBONE stream
(`ambit.net.hbone.HboneStream`). It can be used two ways:

* joined to another endpoint by `relay(a, b)`: bytes read from one are delivered to the other
  straight from the protocol callback; backpressure flows both ways (a full sink pauses the other
  side's source: `pause_reading` for TCP, withheld flow-control credit for HBONE); half-close is
  carried across (FIN ↔ END_STREAM) and a reset on one side aborts the other;
* on its own, through the awaitable `read` / `write` / `drain` / `write_eof` API (tests, clients).

Subclasses implement the network-facing half (`deliver`, `deliver_eof`, `pause_source`,
`resume_source`, `abort`) and report network events with the `_on_network_*` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import cast

_READ_BUFFER_LIMIT = 1024 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class StreamAborted(ConnectionError):
    """The other side reset the stream or the connection broke."""


class Duplex:
    """One end of a bidirectional byte stream; see the module docstring."""

    def __init__(self) -> None:
        self.peer: Duplex | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.eof_in = False
        self.eof_out = False
        self.error: BaseException | None = None
        self._rbuf = bytearray()
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_blocked = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._source_paused_for_buffer = False
        self._closed = asyncio.get_running_loop().create_future()

    # -------------------------------------------------- implemented by subclasses

    def deliver(self, data: bytes) -> None:
        """Send `data` toward this endpoint's network."""
        raise NotImplementedError

    def deliver_eof(self) -> None:
        """Half-close toward this endpoint's network."""
        raise NotImplementedError

    def pause_source(self) -> None:
        """Stop taking bytes from this endpoint's network."""
        raise NotImplementedError

    def resume_source(self) -> None:
        raise NotImplementedError

    def abort(self, reason: BaseException | None = None) -> None:
        """Tear down hard (TCP RST / HBONE RST_STREAM)."""
        raise NotImplementedError

    # -------------------------------------------------- network events (called by subclasses)

    def _on_network_data(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.peer is not None:
            self.peer.bytes_out += len(data)
            self.peer.deliver(data)
            return
        self._rbuf += data
        self._wake_reader()
        if len(self._rbuf) > _READ_BUFFER_LIMIT and not self._source_paused_for_buffer:
            self._source_paused_for_buffer = True
            self.pause_source()

    def _on_network_eof(self) -> None:
        self.eof_in = True
        if self.peer is not None:
            self.peer.eof_out = True
            self.peer.deliver_eof()
        self._wake_reader()
        self._check_done()

    def _on_network_lost(self, exc: BaseException | None) -> None:
        """The endpoint is gone. Clean EOFs both ways make it a normal close; anything else aborts."""
        clean = exc is None and self.eof_in and self.eof_out
        if not clean and self.error is None:
            self.error = exc or StreamAborted("connection closed before both directions finished")
        if self.peer is not None and not clean:
            self.peer.abort(self.error)
        self._wake_reader()
        self._wake_drain()
        if not self._closed.done():
            self._closed.set_result(None)

    def _on_write_blocked(self) -> None:
        self._write_blocked = True
        if self.peer is not None:
            self.peer.pause_source()

    def _on_writable(self) -> None:
        self._write_blocked = False
        if self.peer is not None:
            self.peer.resume_source()
        self._wake_drain()

    def _check_done(self) -> None:
        """Both directions finished: subclasses close their transport."""

    # -------------------------------------------------- awaitable API

    async def read(self, max_bytes: int = -1) -> bytes:
        """Bytes from the network; b"" at EOF. Raises StreamAborted on reset."""
        while not self._rbuf and not self.eof_in and self.error is None:
            self._read_waiter = asyncio.get_running_loop().create_future()
            await self._read_waiter
        if not self._rbuf and self.error is not None:
            raise StreamAborted(str(self.error)) from self.error
        n = len(self._rbuf) if max_bytes < 0 else min(max_bytes, len(self._rbuf))
        data = bytes(self._rbuf[:n])
        del self._rbuf[:n]
        if self._source_paused_for_buffer and len(self._rbuf) < _READ_BUFFER_LIMIT // 2:
            self._source_paused_for_buffer = False
            self.resume_source()
        return data

    async def read_exactly(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = await self.read(n - len(out))
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(out), n)
            out += chunk
        return bytes(out)

    async def read_all(self) -> bytes:
        out = bytearray()
        while chunk := await self.read():
            out += chunk
        return bytes(out)

    def write(self, data: bytes) -> None:
        if self.error is not None:
            raise StreamAborted(str(self.error))
        self.bytes_out += len(data)
        self.deliver(data)

    async def drain(self) -> None:
        while self._write_blocked and self.error is None:
            self._drain_waiter = asyncio.get_running_loop().create_future()
            await self._drain_waiter
        if self.error is not None:
            raise StreamAborted(str(self.error)) from self.error

    def write_eof(self) -> None:
        self.eof_out = True
        self.deliver_eof()
        self._check_done()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    @property
    def closed(self) -> bool:
        return self._closed.done()

    # -------------------------------------------------- internals

    def _wake_reader(self) -> None:
        w, self._read_waiter = self._read_waiter, None
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_drain(self) -> None:
        w, self._drain_waiter = self._drain_waiter, None
        if w is not None and not w.done():
            w.set_result(None)


class TcpDuplex(Duplex, asyncio.Protocol):
    """A plain TCP connection as a Duplex (use as the protocol of create_connection / create_server)."""

    def __init__(self) -> None:
        Duplex.__init__(self)
        self.transport: asyncio.Transport | None = None
        self._connected = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if not self._connected.done():
            self._connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        self._on_network_data(data)

    def eof_received(self) -> bool:
        self._on_network_eof()
        return True  # keep our direction open: half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_network_lost(exc)

    def pause_writing(self) -> None:
        self._on_write_blocked()

    def resume_writing(self) -> None:
        self._on_writable()

    # Duplex
    def deliver(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def deliver_eof(self) -> None:
        if self.transport is not None and not self.transport.is_closing() and self.transport.can_write_eof():
            self.transport.write_eof()
        self._check_done()

    def pause_source(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_source(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def abort(self, reason: BaseException | None = None) -> None:
        """Reset the connection: the peer sees a TCP RST, not an orderly close (as ztunnel does)."""
        if self.error is None:
            self.error = reason or StreamAborted("aborted")
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None and not self.transport.is_closing():
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.transport.abort()

    def _check_done(self) -> None:
        if self.eof_in and self.eof_out and self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass(frozen=True, slots=True)
class RelayResult:
    """Bytes each way and how the relay ended."""

    a_to_b: int
    b_to_a: int
    error: BaseException | None


async def relay(a: Duplex, b: Duplex) -> RelayResult:
    """Join two endpoints until both are closed; bytes move in callbacks, not in this coroutine."""
    a.peer, b.peer = b, a
    for src, dst in ((a, b), (b, a)):
        if src._rbuf:
            data = bytes(src._rbuf)
            src._rbuf.clear()
            dst.bytes_out += len(data)
            dst.deliver(data)
        if src._source_paused_for_buffer:
            src._source_paused_for_buffer = False
            src.resume_source()
        if src.eof_in and not dst.eof_out:
            dst.eof_out = True
            dst.deliver_eof()
        if src.error is not None:
            dst.abort(src.error)
    try:
        await _both_closed(a, b)
    except asyncio.CancelledError:
        a.abort(StreamAborted("relay cancelled"))
        b.abort(StreamAborted("relay cancelled"))
        raise
    return RelayResult(a.bytes_in, b.bytes_in, a.error or b.error)


async def _both_closed(a: Duplex, b: Duplex) -> None:
    """Wait for both ends with one future and two done-callbacks: `asyncio.gather` would make two tasks
    per relayed connection, a few KiB each held for the connection's whole life."""
    pending = [d._closed for d in (a, b) if not d._closed.done()]
    if not pending:
        return
    both: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    left = len(pending)

    def one_closed(_: asyncio.Future[None]) -> None:
        nonlocal left
        left -= 1
        if left == 0 and not both.done():
            both.set_result(None)

    for closed in pending:
        closed.add_done_callback(one_closed)
    try:
        await both
    finally:
        for closed in pending:
            closed.remove_done_callback(one_closed)
