"""Istio's durations: Go's time.ParseDuration syntax, and istiod's at-least-1ms, whole-ms rule."""

from __future__ import annotations

import pytest

from ambit.resources.durations import check_istio_duration, parse_go_duration, parse_go_nanos


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m", 60.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("5.s", 5.0),
        ("2h45m30.5s", 9930.5),
        ("1500us", 0.0015),
        ("1500\u00b5s", 0.0015),
        ("1500\u03bcs", 0.0015),
        ("1000000ns", 0.001),
        ("0", 0.0),
        ("+3s", 3.0),
        ("-3s", -3.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "10", "s", ".s", "1d", "1 s", "1S", "1m-1s", "--1s", "1.2.3s", "9" * 30 + "h"]
)
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_exact_nanoseconds() -> None:
    assert parse_go_nanos("1.000000001s") == 1_000_000_001
    assert parse_go_nanos("0.1ns") == 0, "Go drops fractions of a nanosecond"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("10s", None),
        ("1ms", None),
        ("1.5s", None),
        ("0.5ms", "must be at least 1ms"),
        ("0s", "must be at least 1ms"),
        ("-1s", "must be at least 1ms"),
        ("1.5ms", "only durations to ms precision"),
        ("10", "is not a duration"),
    ],
)
def test_istio_rule(text: str, problem: str | None) -> None:
    found = check_istio_duration(text)
    assert (found is None) if problem is None else (found is not None and problem in found)
