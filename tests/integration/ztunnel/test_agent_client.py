"""AgentClient against a fake node agent: a SOCK_SEQPACKET server passing real netns fds (SCM_RIGHTS)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ambit.protocol import zds
from ambit.testing.ztunnel_mesh import eventually
from ambit.ztunnel.agent_client import AgentClient

NETNS = "/proc/self/ns/net"
INFO = zds.WorkloadInfo(name="web-0", namespace="default", service_account="web", ips=("10.244.1.2",))


@dataclass
class Handler:
    events: list[tuple[str, str]] = field(default_factory=list)
    fds: dict[str, int] = field(default_factory=dict)
    refuse: set[str] = field(default_factory=set)

    def connected(self) -> None:
        self.events.append(("connected", ""))

    async def add_workload(self, uid: str, workload: zds.WorkloadInfo, netns_fd: int) -> None:
        assert workload == INFO
        self.events.append(("add", uid))
        if uid in self.refuse:
            raise RuntimeError(f"no workload {uid} in xDS")
        self.fds[uid] = netns_fd

    async def del_workload(self, uid: str) -> None:
        self.events.append(("del", uid))
        if uid in self.refuse:
            raise KeyError(uid)
        fd = self.fds.pop(uid, None)
        if fd is not None:
            os.close(fd)

    async def snapshot_sent(self) -> None:
        self.events.append(("snapshot", ""))

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


class FakeAgent:
    """The node agent's side: listens, accepts one ztunnel at a time, sends messages, reads acks."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.server.bind(os.fspath(path))
        self.server.listen(4)
        self.server.setblocking(False)
        self.conn: socket.socket | None = None

    async def accept(self) -> zds.Message:
        conn, _ = await asyncio.wait_for(asyncio.get_running_loop().sock_accept(self.server), 5)
        conn.setblocking(False)
        self.drop()
        self.conn = conn
        return await self.recv()

    async def recv(self) -> zds.Message:
        assert self.conn is not None
        data = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(self.conn, zds.MAX_MESSAGE), 5)
        return zds.decode(data, fds=0)

    def send_raw(self, data: bytes, fds: list[int] | None = None) -> None:
        assert self.conn is not None
        if fds:
            socket.send_fds(self.conn, [data], fds)
        else:
            self.conn.send(data)

    def send(self, message: zds.Message) -> None:
        frame = zds.encode(message)
        if frame.needs_fd:
            fd = os.open(NETNS, os.O_RDONLY)
            try:
                self.send_raw(frame.data, [fd])
            finally:
                os.close(fd)
        else:
            self.send_raw(frame.data)

    async def request(self, message: zds.Message) -> zds.Message:
        self.send(message)
        return await self.recv()

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.drop()
        self.server.close()


@pytest.fixture
async def handler() -> AsyncIterator[Handler]:
    h = Handler()
    yield h
    h.close()


@pytest.fixture
async def client(tmp_path: Path, handler: Handler) -> AsyncIterator[AgentClient]:
    c = AgentClient(tmp_path / "ztunnel.sock", handler, backoff_initial=0.01, backoff_max=0.05)
    c.start()
    try:
        yield c
    finally:
        await c.close()


@contextlib.contextmanager
def agent_at(path: Path) -> object:
    agent = FakeAgent(path)
    try:
        yield agent
    finally:
        agent.close()


async def test_conversation_passes_the_netns_fd(
    tmp_path: Path, client: AgentClient, handler: Handler
) -> None:
    await asyncio.sleep(0.05)  # the client is already retrying: the socket appears later
    with agent_at(tmp_path / "ztunnel.sock") as agent:
        assert isinstance(agent, FakeAgent)
        assert await agent.accept() == zds.Hello()
        assert await agent.request(zds.AddWorkload("u1", INFO)) == zds.Ack("u1")
        assert await agent.request(zds.SnapshotSent()) == zds.Ack("")
        assert await agent.request(zds.DelWorkload("u2")) == zds.Ack("u2")
        assert handler.events == [("connected", ""), ("add", "u1"), ("snapshot", ""), ("del", "u2")]
        # the fd is a real descriptor of the same network namespace, close-on-exec
        fd = handler.fds["u1"]
        assert os.fstat(fd).st_ino == os.stat(NETNS).st_ino
        assert not os.get_inheritable(fd)


async def test_handler_errors_become_ack_errors_and_fd_is_closed(
    tmp_path: Path, client: AgentClient, handler: Handler
) -> None:
    handler.refuse.add("bad")
    with agent_at(tmp_path / "ztunnel.sock") as agent:
        assert isinstance(agent, FakeAgent)
        await agent.accept()
        before = len(os.listdir("/proc/self/fd"))
        ack = await agent.request(zds.AddWorkload("bad", INFO))
        assert isinstance(ack, zds.Ack) and ack.uid == "bad" and ack.error == "no workload bad in xDS"
        assert len(os.listdir("/proc/self/fd")) == before  # the refused pod's fd was closed
        ack = await agent.request(zds.DelWorkload("bad"))
        assert isinstance(ack, zds.Ack) and not ack.ok


async def test_reconnects_after_the_agent_drops_or_misbehaves(
    tmp_path: Path, client: AgentClient, handler: Handler
) -> None:
    with agent_at(tmp_path / "ztunnel.sock") as agent:
        assert isinstance(agent, FakeAgent)
        assert await agent.accept() == zds.Hello()
        agent.drop()  # agent restarts its side
        assert await agent.accept() == zds.Hello()
        agent.send_raw(b"not json")  # protocol error: ztunnel hangs up and comes back
        assert await agent.accept() == zds.Hello()
        fd = os.open(NETNS, os.O_RDONLY)
        try:
            agent.send_raw(zds.encode(zds.DelWorkload("x")).data, [fd])  # a del must not carry an fd
        finally:
            os.close(fd)
        assert await agent.accept() == zds.Hello()
        assert await agent.request(zds.AddWorkload("u1", INFO)) == zds.Ack("u1")
    assert [e for e in handler.events if e[0] == "connected"] == [("connected", "")] * 4
    assert client.connections == 4


async def test_close_stops_retrying(tmp_path: Path, handler: Handler) -> None:
    c = AgentClient(tmp_path / "none.sock", handler, backoff_initial=0.01, backoff_max=0.02)
    c.start()
    await eventually(lambda: c.last_error is not None)  # it tried (and failed): it is retrying
    assert not c.connected.is_set() and c.last_error
    await c.close()
