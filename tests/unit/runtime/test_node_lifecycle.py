"""Node readiness from observed Lease renewals, timed by the daemon's own clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ambit.runtime.controllers.node_lifecycle import NodeLifecycle, lease
from ambit.runtime.fabric_pki import FabricPki


class View:
    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}

    def get(self, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        return self.leases.get(name) if kind == "Lease" else None


def lifecycle(view: View, clock: list[float], tmp_path: Path) -> NodeLifecycle:
    return NodeLifecycle(
        ["node1"],
        client=None,  # type: ignore[arg-type]  # node_ready reads the view only
        view=view,  # type: ignore[arg-type]
        pki=FabricPki(tmp_path),
        node_netns={"node1": "x"},
        grace=8.0,
        clock=lambda: clock[0],
    )


def test_ready_while_renewals_are_observed_not_ready_after_the_grace(tmp_path: Path) -> None:
    view, clock = View(), [100.0]
    nodes = lifecycle(view, clock, tmp_path)
    assert nodes.node_ready("node1")  # a new daemon gives one grace period
    nodes.failures["node1"] = "TimeoutError"  # its heartbeat cannot reach the store (a cut)
    clock[0] = 108.5
    assert not nodes.node_ready("node1")  # no Lease ever
    view.leases["node1"] = lease("node1", 8, 1.0)
    assert nodes.node_ready("node1")  # a renewal seen now
    clock[0] = 116.0
    assert nodes.node_ready("node1")
    clock[0] = 116.6
    assert not nodes.node_ready("node1")  # the same renewTime for more than 8 s
    view.leases["node1"] = lease("node1", 8, 2.0)
    assert nodes.node_ready("node1")


def test_a_stale_lease_after_a_store_hold_gets_a_fresh_grace_not_an_outage(tmp_path: Path) -> None:
    view, clock = View(), [0.0]
    view.leases["node1"] = lease("node1", 8, 1.0)  # its renewTime is old: the clock never reads it
    nodes = lifecycle(view, clock, tmp_path)
    nodes.failures["node1"] = "TimeoutError"
    assert nodes.node_ready("node1")
    clock[0] = 30.0  # the store was held: nothing could be renewed
    assert not nodes.node_ready("node1")  # control: without the restart the node would be NotReady
    nodes.restart_clock()
    assert nodes.node_ready("node1")
    clock[0] = 38.5
    assert not nodes.node_ready("node1")


def test_no_failed_heartbeat_no_not_ready_even_when_no_renewal_was_seen(tmp_path: Path) -> None:
    """A stalled observer (no attempt made) or a late informer is no evidence of a cut."""
    view, clock = View(), [0.0]
    nodes = lifecycle(view, clock, tmp_path)
    clock[0] = 60.0
    assert nodes.node_ready("node1")  # nothing failed: stays Ready
    nodes.failures["node1"] = "TimeoutError"
    assert not nodes.node_ready("node1")  # control: the same age with a failing heartbeat
