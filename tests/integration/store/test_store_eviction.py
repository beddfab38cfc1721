"""The Eviction subresource on a real store server: a PodDisruptionBudget decides, and the decision,
the pod's graceful deletion and the budget's spent disruption are written together."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ambit.store.client import StoreClient
from ambit.store.server import StoreServer, default_schema
from ambit.store.types import NotFound, Obj, TooManyRequests


def pod(name: str, owner: Obj, ready: bool = True) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-1",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": "node1", "containers": [{"name": "c", "image": "x"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


REPLICA_SET: Obj = {
    "apiVersion": "apps/v1",
    "kind": "ReplicaSet",
    "metadata": {"name": "web-1", "namespace": "default"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]},
        },
    },
}


def budget(**spec: Any) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "web-pdb", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, **spec},
    }


@pytest.fixture
async def client() -> AsyncIterator[StoreClient]:
    directory = Path(tempfile.mkdtemp(prefix="ambit-ev-", dir="/tmp"))
    server = StoreServer(directory / "data", directory / "s.sock", schema=default_schema())
    await server.start()
    try:
        async with StoreClient(server.socket_path) as c:
            yield c
    finally:
        await server.close()
        shutil.rmtree(directory, ignore_errors=True)


async def test_the_budget_allows_one_eviction_then_refuses_naming_itself(client: StoreClient) -> None:
    owner = await client.create(REPLICA_SET)
    for name in ("a", "b", "c"):
        await client.create(pod(name, owner))
    await client.create(budget(minAvailable=2))
    status = await client.evict("a", "default", grace_period=7)
    assert status["code"] == 201
    evicted = await client.get("Pod", "a")
    assert evicted["metadata"]["deletionGracePeriodSeconds"] == 7  # marked, terminating: not removed
    assert any(c["type"] == "DisruptionTarget" for c in evicted["status"]["conditions"])
    pdb = await client.get("PodDisruptionBudget", "web-pdb")
    assert pdb["status"]["disruptionsAllowed"] == 0 and "a" in pdb["status"]["disruptedPods"]
    with pytest.raises(TooManyRequests) as refused:
        await client.evict("b", "default")
    assert "disruption budget web-pdb needs 2 healthy pods and has 2 currently" in refused.value.message
    assert refused.value.details and refused.value.details["causes"][0]["reason"] == "DisruptionBudget"
    assert "deletionTimestamp" not in (await client.get("Pod", "b"))["metadata"]


async def test_concurrent_evictions_spend_the_last_disruption_once(client: StoreClient) -> None:
    owner = await client.create(REPLICA_SET)
    for name in ("a", "b", "c"):
        await client.create(pod(name, owner))
    await client.create(budget(maxUnavailable=1))
    outcomes = await asyncio.gather(*(client.evict(n, "default") for n in "abc"), return_exceptions=True)
    assert sum(1 for o in outcomes if isinstance(o, dict)) == 1
    assert sum(1 for o in outcomes if isinstance(o, TooManyRequests)) == 2


async def test_no_budget_evicts_an_unknown_pod_is_not_found(client: StoreClient) -> None:
    owner = await client.create(REPLICA_SET)
    await client.create(pod("a", owner))
    assert (await client.evict("a", "default"))["code"] == 201
    with pytest.raises(NotFound):
        await client.evict("nope", "default")
