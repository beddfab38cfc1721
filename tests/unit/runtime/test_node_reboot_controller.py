"""A node reboot's pure parts: the command (`reboot` of a `node`, its seed), the seeded order the pods
come back in, the status written while they are down, and the kubelet's pass order during a boot."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.runtime.control import Command, ControlError, RebootReply
from ambit.runtime.controllers.kubelet import pass_order
from ambit.runtime.controllers.node_reboot import Rebooted, boot_order, down_status


def test_a_reboot_is_of_a_node_and_a_node_only_reboots() -> None:
    Command("reboot", "node", "node2").validate()
    Command("reboot", "node", "node2", seed=7).validate()
    for bad in (
        Command("reboot", "node"),  # which node?
        Command("reboot", "ztunnel", "node2"),
        Command("kill", "node", "node2"),
        Command("reboot", "node", "node2", name="x"),
        Command("kill", "ztunnel", "node2", seed=1),  # only a reboot takes a seed
    ):
        with pytest.raises(ControlError):
            bad.validate()


def test_the_seed_crosses_the_wire_as_an_integer() -> None:
    cmd = Command("reboot", "node", "node2", seed=3)
    assert Command.from_json(cmd.to_json()) == cmd
    for seed in ("3", 1.5, True):
        with pytest.raises(ControlError, match="seed"):
            Command.from_json({**cmd.to_json(), "seed": seed})


def test_the_reply_carries_the_boot_the_seed_and_the_order() -> None:
    done = Rebooted("node2", 812.5, 3, ("ns/b", "ns/a"), (11, 12), 99)
    reply = RebootReply.from_reply("node2", {"ok": True, **done.reply()})
    assert (reply.boot, reply.seed, reply.order, reply.killed) == (812.5, 3, ("ns/b", "ns/a"), (11, 12))
    assert "ns/b, ns/a" in reply.message and "pid 99" in reply.message
    with pytest.raises(ControlError):
        RebootReply.from_reply("node2", {"ok": True, "message": "no boot"})


class _State:
    def __init__(self, name: str) -> None:
        self.namespace, self.name, self.uid = "ns", name, f"uid-{name}"


def test_the_boot_order_is_a_permutation_fixed_by_the_seed() -> None:
    states = [_State(n) for n in "abcdefgh"]
    orders = {s: [x.name for x in boot_order(states, s)] for s in range(6)}  # type: ignore[arg-type]
    assert all(sorted(o) == list("abcdefgh") for o in orders.values())
    assert orders[1] == [x.name for x in boot_order(list(reversed(states)), 1)]  # type: ignore[arg-type]
    assert len({tuple(o) for o in orders.values()}) > 1  # not one fixed order


def test_a_rebooted_pod_is_written_not_ready_and_keeps_the_rest_of_its_status() -> None:
    status = {
        "phase": "Running",
        "podIP": "10.244.2.3",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}],
        "containerStatuses": [{"name": "all", "ready": True, "restartCount": 2}],
    }
    down = down_status(status, "2026-01-01T00:00:00Z")
    ready = [c for c in down["conditions"] if c["type"] == "Ready"]
    assert ready == [
        {
            "type": "Ready",
            "status": "False",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "reason": "NodeRebooted",
        }
    ]
    assert {"type": "PodScheduled", "status": "True"} in down["conditions"]
    assert down["containerStatuses"] == [{"name": "all", "ready": False, "restartCount": 2}]
    assert (down["phase"], down["podIP"]) == ("Running", "10.244.2.3")


class _Kubelet:
    def __init__(self, ranks: dict[str, int]) -> None:
        self.ranks = ranks

    def boot_rank(self, uid: str) -> int | None:
        return self.ranks.get(uid)


def _pod(node: str) -> dict[str, Any]:
    return {"spec": {"nodeName": node}}


def test_a_booting_nodes_pods_come_first_in_their_random_order_the_rest_as_listed() -> None:
    pods = {
        "x": _pod("node1"),
        "c": _pod("node2"),
        "a": _pod("node2"),
        "y": _pod("node1"),
        "b": _pod("node2"),
    }
    kubelets = {"node1": _Kubelet({}), "node2": _Kubelet({"a": 2, "b": 0, "c": 1})}
    order = [uid for uid, _ in pass_order(pods, kubelets)]  # type: ignore[arg-type]
    assert order == ["b", "c", "a", "x", "y"]
    kubelets["node2"].ranks = {"a": 0}  # b and c started: back to the informer's order
    assert [uid for uid, _ in pass_order(pods, kubelets)] == ["a", "x", "c", "y", "b"]  # type: ignore[arg-type]
