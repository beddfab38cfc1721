"""TLS straight on the socket: an asyncio transport over a non-blocking ``ssl.SSLSocket``.

asyncio's (and uvloop's) TLS transport runs OpenSSL on memory BIOs: every received record is copied
from the socket into a read buffer, from there into the incoming BIO, and decrypted out of it by
``SSLObject.read`` into a fresh ``bytes``; every write goes through the outgoing BIO and a second
buffer. Here OpenSSL reads from and writes to the socket itself (``SSL_read`` / ``SSL_write`` on the
fd), records are decrypted into one reused buffer, and the loop only reports readiness
(``add_reader`` / ``add_writer``). Measured with ``scripts/tls_transport_bench.py`` (loopback, one
process per side): receiving bulk costs 0.84–0.90 s of CPU per GiB instead of 1.76–1.82. A 1 KiB echo
costs a little more, 28–31 µs of CPU per round trip instead of 24–26: without read-ahead (which
Python's ``ssl`` does not expose) OpenSSL reads a record's header and body in two syscalls, and the
read loop asks FIONREAD before it stops, where uvloop reads everything the socket has in one.

* :func:`open_tls` — the client side: handshake on a connected socket, then the protocol is made and
  gets ``connection_made``; a failed or timed-out handshake raises and closes the socket.
* :class:`TlsServer` — accepts on a listening socket, makes the protocol at accept time (so its owner
  can count connections still in their handshake), handshakes, then ``connection_made``. A protocol
  whose handshake fails gets ``connection_lost(exc)`` without ``connection_made``, so whoever tracks
  protocols from their creation also learns when they end. Out of descriptors (EMFILE and kin), it
  stops polling the listener for ``ACCEPT_RETRY_DELAY`` s instead of spinning on a socket that stays
  readable, as asyncio's own servers do.
* :class:`TlsTransport` — the transport: ``write`` sends at once when nothing is queued (one
  ``SSL_write``); what the socket does not take is queued and written when it is writable, with
  ``pause_writing`` / ``resume_writing`` at the watermarks. ``close`` flushes the queue, sends
  close_notify and closes; ``abort`` closes at once. A peer's close_notify or FIN is
  ``eof_received``; the transport closes unless the protocol returns True. ``get_extra_info``
  knows ``ssl_object`` (the ``SSLSocket``), ``peername``, ``sockname``, ``socket``, ``peercert``
  and ``cipher``.

OpenSSL's rule for a write that found the socket full (``SSL_ERROR_WANT_WRITE``): it is retried with
the same bytes, and nothing else may be written before it completes. The queue keeps that chunk at its
head and joins only chunks not yet tried.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import socket
import ssl
import sys
import termios
import threading
from collections.abc import Callable
from typing import Any

from ambit.net.tasks import spawn

_log = logging.getLogger(__name__)

READ_BUFFER = 256 * 1024  # one read event takes up to this much plaintext (several records)
FULL_RECORD = 16 * 1024  # the largest plaintext a TLS record carries
HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
ACCEPT_BATCH = 64
ACCEPT_RETRY_DELAY = 1.0  # after EMFILE/ENFILE/ENOBUFS/ENOMEM, as asyncio's own servers do

ProtocolFactory = Callable[[], asyncio.Protocol]


def _unread_bytes(fd: int) -> int:
    """Bytes waiting in the kernel's receive queue of ``fd`` (FIONREAD)."""
    return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, _FIONREAD_ARG), sys.byteorder)


_FIONREAD_ARG = bytes(4)


