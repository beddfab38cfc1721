"""The node agent's ZDS server side against a fake ztunnel client: hello, replay, SCM_RIGHTS, acks."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from ambit.protocol import zds
from ambit.runtime import nsexec
from ambit.runtime.agent import AgentError, NodeAgent

INFO = zds.WorkloadInfo("web-abcde", "shop", "web", ("10.244.1.2",), "node1")


class FakeZtunnel:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(str(path))
        self.sock.settimeout(5)

    def send(self, message: zds.Message) -> None:
        self.sock.send(zds.encode(message).data)

    def recv(self) -> tuple[zds.Message, list[int]]:
        data, anc, _, _ = self.sock.recvmsg(zds.MAX_MESSAGE, socket.CMSG_SPACE(4))
        fds = [int.from_bytes(d[:4], "little") for lvl, kind, d in anc if kind == socket.SCM_RIGHTS]
        return zds.decode(data, fds=len(fds)), fds


@pytest.fixture
def netns_is_self(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nsexec, "netns_path", lambda name: "/proc/self/ns/net")


async def test_add_waits_for_ack_and_replays_on_reconnect(tmp_path: Path, netns_is_self: None) -> None:
    agent = NodeAgent("node1", tmp_path / "ztunnel.sock")
    await agent.start()
    try:
        with pytest.raises(AgentError):
            await agent.add("u1", INFO, "ns")  # no ztunnel: the pod is held
        zt = FakeZtunnel(tmp_path / "ztunnel.sock")
        zt.send(zds.Hello())
        msg, fds = await asyncio.to_thread(zt.recv)
        assert msg == zds.SnapshotSent() and fds == []
        zt.send(zds.Ack())
        for _ in range(100):
            if agent.connected:
                break
            await asyncio.sleep(0.01)

        async def ztunnel_acks() -> None:
            msg, fds = await asyncio.to_thread(zt.recv)
            assert msg == zds.AddWorkload("u1", INFO)
            assert len(fds) == 1
            assert os.readlink(f"/proc/self/fd/{fds[0]}") == os.readlink("/proc/self/ns/net")
            os.close(fds[0])
            zt.send(zds.Ack("u1"))

        await asyncio.gather(agent.add("u1", INFO, "ns"), ztunnel_acks())
        assert "u1" in agent.enrolled

        # A refusal keeps the pod un-enrolled.
        async def ztunnel_refuses() -> None:
            _msg, fds = await asyncio.to_thread(zt.recv)
            for fd in fds:
                os.close(fd)
            zt.send(zds.Ack("u2", "no certificate"))

        with pytest.raises(AgentError, match="no certificate"):
            await asyncio.gather(agent.add("u2", INFO, "ns"), ztunnel_refuses())
        assert "u2" not in agent.enrolled

        # ztunnel restarts: the new connection gets every enrolled pod, then SnapshotSent.
        zt.sock.close()
        zt2 = FakeZtunnel(tmp_path / "ztunnel.sock")
        zt2.send(zds.Hello())
        msg, fds = await asyncio.to_thread(zt2.recv)
        assert msg == zds.AddWorkload("u1", INFO) and len(fds) == 1
        os.close(fds[0])
        zt2.send(zds.Ack("u1"))
        msg, fds = await asyncio.to_thread(zt2.recv)
        assert msg == zds.SnapshotSent()
        zt2.send(zds.Ack())

        async def ztunnel_dels() -> None:
            msg, _ = await asyncio.to_thread(zt2.recv)
            assert msg == zds.DelWorkload("u1")
            zt2.send(zds.Ack("u1"))

        for _ in range(100):
            if agent.connected:
                break
            await asyncio.sleep(0.01)
        await asyncio.gather(agent.delete("u1"), ztunnel_dels())
        assert agent.enrolled == {}
        zt2.sock.close()
    finally:
        await agent.close()
    assert not (tmp_path / "ztunnel.sock").exists()


async def test_a_replay_refusal_is_retried_until_the_new_ztunnel_takes_the_pod(
    tmp_path: Path, netns_is_self: None
) -> None:
    """A replacement ztunnel that refused a replayed pod (say, not yet in its config) is handed it
    again; `retry_refused` reports only what is still refused."""
    agent = NodeAgent("node1", tmp_path / "ztunnel.sock")
    await agent.start()
    try:
        zt = FakeZtunnel(tmp_path / "ztunnel.sock")
        zt.send(zds.Hello())
        await asyncio.to_thread(zt.recv)
        zt.send(zds.Ack())

        async def ack_next(error: str | None = None) -> None:
            _msg, fds = await asyncio.to_thread(zt.recv)
            for fd in fds:
                os.close(fd)
            zt.send(zds.Ack("u1", error) if error else zds.Ack("u1"))

        for _ in range(100):
            if agent.connected:
                break
            await asyncio.sleep(0.01)
        await asyncio.gather(agent.add("u1", INFO, "ns"), ack_next())

        zt2 = FakeZtunnel(tmp_path / "ztunnel.sock")
        zt2.send(zds.Hello())
        _msg, fds = await asyncio.to_thread(zt2.recv)  # replay of u1: refused
        os.close(fds[0])
        zt2.send(zds.Ack("u1", "not in the config after 5 s"))
        msg, _ = await asyncio.to_thread(zt2.recv)
        assert msg == zds.SnapshotSent()
        zt2.send(zds.Ack())
        for _ in range(100):
            if len(agent.ready_connections()) == 2:
                break
            await asyncio.sleep(0.01)
        new = agent.ready_connections()[-1]
        assert new.refused == {"u1": "not in the config after 5 s"}

        async def refuse_then_take() -> None:
            for error in ("still not in the config", None):
                _msg, fds = await asyncio.to_thread(zt2.recv)
                for fd in fds:
                    os.close(fd)
                zt2.send(zds.Ack("u1", error) if error else zds.Ack("u1"))

        still, _ = await asyncio.gather(agent.retry_refused(new, 10.0), refuse_then_take())
        assert still == {} and new.refused == {}
        zt.sock.close()
        zt2.sock.close()
    finally:
        await agent.close()
