"""The one rule for a condition's lastTransitionTime, shared by the waypoint and the route status."""

from __future__ import annotations

import pytest

from ambit.control.status_conditions import (
    ON_STATUS,
    ON_STATUS_OR_REASON,
    find_condition,
    generation_of,
    stamped,
)

T0, T1 = "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z"
BEFORE = {"type": "Ready", "status": "False", "reason": "A", "message": "m", "lastTransitionTime": T0}


@pytest.mark.parametrize(
    ("verdict", "moves_on", "since"),
    [
        (("False", "A", "other message"), ON_STATUS, T0),
        (("False", "A", "other message"), ON_STATUS_OR_REASON, T0),
        (("False", "B", "m"), ON_STATUS, T0),
        (("False", "B", "m"), ON_STATUS_OR_REASON, T1),
        (("True", "A", "m"), ON_STATUS, T1),
        (("True", "A", "m"), ON_STATUS_OR_REASON, T1),
    ],
)
def test_the_time_moves_only_on_a_transition(
    verdict: tuple[str, str, str], moves_on: tuple[str, ...], since: str
) -> None:
    condition = stamped("Ready", verdict, before=BEFORE, generation=3, now=T1, moves_on=moves_on)
    assert condition == {
        "type": "Ready",
        "status": verdict[0],
        "reason": verdict[1],
        "message": verdict[2],
        "observedGeneration": 3,
        "lastTransitionTime": since,
    }


@pytest.mark.parametrize("before", [None, {"type": "Ready", "status": "False", "reason": "A"}])
def test_a_new_condition_or_one_without_a_time_takes_now(before: dict[str, str] | None) -> None:
    condition = stamped("Ready", ("False", "A", "m"), before=before, generation=1, now=T1)
    assert condition["lastTransitionTime"] == T1


def test_helpers() -> None:
    assert generation_of({"metadata": {"generation": 7}}) == 7
    assert generation_of({"metadata": {}}) == 1
    assert find_condition([{"type": "A"}, "junk", {"type": "B", "x": 1}], "B") == {"type": "B", "x": 1}
    assert find_condition([], "B") is None