class _ReadBuffer(threading.local):
    """One read buffer per loop thread, shared by every connection: each read is copied out into
    the ``bytes`` handed to the protocol before the next one, and an idle connection holds none."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_BUFFER))


_read_buffer = _ReadBuffer()


class TlsTransport(asyncio.Transport):
    """An asyncio transport over a connected, handshaken, non-blocking ``SSLSocket``."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket, protocol: asyncio.Protocol
    ) -> None:
        super().__init__()
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._head: bytes | memoryview | None = None  # tried once: retried alone (OpenSSL's rule)
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._high, self._low = HIGH_WATER, LOW_WATER
        self._writing_paused = False
        self._reading = True
        self._read_needs_writable = False
        self._closing = False
        self._lost = False
        self._extra: dict[str, Any] = {"ssl_object": sock, "socket": sock}
        with contextlib.suppress(OSError):
            self._extra["peername"] = sock.getpeername()
        with contextlib.suppress(OSError):
            self._extra["sockname"] = sock.getsockname()

    def start(self) -> None:
        """Hand the transport to the protocol and start reading."""
        self._protocol.connection_made(self)
        if self._reading and not self._lost:
            self._loop.add_reader(self._fd, self._read_ready)
            if self._sock.pending():
                self._loop.call_soon(self._read_ready)

    # -------------------------------------------------------------- asyncio.BaseTransport

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peercert":
            return self._sock.getpeercert() if not self._lost else default
        if name == "cipher":
            return self._sock.cipher() if not self._lost else default
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is queued, then close_notify, then close the socket."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._stop_reading()
        if self._head is None and not self._queue:
            self._shutdown()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    # -------------------------------------------------------------- reading

    def is_reading(self) -> bool:
        return self._reading and not self.is_closing()

    def pause_reading(self) -> None:
        if self._reading and not self.is_closing():
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        if not self._reading and not self.is_closing():
            self._reading = True
            self._loop.add_reader(self._fd, self._read_ready)
            if self._sock.pending():  # decrypted bytes already inside OpenSSL: no fd event will come
                self._loop.call_soon(self._read_ready)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self._fd)

    def _read_ready(self) -> None:
        if not self._reading or self.is_closing():
            return
        sock, view, size = self._sock, _read_buffer.view, READ_BUFFER
        got = 0
        eof = False
        error: Exception | None = None
        try:
            while got < size:
                n = sock.recv_into(view[got:], size - got)
                if n == 0:
                    eof = True
                    break
                got += n
                if n < FULL_RECORD and not sock.pending() and not _unread_bytes(self._fd):
                    # A short record that leaves the socket empty ends what the peer wrote at once
                    # (request/response traffic): stop rather than pay a read that fails with
                    # SSLWantReadError (an exception built per read). Stopping at every short record
                    # instead cost a third of the request rate with 16 streams on one connection.
                    break
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLWantWriteError:  # a renegotiation-like step must write first
            self._read_needs_writable = True
            self._loop.add_writer(self._fd, self._write_ready)
        except (OSError, ssl.SSLError) as exc:
            error = exc
        if got:
            self._protocol.data_received(bytes(view[:got]))
        if error is not None:
            self._fatal(error)
        elif eof:
            self._eof()
        elif got == size and self._reading and not self.is_closing() and sock.pending():
            self._loop.call_soon(self._read_ready)

    def _eof(self) -> None:
        self._stop_reading()
        if self.is_closing():
            return
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    # -------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or self._lost or not data:
            return
        if self._head is None and not self._queue:
            try:
                self._sock.send(data)
                return
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                # Nothing is reported written; OpenSSL may hold part of it: retry exactly this.
                self._head = bytes(data)
                self._queued += len(self._head)
                self._loop.add_writer(self._fd, self._write_ready)
            except (OSError, ssl.SSLError) as exc:
                self._fatal(exc)
                return
        else:
            chunk = bytes(data)
            self._queue.append(chunk)
            self._queued += len(chunk)
        self._check_high_water()

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def can_write_eof(self) -> bool:
        return False  # TLS has no half-close

    def write_eof(self) -> None:
        raise NotImplementedError("TLS cannot half-close")

    def get_write_buffer_size(self) -> int:
        return self._queued

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = HIGH_WATER if high is None else high
        self._low = self._high // 4 if low is None else low
        self._check_high_water()

    def _write_ready(self) -> None:
        if self._lost:
            return
        if self._read_needs_writable:
            self._read_needs_writable = False
            if self._head is None and not self._queue:
                self._loop.remove_writer(self._fd)
            self._read_ready()
            if self.is_closing() and not self._closing_gracefully():
                return
        while self._head is not None or self._queue:
            if self._head is None:
                joined = b"".join(self._queue) if len(self._queue) > 1 else self._queue[0]
                self._queue.clear()
                self._head = joined
            try:
                self._sock.send(self._head)
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return  # still full: stay registered for writability
            except (OSError, ssl.SSLError) as exc:
                self._fatal(exc)
                return
            self._queued -= len(self._head)
            self._head = None
        self._loop.remove_writer(self._fd)
        if self._writing_paused and self._queued <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._closing:
            self._shutdown()

    def _closing_gracefully(self) -> bool:
        """close() was called and the queue is still being sent (the socket is open)."""
        return self._closing and not self._lost

    def _check_high_water(self) -> None:
        if not self._writing_paused and self._queued > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    # -------------------------------------------------------------- ending

    def abort(self) -> None:
        """Close the socket at once: nothing queued is sent, no close_notify."""
        self._force_close(None)

    def _shutdown(self) -> None:
        """close_notify (best effort: we do not wait for the peer's), then close."""
        with contextlib.suppress(OSError, ValueError, ssl.SSLError):
            self._sock.unwrap()
        self._force_close(None)

    def _fatal(self, exc: Exception) -> None:
        if isinstance(exc, (ssl.SSLError, ConnectionError)):
            _log.debug("TLS connection failed: %s", exc)
        self._force_close(exc)

    def _force_close(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._stop_reading()
        with contextlib.suppress(Exception):
            self._loop.remove_writer(self._fd)
        self._head = None
        self._queue.clear()
        self._queued = 0
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


async def _handshake(loop: asyncio.AbstractEventLoop, sock: ssl.SSLSocket, limit: float | None) -> None:
    fd = sock.fileno()
    async with asyncio.timeout(limit):
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                await _ready(loop, fd, write=False)
            except ssl.SSLWantWriteError:
                await _ready(loop, fd, write=True)


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, *, write: bool) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not waiter.done():
            waiter.set_result(None)

    if write:
        loop.add_writer(fd, ready)
    else:
        loop.add_reader(fd, ready)
    try:
        await waiter
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def _prepare(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_tls(
    sock: socket.socket,
    context: ssl.SSLContext,
    protocol_factory: ProtocolFactory,
    *,
    server_hostname: str | None = None,
    handshake_timeout: float | None = None,
) -> tuple[TlsTransport, asyncio.Protocol]:
    """TLS client handshake on the connected socket ``sock``, then the protocol is made and started.

    The socket is closed if the handshake fails or takes longer than ``handshake_timeout`` (TimeoutError).
    """
    loop = asyncio.get_running_loop()
    _prepare(sock)
    try:
        tls = context.wrap_socket(
            sock, server_side=False, server_hostname=server_hostname or None, do_handshake_on_connect=False
        )
    except BaseException:
        sock.close()
        raise
    try:
        await _handshake(loop, tls, handshake_timeout)
    except BaseException:
        tls.close()
        raise
    protocol = protocol_factory()
    transport = TlsTransport(loop, tls, protocol)
    transport.start()
    return transport, protocol


class TlsServer:
    """Serves TLS on a listening socket; see the module docstring."""

    def __init__(
        self,
        sock: socket.socket,
        context: ssl.SSLContext,
        protocol_factory: ProtocolFactory,
        *,
        handshake_timeout: float | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._sock: socket.socket | None = sock
        self._context = context
        self._factory = protocol_factory
        self._handshake_timeout = handshake_timeout
        self._handshakes: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        self._address = sock.getsockname()
        self.accept_errors = 0
        self.sockets = (sock,)
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept_ready)

    def _accept_ready(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self._sock is None:
                return
            try:
                conn, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return  # nothing more queued, or the client gave up before we took it
            except OSError as exc:
                # Out of descriptors or memory: the queued connection stays queued and the socket
                # stays readable, so a level-triggered poll would spin. Stop polling for a while.
                _log.warning(
                    "accept on %s failed: %s; not accepting for %g s", self._address, exc, ACCEPT_RETRY_DELAY
                )
                self.accept_errors += 1
                self._loop.remove_reader(self._sock.fileno())
                self._retry = self._loop.call_later(ACCEPT_RETRY_DELAY, self._resume_accepting)
                return
            protocol = self._factory()
            task = spawn(self._start(conn, protocol), name="tls-handshake")
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _resume_accepting(self) -> None:
        self._retry = None
        if self._sock is not None:
            self._loop.add_reader(self._sock.fileno(), self._accept_ready)

    async def _start(self, conn: socket.socket, protocol: asyncio.Protocol) -> None:
        _prepare(conn)
        try:
            tls = self._context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        except (OSError, ssl.SSLError) as exc:
            conn.close()
            protocol.connection_lost(exc)
            return
        try:
            await _handshake(self._loop, tls, self._handshake_timeout)
        except (Exception, asyncio.CancelledError) as exc:
            tls.close()
            reason = exc if isinstance(exc, Exception) else ConnectionAbortedError("server closed")
            if isinstance(exc, TimeoutError):
                reason = ConnectionAbortedError(
                    f"TLS handshake took longer than {self._handshake_timeout:g} s: aborted"
                )
            _log.debug("TLS handshake failed: %s", reason)
            protocol.connection_lost(reason)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        TlsTransport(self._loop, tls, protocol).start()

    def close(self) -> None:
        """Stop accepting (the listening socket is closed); connections already made go on."""
        sock, self._sock = self._sock, None
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if sock is not None:
            with contextlib.suppress(Exception):
                self._loop.remove_reader(sock.fileno())
            sock.close()

    def is_serving(self) -> bool:
        return self._sock is not None

    async def wait_closed(self) -> None:
        """Wait until no handshake of this server is still under way."""
        if self._handshakes:
            await asyncio.gather(*list(self._handshakes), return_exceptions=True)

    def abort_handshakes(self) -> None:
        for task in list(self._handshakes):
            task.cancel()
