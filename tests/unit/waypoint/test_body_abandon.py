"""``BodyStream.abandon``: a reader that stops tells the producer, which must never hang on it."""

from __future__ import annotations

import asyncio

import pytest

from ambit.waypoint.exchange import BodyError, BodyStream


async def test_abandon_wakes_a_waiting_producer_and_drops_later_data() -> None:
    body = BodyStream(limit=4)
    calls: list[str] = []
    body.on_abandon(lambda: calls.append("first"))
    feeding = asyncio.ensure_future(body.feed(b"0123456789"))  # over the limit: waits for the reader
    await asyncio.sleep(0)
    assert not feeding.done()
    body.abandon()
    await asyncio.wait_for(feeding, 1)
    assert body.abandoned and body.done
    assert calls == ["first"]
    await body.feed(b"more")  # nothing happens, nothing raises
    body.finish([(b"x", b"y")])
    assert body.trailers == []
    with pytest.raises(BodyError):
        await body.read_all(100)


async def test_on_abandon_after_the_fact_runs_at_once_and_abandon_runs_callbacks_once() -> None:
    body = BodyStream()
    body.abandon()
    calls: list[int] = []
    body.on_abandon(lambda: calls.append(1))
    body.abandon()
    assert calls == [1]


async def test_abandoning_a_finished_body_keeps_its_outcome_for_the_producer() -> None:
    body = BodyStream.of(b"done", [(b"grpc-status", b"0")])
    body.abandon()
    assert body.done and body.abandoned
    assert body.trailers == [(b"grpc-status", b"0")]
