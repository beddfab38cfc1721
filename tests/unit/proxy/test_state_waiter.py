"""StateWaiter: the sync gate a proxy holds connections and pod starts on."""

from __future__ import annotations

import asyncio

from ambit.model.workload import TunnelProtocol, Workload
from ambit.proxy.state_waiter import StateWaiter
from ambit.state.snapshot import resource_name
from ambit.state.store import StateStore

B = Workload("b", "b", "default", "web", "n2", ("10.244.2.3",), TunnelProtocol.HBONE)


async def test_state_waiter_gates_on_sync_and_the_pods_record() -> None:
    store = StateStore()
    waiter = StateWaiter(store)
    assert waiter.ready("b") is None
    assert await waiter.wait_ready("b", 0.05) is None

    async def later() -> None:
        await asyncio.sleep(0.02)
        store.apply({resource_name(B): ("1", B)})
        await asyncio.sleep(0.02)
        waiter.mark_synced()

    task = asyncio.ensure_future(later())
    snapshot = await waiter.wait_ready("b", 5.0)
    assert snapshot is not None and "b" in snapshot.workloads
    assert waiter.synced
    await task
    waiter.close()


async def test_waiting_counts_the_callers_held_at_the_gate() -> None:
    store = StateStore()
    waiter = StateWaiter(store)
    assert waiter.waiting == 0
    held = asyncio.ensure_future(waiter.wait_ready("b", 5.0))
    await asyncio.sleep(0)  # one loop iteration: the task reaches the gate and waits there
    assert waiter.waiting == 1
    store.apply({resource_name(B): ("1", B)})
    waiter.mark_synced()
    assert await held is not None
    assert waiter.waiting == 0
    assert await waiter.wait_ready("b", 0.01) is not None and waiter.waiting == 0  # ready: never held
    waiter.close()
