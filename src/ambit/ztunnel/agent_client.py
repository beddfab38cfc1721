"""ztunnel's side of the node agent protocol (ZDS, :mod:`ambit.protocol.zds`): the transport.

The node agent listens on ``<cluster dir>/nodes/<node>/ztunnel.sock`` (a Unix ``SOCK_SEQPACKET``
socket); :class:`AgentClient` connects to it (waiting, with jittered backoff, until it exists and
accepts), says ``Hello``, then handles one message at a time, in order:

* ``AddWorkload`` arrives with the pod's netns fd as ``SCM_RIGHTS`` ancillary data (received with
  ``recvmsg`` and room for exactly one descriptor; anything else is a protocol error and every fd
  that did arrive is closed). :meth:`AgentHandler.add_workload` gets the fd and **owns it** once it
  returns; if it raises, the client closes the fd and answers ``Ack(uid, error)``.
* ``DelWorkload`` → :meth:`AgentHandler.del_workload`; ``SnapshotSent`` →
  :meth:`AgentHandler.snapshot_sent`. Each is answered with ``Ack`` (with the error text if the handler
  raised).

A malformed message, or the agent closing the connection, ends the connection; the client reconnects
(backoff 50 ms doubling to 5 s, equal jitter, reset after a connection that got a message). On every
new connection :meth:`AgentHandler.connected` is called first, so the handler can track which pods
the agent replays before ``SnapshotSent``. Messages are handled sequentially: the agent waits for the
ack of an add before it starts the pod's app, and acks must leave in the order the requests came.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import random
import socket
from pathlib import Path
from typing import Protocol

from ambit.identity.secrets import backoff_delay
from ambit.protocol import zds

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL = 0.05
DEFAULT_BACKOFF_MAX = 5.0
_FD_SIZE = array.array("i").itemsize


class AgentHandler(Protocol):
    """What the agent client drives (the ztunnel app)."""

    def connected(self) -> None:
        """A new connection to the agent: a replay of the node's pods follows."""
        ...

    async def add_workload(self, uid: str, workload: zds.WorkloadInfo, netns_fd: int) -> None:
        """Serve the pod; owns ``netns_fd`` once this returns. Raise to refuse (the fd is closed)."""
        ...

    async def del_workload(self, uid: str) -> None:
        """Stop serving the pod."""
        ...

    async def snapshot_sent(self) -> None:
        """Every pod of the node has been sent on this connection."""
        ...


class AgentClient:
    """Connects to the node agent and dispatches its messages; see the module docstring."""

    def __init__(
        self,
        path: Path,
        handler: AgentHandler,
        *,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self.handler = handler
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng or random.Random()
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self.connected = asyncio.Event()
        self.connections = 0
        self.messages = 0
        self.last_error: str | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("AgentClient already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="zds-client")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._disconnect()

    # -- the loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            got_message = False
            try:
                sock = await self._connect()
                self.connections += 1
                self.connected.set()
                log.info("connected to the node agent at %s", self.path)
                self.handler.connected()
                await self._send(sock, zds.Hello())
                while True:
                    data, fds = await self._recv(sock)
                    if not data and not fds:
                        raise ConnectionError("the node agent closed the connection")
                    got_message = True
                    self.messages += 1
                    await self._dispatch(sock, data, fds)
            except asyncio.CancelledError:
                raise
            except (OSError, zds.ZdsError) as exc:
                self.last_error = str(exc) or type(exc).__name__
                if self.connected.is_set():
                    log.warning("node agent connection lost: %s", self.last_error)
                else:
                    log.debug("node agent not reachable: %s", self.last_error)
            finally:
                self._disconnect()
            failures = 1 if got_message else failures + 1
            await asyncio.sleep(
                backoff_delay(
                    failures, initial=self._backoff_initial, maximum=self._backoff_max, rng=self._rng
                )
            )

    async def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, os.fspath(self.path))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        self.connected.clear()
        if sock is not None:
            sock.close()

    async def _send(self, sock: socket.socket, message: zds.Message) -> None:
        frame = zds.encode(message)
        await asyncio.get_running_loop().sock_sendall(sock, frame.data)

    async def _recv(self, sock: socket.socket) -> tuple[bytes, list[int]]:
        """One packet and the descriptors that came with it (closed again if the packet is bad)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                data, ancdata, flags, _addr = sock.recvmsg(
                    zds.MAX_MESSAGE + 1, socket.CMSG_SPACE(_FD_SIZE), socket.MSG_CMSG_CLOEXEC
                )
                break
            except (BlockingIOError, InterruptedError):
                await _readable(loop, sock.fileno())
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(payload[: len(payload) - len(payload) % _FD_SIZE])
                fds.extend(got)
        if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            _close_all(fds)
            raise zds.ZdsError("message or its descriptors were truncated")
        return data, fds

    async def _dispatch(self, sock: socket.socket, data: bytes, fds: list[int]) -> None:
        try:
            message = zds.decode(data, fds=len(fds))
        except zds.ZdsError:
            _close_all(fds)
            raise
        if isinstance(message, zds.AddWorkload):
            fd = fds[0]
            try:
                await self.handler.add_workload(message.uid, message.workload, fd)
            except Exception as exc:
                os.close(fd)
                log.warning(
                    "refusing pod %s (%s/%s): %s",
                    message.uid,
                    message.workload.namespace,
                    message.workload.name,
                    exc,
                )
                await self._send(sock, zds.Ack(message.uid, _error_text(exc)))
            else:
                await self._send(sock, zds.Ack(message.uid))
        elif isinstance(message, zds.DelWorkload):
            error = None
            try:
                await self.handler.del_workload(message.uid)
            except Exception as exc:
                log.warning("removing pod %s failed: %s", message.uid, exc)
                error = _error_text(exc)
            await self._send(sock, zds.Ack(message.uid, error))
        elif isinstance(message, zds.SnapshotSent):
            error = None
            try:
                await self.handler.snapshot_sent()
            except Exception as exc:
                log.warning("handling the agent's snapshot failed: %s", exc)
                error = _error_text(exc)
            await self._send(sock, zds.Ack("", error))
        else:  # Hello or Ack from the agent: nothing to do
            log.debug("ignoring %r from the node agent", message)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await waiter
    finally:
        loop.remove_reader(fd)


def _error_text(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
