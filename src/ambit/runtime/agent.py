"""The node agent (istio-cni's role) for one node: the agent (server) side of the ZDS transport.

It listens on ``<cd>/nodes/<node>/ztunnel.sock`` (``SOCK_SEQPACKET``). A ztunnel connects and says
``Hello``; the agent replays every enrolled pod of the node (``AddWorkload`` + the netns fd as
``SCM_RIGHTS``, each acked), then ``SnapshotSent``. Afterwards :meth:`NodeAgent.add` enrols one pod
and returns only once ztunnel acked it (the kubelet starts the app after that: a pod never runs
uncaptured); :meth:`NodeAgent.delete` un-enrols. Adds go to the newest connection, deletes to all.
Capture rules are installed by the caller (:func:`ambit.runtime.capture.apply`) before :meth:`add`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ambit.protocol import zds
from ambit.runtime import nsexec

log = logging.getLogger(__name__)

ACK_TIMEOUT = 5.0


class AgentError(RuntimeError):
    """No ztunnel connected, or ztunnel refused or did not answer."""


@dataclass
class Enrolled:
    uid: str
    workload: zds.WorkloadInfo
    netns: str


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    hello: asyncio.Future[None]
    acks: asyncio.Queue[zds.Ack] = field(default_factory=asyncio.Queue)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: bool = False  # replay done
    closed: bool = False
    refused: dict[str, str] = field(default_factory=dict)  # pods the replay could not hand over: uid → why


class NodeAgent:
    def __init__(self, node: str, socket_path: Path, *, on_change: Callable[[], None] | None = None) -> None:
        self.node = node
        self.socket_path = socket_path
        self.enrolled: dict[str, Enrolled] = {}
        self._on_change = on_change
        self._listener: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return any(c.ready and not c.closed for c in self._conns)

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        sock.listen(8)
        sock.setblocking(False)
        self._listener = sock
        self._spawn(self._accept_loop())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for conn in self._conns:
            self._close_conn(conn)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.socket_path.unlink(missing_ok=True)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        while True:
            sock, _ = await loop.sock_accept(self._listener)
            sock.setblocking(False)
            conn = _Conn(sock, loop.create_future())
            self._conns.append(conn)
            loop.add_reader(sock.fileno(), self._readable, conn)
            self._spawn(self._serve(conn))

    def _readable(self, conn: _Conn) -> None:
        try:
            data, ancdata, _flags, _ = conn.sock.recvmsg(zds.MAX_MESSAGE, socket.CMSG_SPACE(4 * 4))
        except BlockingIOError:
            return
        except OSError:
            data, ancdata = b"", []
        fds = _close_fds(ancdata)
        if not data:
            self._close_conn(conn)
            return
        try:
            message = zds.decode(data, fds=fds)
        except zds.ZdsError as exc:
            log.warning("%s: bad message from ztunnel: %s", self.node, exc)
            self._close_conn(conn)
            return
        if isinstance(message, zds.Hello):
            if not conn.hello.done():
                conn.hello.set_result(None)
        elif isinstance(message, zds.Ack):
            conn.acks.put_nowait(message)
        else:
            log.warning("%s: unexpected %s from ztunnel", self.node, type(message).__name__)
            self._close_conn(conn)

    def _close_conn(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
        conn.sock.close()
        if not conn.hello.done():
            conn.hello.cancel()
        conn.acks.put_nowait(zds.Ack("", "connection closed"))
        if conn in self._conns:
            self._conns.remove(conn)
        log.info("%s: ztunnel disconnected", self.node)

    async def _serve(self, conn: _Conn) -> None:
        try:
            await asyncio.wait_for(conn.hello, ACK_TIMEOUT)
            async with conn.lock:
                for item in list(self.enrolled.values()):
                    ack = await self._exchange(conn, zds.AddWorkload(item.uid, item.workload), item.netns)
                    if not ack.ok:
                        conn.refused[item.uid] = ack.error or "refused"
                        log.warning("%s: ztunnel refused replayed pod %s: %s", self.node, item.uid, ack.error)
                await self._exchange(conn, zds.SnapshotSent(), None)
                conn.ready = True
            log.info("%s: ztunnel connected; replayed %d pods", self.node, len(self.enrolled))
            if self._on_change is not None:
                self._on_change()
        except (AgentError, TimeoutError, asyncio.CancelledError, OSError) as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("%s: ztunnel handshake failed: %s", self.node, exc)
            self._close_conn(conn)

    async def _exchange(self, conn: _Conn, message: zds.Message, netns: str | None) -> zds.Ack:
        if conn.closed:
            raise AgentError("ztunnel connection closed")
        frame = zds.encode(message)
        if frame.needs_fd:
            assert netns is not None
            fd = os.open(nsexec.netns_path(netns), os.O_RDONLY | os.O_CLOEXEC)
            try:
                conn.sock.sendmsg(
                    [frame.data],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, "little", signed=True))],
                )
            finally:
                os.close(fd)
        else:
            conn.sock.send(frame.data)
        try:
            ack = await asyncio.wait_for(conn.acks.get(), ACK_TIMEOUT)
        except TimeoutError as exc:
            self._close_conn(conn)
            raise AgentError("ztunnel did not ack in time") from exc
        if conn.closed:
            raise AgentError("ztunnel connection closed")
        return ack

    def ready_connections(self) -> list[_Conn]:
        """The ztunnel connections that finished their replay and are still open, oldest first."""
        return [c for c in self._conns if c.ready and not c.closed]

    async def retry_refused(self, conn: _Conn, within: float) -> dict[str, str]:
        """Hand `conn` the pods its replay refused again, until all are taken or `within` s pass; returns
        those still refused (uid → reason). A replacement ztunnel must serve every pod before the old one
        may drain: a refused pod would be left with no listener at all."""
        deadline = time.monotonic() + within
        while conn.refused and not conn.closed:
            for uid in list(conn.refused):
                item = self.enrolled.get(uid)
                if item is None:  # deleted meanwhile
                    conn.refused.pop(uid, None)
                    continue
                async with conn.lock:
                    ack = await self._exchange(conn, zds.AddWorkload(item.uid, item.workload), item.netns)
                if ack.ok:
                    conn.refused.pop(uid, None)
                else:
                    conn.refused[uid] = ack.error or "refused"
            if not conn.refused or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.5)
        return dict(conn.refused)

    def _newest(self) -> _Conn:
        for conn in reversed(self._conns):
            if conn.ready and not conn.closed:
                return conn
        raise AgentError(f"no ztunnel connected on {self.node}")

    async def add(self, uid: str, workload: zds.WorkloadInfo, netns: str) -> None:
        """Hand the pod to ztunnel and wait for its ack; raises AgentError otherwise."""
        conn = self._newest()
        async with conn.lock:
            ack = await self._exchange(conn, zds.AddWorkload(uid, workload), netns)
        if not ack.ok:
            raise AgentError(f"ztunnel refused pod {uid}: {ack.error}")
        self.enrolled[uid] = Enrolled(uid, workload, netns)

    async def delete(self, uid: str) -> None:
        """Un-enrol (best effort on every connection)."""
        self.enrolled.pop(uid, None)
        for conn in list(self._conns):
            if conn.closed or not conn.ready:
                continue
            try:
                async with conn.lock:
                    await self._exchange(conn, zds.DelWorkload(uid), None)
            except (AgentError, OSError) as exc:
                log.warning("%s: deleting %s: %s", self.node, uid, exc)


def _close_fds(ancdata: list[tuple[int, int, bytes]]) -> int:
    """Close every fd received (the agent never expects one) and count them."""
    count = 0
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            for i in range(0, usable, 4):
                count += 1
                with contextlib.suppress(OSError):
                    os.close(int.from_bytes(data[i : i + 4], "little", signed=True))
    return count
