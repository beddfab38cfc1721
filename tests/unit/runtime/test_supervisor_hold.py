"""Component control without root: the supervisor's hold/release/kill/replace on real (tiny) child
processes, and the command channel's target resolution and request validation."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ambit.runtime import control, procs
from ambit.runtime.control import Command, ControlError, PodRef
from ambit.runtime.layout import Layout
from ambit.runtime.supervisor import ProcessSpec, Supervisor, terminate

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[Supervisor]:
    supervisor = Supervisor(tmp_path / "pids")
    supervisor.start(ProcessSpec("p", SLEEPER, tmp_path / "p.log"))
    yield supervisor
    supervisor.stop_all(grace=1.0)


def test_hold_stops_and_is_not_restarted_until_released(sup: Supervisor, tmp_path: Path) -> None:
    pid = sup.pid("p")
    assert pid is not None
    assert sup.hold("p") is True
    assert sup.held("p") and sup.held_keys() == ["p"]
    wait_for(lambda: not sup.running("p"))
    for _ in range(3):  # many ticks, past the backoff: still down, record gone
        sup.tick()
        time.sleep(0.3)
    assert not sup.running("p")
    assert not (tmp_path / "pids" / "p.json").exists()
    new = sup.release("p")
    assert new is not None and new != pid
    assert sup.running("p") and not sup.held("p")
    assert procs.read(tmp_path / "pids" / "p.json") == (new, SLEEPER)
    assert sup.restarts("p") == 0  # a start on command is not a crash


def test_kill_is_sigkill_and_restarted(sup: Supervisor) -> None:
    pid = sup.pid("p")
    assert sup.kill("p") == pid
    wait_for(lambda: not sup.running("p"))
    sup.tick()  # notices the exit (backoff 0.5 s)
    wait_for(lambda: bool(sup.tick()) or sup.running("p"))
    assert sup.running("p") and sup.pid("p") != pid
    assert sup.restarts("p") == 1


def test_kill_while_held_does_nothing(sup: Supervisor) -> None:
    sup.hold("p")
    wait_for(lambda: not sup.running("p"))
    sup.tick()
    assert sup.kill("p") is None
    sup.tick()
    assert not sup.running("p")


def test_replace_overlaps_then_old_drains(sup: Supervisor, tmp_path: Path) -> None:
    old_pid = sup.pid("p")
    old = sup.replace("p")
    assert old is not None and old.pid == old_pid
    new_pid = sup.pid("p")
    assert new_pid is not None and new_pid != old_pid
    assert old.poll() is None  # both run
    assert procs.read(tmp_path / "pids" / "p-draining.json") == (old_pid, SLEEPER)
    assert procs.read(tmp_path / "pids" / "p.json") == (new_pid, SLEEPER)
    terminate(old, 1.0)
    sup.drained("p")
    assert old.poll() is not None
    assert not (tmp_path / "pids" / "p-draining.json").exists()
    assert sup.running("p") and sup.pid("p") == new_pid


def test_replace_refused_while_held_and_unknown_keys(sup: Supervisor) -> None:
    sup.hold("p")
    with pytest.raises(ValueError, match="stopped"):
        sup.replace("p")
    with pytest.raises(KeyError):
        sup.hold("nope")


PODS = [
    PodRef(
        "ambit-system", "controlplane-1", "node1", ("pod-ambit-system-controlplane-1-controlplane",), True
    ),
    PodRef(
        "ambit-system", "controlplane-2", "node2", ("pod-ambit-system-controlplane-2-controlplane",), True
    ),
    PodRef("mesh", "httpbin-abc", "node2", ("pod-mesh-httpbin-abc-httpbin",)),
]
NODES = ["node1", "node2"]
KEYS = ["ztunnel-node1", "ztunnel-node2", *(k for p in PODS for k in p.keys)]


def test_resolve_targets() -> None:
    assert control.resolve(Command("kill", "ztunnel", "node1"), NODES, PODS, KEYS) == ["ztunnel-node1"]
    assert control.resolve(Command("stop", "controlplane"), NODES, PODS, KEYS) == [
        "pod-ambit-system-controlplane-1-controlplane",
        "pod-ambit-system-controlplane-2-controlplane",
    ]
    assert control.resolve(Command("stop", "controlplane", node="node2"), NODES, PODS, KEYS) == [
        "pod-ambit-system-controlplane-2-controlplane"
    ]
    assert control.resolve(Command("stop", "controlplane", name="controlplane-1"), NODES, PODS, KEYS) == [
        "pod-ambit-system-controlplane-1-controlplane"
    ]
    pod = Command("kill", "pod", name="httpbin-abc", namespace="mesh")
    assert control.resolve(pod, NODES, PODS, KEYS) == ["pod-mesh-httpbin-abc-httpbin"]


@pytest.mark.parametrize(
    ("cmd", "error"),
    [
        (Command("kill", "ztunnel", "node9"), "no node node9"),
        (Command("kill", "ztunnel", "node1"), "no ztunnel runs"),
        (Command("stop", "pod", name="httpbin-abc"), "no running pod default/httpbin-abc"),
        (Command("stop", "controlplane", node="node3"), "no running control-plane replica on node3"),
    ],
)
def test_resolve_errors(cmd: Command, error: str) -> None:
    keys = [k for k in KEYS if k != "ztunnel-node1"]
    with pytest.raises(ControlError, match=error):
        control.resolve(cmd, NODES, PODS, keys)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"op": "pause", "component": "store"}, "unknown operation"),
        ({"op": "stop", "component": "etcd"}, "unknown component"),
        ({"op": "stop", "component": "ztunnel"}, "needs --node"),
        ({"op": "stop", "component": "pod"}, "needs a NAME"),
        ({"op": "stop", "component": "pod", "name": 3}, "must be a string"),
        ([], "JSON object"),
    ],
)
def test_command_validation(data: object, error: str) -> None:
    with pytest.raises(ControlError, match=error):
        Command.from_json(data)


def test_held_file_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMBIT_RUN_DIR", str(tmp_path))
    layout = Layout("x")
    assert control.read_held(layout) == set()
    control.write_held(layout, ["store", "ztunnel-node1"])
    assert control.read_held(layout) == {"store", "ztunnel-node1"}
    assert json.loads(control.held_path(layout).read_text()) == ["store", "ztunnel-node1"]


def test_socket_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "daemon.sock"
    seen: list[Command] = []

    async def handler(cmd: Command) -> dict[str, object]:
        seen.append(cmd)
        if cmd.component == "store":
            raise ControlError("no store here")
        return {"message": "done", "keys": ["k"]}

    async def main() -> None:
        server = control.ControlServer(path, handler)
        await server.start()
        try:
            ok = await asyncio.to_thread(control.request, path, Command("stop", "ztunnel", "node1"), 5.0)
            assert ok == {"ok": True, "message": "done", "keys": ["k"]}
            with pytest.raises(ControlError, match="no store here"):
                await asyncio.to_thread(control.request, path, Command("stop", "store"), 5.0)
        finally:
            await server.close()
        assert not path.exists()

    asyncio.run(main())
    assert seen == [Command("stop", "ztunnel", "node1"), Command("stop", "store")]
    with pytest.raises(ControlError, match="does not answer"):
        control.request(path, Command("stop", "store"), 1.0)
