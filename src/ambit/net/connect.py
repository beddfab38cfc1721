"""Connecting a non-blocking socket to a numeric address, without the resolver.

uvloop's ``loop.sock_connect`` sends every address through ``getaddrinfo`` on libuv's thread pool,
even ``10.244.2.3``: a thread hand-off (and the pool's queue under load) on every proxied connection.
A proxy only ever connects to addresses it already knows, so it connects the way the kernel API
works: ``connect()`` → EINPROGRESS → wait until writable → ``SO_ERROR``.
"""

from __future__ import annotations

import asyncio
import os
import socket


async def connect_numeric(sock: socket.socket, address: tuple[str, int]) -> None:
    """Connect non-blocking `sock` to `address` (an IP literal and a port); raises the OSError the
    kernel reports (ConnectionRefusedError, ...). Cancellation leaves the socket to the caller."""
    try:
        sock.connect(address)
        return
    except BlockingIOError:
        pass
    loop = asyncio.get_running_loop()
    writable: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def on_writable() -> None:
        if not writable.done():
            writable.set_result(None)

    loop.add_writer(fd, on_writable)
    try:
        await writable
    finally:
        loop.remove_writer(fd)
    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        raise OSError(error, f"connect to {address[0]}:{address[1]}: {os.strerror(error)}")
