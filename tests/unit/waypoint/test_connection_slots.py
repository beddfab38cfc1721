"""ConnectionSlots: tcp.maxConnections with a bounded pending queue (FIFO), cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from ambit.waypoint.connection_slots import ConnectionSlots


async def test_a_full_pool_queues_then_overflows_and_a_release_passes_the_slot_on() -> None:
    slots = ConnectionSlots(1, max_pending=1)
    assert await slots.acquire()
    waiting = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    assert slots.pending == 1
    assert not await slots.acquire(), "the queue is full: an overflow"
    assert slots.overflows == 1
    slots.release()
    assert await waiting and slots.in_use == 1, "the freed slot went straight to the waiter"
    slots.release()
    assert slots.in_use == 0


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    slots = ConnectionSlots(1, max_pending=1)
    assert await slots.acquire()
    first = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert slots.pending == 0
    second = asyncio.ensure_future(slots.acquire())  # the place is free again: it queues, not overflows
    await asyncio.sleep(0)
    slots.release()
    assert await second and slots.in_use == 1 and slots.overflows == 0


async def test_without_a_pending_limit_every_request_waits() -> None:
    slots = ConnectionSlots(1, max_pending=None)
    assert await slots.acquire()
    waiters = [asyncio.ensure_future(slots.acquire()) for _ in range(5)]
    await asyncio.sleep(0)
    assert slots.pending == 5 and slots.overflows == 0
    for _ in range(5):
        slots.release()
        await asyncio.sleep(0)
    assert all(w.result() for w in waiters)


def test_a_release_without_an_acquire_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        ConnectionSlots(1, 1).release()
