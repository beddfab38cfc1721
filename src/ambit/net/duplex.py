"""Byte endpoints and the relay that joins two of them, driven by callbacks (no coroutine per chunk).

A `Duplex` is one end of a byte stream: a TCP connection (`TcpDuplex`) or an HBONE stream
(`ambit.net.hbone.HboneStream`). It can be used two ways:

* joined to another endpoint by `join(a, b, on_done)` (or the awaitable `relay(a, b)`): bytes read
  from one are delivered to the other straight from the protocol callback; backpressure flows both
  ways (a full sink pauses the other side's source: `pause_reading` for TCP, withheld flow-control
  credit for HBONE); half-close is carried across (FIN ↔ END_STREAM) and a reset on one side aborts
  the other;
* on its own, through the awaitable `read` / `write` / `drain` / `write_eof` API (tests, clients).

**Memory.** A proxy holds one joined pair per open connection, often idle for minutes, so a pair
costs only its objects: every class here has ``__slots__``, the end of a connection is reported
through plain callbacks (``add_close_callback``), and `join` needs no coroutine, task or future — a
task waiting on a relay would hold its coroutine frames, its context and a future for the
connection's whole life (about 3 KiB per connection and proxy, measured with
``scripts/profile_idle.py``). Futures are made only when someone awaits (`wait_closed`, `read`,
`drain`).

Subclasses implement the network-facing half (`deliver`, `deliver_eof`, `pause_source`,
`resume_source`, `abort`) and report network events with the `_on_network_*` methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

_READ_BUFFER_LIMIT = 1024 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST

_log = logging.getLogger(__name__)


class StreamAborted(ConnectionError):
    """The other side reset the stream or the connection broke."""


class Duplex:
    """One end of a bidirectional byte stream; see the module docstring."""

    __slots__ = (
        "_close_callbacks",
        "_drain_waiter",
        "_is_closed",
        "_rbuf",
        "_read_waiter",
        "_source_paused_for_buffer",
        "_write_blocked",
        "bytes_in",
        "bytes_out",
        "eof_in",
        "eof_out",
        "error",
        "peer",
        "relay",
    )

    def __init__(self) -> None:
        self.peer: Duplex | None = None
        self.relay: Relay | None = None  # set by join(); told when this end closes
        self.bytes_in = 0
        self.bytes_out = 0
        self.eof_in = False
        self.eof_out = False
        self.error: BaseException | None = None
        self._rbuf: bytearray | None = None  # made on the first unjoined read
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_blocked = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._source_paused_for_buffer = False
        self._is_closed = False
        self._close_callbacks: list[Callable[[], None]] | None = None

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
        if self._rbuf is None:
            self._rbuf = bytearray(data)
        else:
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
        if not self._is_closed:
            self._is_closed = True
            if self.relay is not None:
                self.relay._one_closed()
            callbacks, self._close_callbacks = self._close_callbacks, None
            for callback in callbacks or ():
                try:
                    callback()
                except Exception:  # one broken observer must not keep the others from hearing
                    _log.exception("close callback of %r failed", self)

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
        rbuf = self._rbuf
        if not rbuf:
            if self.error is not None:
                raise StreamAborted(str(self.error)) from self.error
            return b""
        n = len(rbuf) if max_bytes < 0 else min(max_bytes, len(rbuf))
        data = bytes(rbuf[:n])
        del rbuf[:n]
        if self._source_paused_for_buffer and len(rbuf) < _READ_BUFFER_LIMIT // 2:
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
        if self._is_closed:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def closed() -> None:
            if not done.done():
                done.set_result(None)

        self.add_close_callback(closed)
        await done

    @property
    def closed(self) -> bool:
        return self._is_closed

    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once this endpoint is closed (now, if it already is)."""
        if self._is_closed:
            callback()
        elif self._close_callbacks is None:
            self._close_callbacks = [callback]
        else:
            self._close_callbacks.append(callback)

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

    __slots__ = ("transport",)

    def __init__(self) -> None:
        Duplex.__init__(self)
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

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


