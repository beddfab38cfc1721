"""The drain core's seams that ``ambit drain``'s own tests do not reach: the refusal hook, the pacing
knobs, the pods it returns, and the cordon. (What it prints and decides is tested through the CLI in
``tests/unit/cli/test_cli_drain.py``.)"""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest

from ambit.runtime import drain
from ambit.store.client import StoreClient
from ambit.store.types import Conflict, ListResult, NotFound, TooManyRequests


def pod(name: str, node: str = "node1") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "labels": {"app": "web"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web", "uid": "rs", "controller": True}],
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running"},
    }


class FakeStore:
    """Pods that go at once when evicted; the first `refusals` evictions are refused by a budget."""

    def __init__(self, pods: list[dict[str, Any]], refusals: int = 0) -> None:
        self.pods = {p["metadata"]["name"]: p for p in pods}
        self.refusals = refusals
        self.evictions: list[str] = []
        self.node: dict[str, Any] = {"kind": "Node", "metadata": {"name": "node1"}, "spec": {}}
        self.conflicts = 0

    async def list(self, kind: str) -> ListResult:
        return ListResult(list(self.pods.values()), "1")

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        if kind == "Node":
            return copy.deepcopy(self.node)
        if name not in self.pods:
            raise NotFound(f"{kind} {name} not found")
        return self.pods[name]

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict("changed")
        self.node = obj
        return obj

    async def evict(self, name: str, namespace: str | None = None, *, grace_period: int | None = None) -> Any:
        self.evictions.append(name)
        if self.refusals:
            self.refusals -= 1
            raise TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.")
        del self.pods[name]
        return {}


class Recorder(drain.DrainEvents):
    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []
        self.refused_pods: list[str] = []

    def line(self, text: str, *, err: bool = False) -> None:
        self.lines.append((text, err))

    async def refused(self, pod: dict[str, Any], error: TooManyRequests) -> None:
        self.refused_pods.append(pod["metadata"]["name"])


def test_a_refusal_is_reported_to_the_hook_and_retried_after_the_options_delay() -> None:
    store = FakeStore([pod("web-1"), pod("other", node="node2")], refusals=2)
    events = Recorder()
    options = drain.DrainOptions(retry_delay=0.01, poll_interval=0.01)
    taken = asyncio.run(drain.drain_pods(cast(StoreClient, store), "node1", options, events))
    assert [p["metadata"]["name"] for p in taken] == ["web-1"]
    assert store.evictions == ["web-1"] * 3
    assert events.refused_pods == ["web-1", "web-1"]
    retry = [text for text, err in events.lines if err]
    assert retry[0].startswith('error when evicting pods/"web-1" -n "default" (will retry after 10ms): ')
    assert ("pod/web-1 evicted", False) in events.lines


def test_the_base_events_drop_lines_and_dry_run_returns_what_would_go() -> None:
    store = FakeStore([pod("web-1")])
    taken = asyncio.run(drain.drain_pods(cast(StoreClient, store), "node1", drain.DrainOptions(dry_run=True)))
    assert [p["metadata"]["name"] for p in taken] == ["web-1"] and store.evictions == []


def test_cordon_sets_and_clears_unschedulable_and_retries_a_conflict() -> None:
    store = FakeStore([])
    store.conflicts = 1
    client = cast(StoreClient, store)
    assert asyncio.run(drain.cordon(client, "node1")) is True
    assert store.node["spec"] == {"unschedulable": True}
    assert asyncio.run(drain.cordon(client, "node1")) is False, "already cordoned"
    assert asyncio.run(drain.cordon(client, "node1", False)) is True
    assert store.node["spec"] == {}
    store.conflicts = 100
    with pytest.raises(Conflict, match="kept changing"):
        asyncio.run(drain.cordon(client, "node1"))
