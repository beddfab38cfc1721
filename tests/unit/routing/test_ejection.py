"""Outlier ejection of waypoint replicas: 5 s base, doubling, at most 60 s, never more than half."""

from __future__ import annotations

import pytest

from ambit.routing.ejection import Ejections


def test_ejection_doubles_from_five_seconds_up_to_sixty() -> None:
    ejections = Ejections()
    durations = []
    now = 0.0
    for _ in range(7):
        e = ejections.failed("wp-1", now, "refused")
        durations.append(e.until - now)
        now = e.until - 1  # fails again while still ejected
    assert durations == [5, 10, 20, 40, 60, 60, 60]


def test_success_ends_the_ejection_and_resets_the_count() -> None:
    ejections = Ejections()
    ejections.failed("wp-1", 0.0, "refused")
    ejections.failed("wp-1", 1.0, "refused")
    ejections.succeeded("wp-1")
    assert ejections.ejected(["wp-1", "wp-2"], 2.0) == frozenset()
    assert ejections.failed("wp-1", 3.0, "refused").until == 8.0


def test_a_long_forgiven_failure_starts_the_count_again() -> None:
    ejections = Ejections()
    ejections.failed("wp-1", 0.0, "timeout")
    assert ejections.failed("wp-1", 100.0, "timeout").failures == 1  # 5 s + 60 s later: forgiven


@pytest.mark.parametrize(("replicas", "limit"), [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2)])
def test_never_more_than_half_are_ejected(replicas: int, limit: int) -> None:
    ejections = Ejections()
    uids = [f"wp-{i}" for i in range(replicas)]
    for i, uid in enumerate(uids):
        ejections.failed(uid, float(i), "refused")
    ejected = ejections.ejected(uids, 4.5)
    assert len(ejected) == limit
    # the ones ejected longest (the latest failures) are the ones that count
    assert ejected == frozenset(uids[replicas - limit :])


def test_expired_ejection_no_longer_counts_and_leaves_the_dump() -> None:
    ejections = Ejections()
    ejections.failed("wp-1", 0.0, "refused")
    assert ejections.ejected(["wp-1", "wp-2"], 4.9) == {"wp-1"}
    assert [e.uid for e in ejections.snapshot(4.9)] == ["wp-1"]
    assert ejections.ejected(["wp-1", "wp-2"], 5.0) == frozenset()
    assert ejections.snapshot(5.0) == []