class RelayGroup:
    """The relays of one owner (a pod's proxy): counted, waited for, and aborted together."""

    __slots__ = ("_emptied", "_relays")

    def __init__(self) -> None:
        self._relays: set[Relay] = set()
        self._emptied: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._relays)

    def _add(self, relay: Relay) -> None:
        self._relays.add(relay)

    def _discard(self, relay: Relay) -> None:
        self._relays.discard(relay)
        if not self._relays and self._emptied is not None and not self._emptied.done():
            self._emptied.set_result(None)

    async def wait_empty(self) -> None:
        """Wait until no relay is left (bound it with ``asyncio.timeout``)."""
        if not self._relays:
            return
        if self._emptied is None or self._emptied.done():
            self._emptied = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._emptied)

    def abort_all(self, reason: str) -> int:
        """Reset every relay (both ends); their ``on_done`` still runs. Returns how many."""
        relays = list(self._relays)
        for relay in relays:
            relay.abort(StreamAborted(reason))
        return len(relays)


class Relay:
    """Two endpoints joined by :func:`join`; ``on_done(result)`` runs once both are closed."""

    __slots__ = ("_group", "_left", "_on_done", "a", "b")

    def __init__(
        self,
        a: Duplex,
        b: Duplex,
        on_done: Callable[[RelayResult], None] | None,
        group: RelayGroup | None,
    ) -> None:
        self.a = a
        self.b = b
        self._on_done = on_done
        self._group = group
        self._left = 2

    @property
    def done(self) -> bool:
        return self._left == 0

    def abort(self, reason: BaseException | None = None) -> None:
        """Reset both ends (TCP RST / HBONE RST_STREAM)."""
        self.a.abort(reason)
        self.b.abort(reason)

    def _one_closed(self) -> None:
        self._left -= 1
        if self._left:
            return
        a, b = self.a, self.b
        if self._group is not None:
            self._group._discard(self)
        on_done, self._on_done = self._on_done, None
        if on_done is not None:
            on_done(RelayResult(a.bytes_in, b.bytes_in, a.error or b.error))


def join(
    a: Duplex,
    b: Duplex,
    on_done: Callable[[RelayResult], None] | None = None,
    *,
    group: RelayGroup | None = None,
) -> Relay:
    """Join two endpoints: from now on bytes move in the protocol callbacks, with no coroutine.

    Whatever either end already buffered, its EOF or its error is carried over first. ``on_done``
    runs once, when both ends are closed (it must not raise); ``group`` tracks the relay until then.
    """
    a.peer, b.peer = b, a
    for src, dst in ((a, b), (b, a)):
        if src._rbuf:
            data = bytes(src._rbuf)
            src._rbuf.clear()
            dst.bytes_out += len(data)
            dst.deliver(data)
        src._rbuf = None
        if src._source_paused_for_buffer:
            src._source_paused_for_buffer = False
            src.resume_source()
        if src.eof_in and not dst.eof_out:
            dst.eof_out = True
            dst.deliver_eof()
        if src.error is not None:
            dst.abort(src.error)
    joined = Relay(a, b, on_done, group)
    if group is not None:
        group._add(joined)
    for end in (a, b):
        if end._is_closed:
            joined._one_closed()
        else:
            end.relay = joined
    return joined


async def relay(a: Duplex, b: Duplex) -> RelayResult:
    """Join two endpoints and wait until both are closed; cancelling resets both."""
    done: asyncio.Future[RelayResult] = asyncio.get_running_loop().create_future()

    def finished(result: RelayResult) -> None:
        if not done.done():
            done.set_result(result)

    joined = join(a, b, finished)
    try:
        return await done
    except asyncio.CancelledError:
        joined.abort(StreamAborted("relay cancelled"))
        raise
