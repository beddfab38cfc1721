"""The restart write and the rollout-complete test shared by ``ambit rollout restart`` and the chaos
experiment ``app-rollout``."""

from __future__ import annotations

import asyncio
import copy
from typing import Any, cast

import pytest

from ambit.runtime.deployment_revisions import RESTARTED_AT, RolloutError
from ambit.runtime.rollout import KeptChanging, RestartTooSoon, restart_deployment, rolled_out
from ambit.store.client import StoreClient
from ambit.store.types import Conflict

STAMP = "2030-01-01T00:00:00Z"


def deployment(*, paused: bool = False, status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "generation": 2},
        "spec": {
            "replicas": 1,
            "paused": paused,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a"}]}},
        },
        "status": status or {},
    }


class FakeStore:
    def __init__(self, obj: dict[str, Any], conflicts: int = 0) -> None:
        self.obj = obj
        self.conflicts = conflicts
        self.writes = 0

    async def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return copy.deepcopy(self.obj)

    async def update(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict("changed")
        self.obj = obj
        return obj


def restart(store: FakeStore) -> dict[str, Any]:
    return asyncio.run(restart_deployment(cast(StoreClient, store), "web", "default", STAMP))


def test_restart_sets_restarted_at_retrying_a_conflict() -> None:
    store = FakeStore(deployment(), conflicts=2)
    stored = restart(store)
    assert stored["spec"]["template"]["metadata"]["annotations"] == {RESTARTED_AT: STAMP}
    assert store.writes == 3


def test_restart_refusals() -> None:
    store = FakeStore(deployment())
    restart(store)
    with pytest.raises(RestartTooSoon):
        restart(store)
    with pytest.raises(RolloutError, match="paused"):
        restart(FakeStore(deployment(paused=True)))
    with pytest.raises(KeptChanging):
        restart(FakeStore(deployment(), conflicts=100))


def test_rolled_out_follows_rollout_status() -> None:
    unseen = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    assert not rolled_out(deployment(status=unseen)), "the controller has not seen the restart yet"
    old_left = {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}
    assert not rolled_out(deployment(status=old_left))
    done = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    assert rolled_out(deployment(status=done))
