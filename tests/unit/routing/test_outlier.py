"""Envoy's consecutive-error outlier detection and circuit-breaker counters, step by step, explicit times."""

from __future__ import annotations

import pytest

from ambit.model.traffic_policy import OutlierDetection
from ambit.routing.outlier import FLAG_UPSTREAM_OVERFLOW, HostState, OutlierTracker, PendingLimiter

HOSTS = ("a", "b", "c", "d")
# interval 10 s, base 30 s, every host may be ejected: the timing cases read easily.
LOOSE = OutlierDetection(consecutive_5xx=3, interval=10.0, base_ejection_time=30.0, max_ejection_percent=100)


def tracker(detection: OutlierDetection = LOOSE, *, start: float = 0.0) -> OutlierTracker:
    t = OutlierTracker(detection, start=start)
    t.ejected(HOSTS, start)  # the pool: four hosts
    return t


def fail(t: OutlierTracker, uid: str, times: int, now: float, status: int | None = 500) -> list[bool]:
    return [t.observe(uid, status, now) for _ in range(times)]


# --- detection ----------------------------------------------------------------------------------


def test_ejected_at_the_nth_consecutive_5xx_and_not_before() -> None:
    t = tracker()
    assert t.observe("a", 500, 1.0) is False
    assert t.ejected(HOSTS, 1.0) == frozenset()
    assert t.observe("a", 503, 2.0) is False
    assert t.ejected(HOSTS, 2.0) == frozenset()
    assert t.observe("a", 502, 3.0) is True, "the third in a row ejects, inline"
    assert t.ejected(HOSTS, 3.0) == {"a"}
    assert t.ejected(["b", "c"], 3.0) == frozenset(), "only the hosts asked about"


def test_a_success_resets_the_count() -> None:
    t = tracker()
    assert fail(t, "a", 2, 1.0) == [False, False]
    assert t.observe("a", 200, 2.0) is False
    assert fail(t, "a", 2, 3.0) == [False, False], "two again: still below three"
    assert t.observe("a", 404, 4.0) is False, "a 4xx is a success for outlier detection"
    assert fail(t, "a", 3, 5.0) == [False, False, True]


def test_hosts_are_counted_apart() -> None:
    t = tracker()
    assert [t.observe(uid, 500, 1.0) for uid in ("a", "b", "a", "b")] == [False] * 4
    assert t.observe("b", 500, 1.0) is True
    assert t.ejected(HOSTS, 1.0) == {"b"}


def test_a_connect_failure_counts_as_a_503() -> None:
    t = tracker()
    assert fail(t, "a", 3, 1.0, status=None) == [False, False, True]


def test_gateway_errors_have_their_own_detector() -> None:
    d = OutlierDetection(consecutive_5xx=None, consecutive_gateway_errors=2, max_ejection_percent=100)
    t = tracker(d)
    assert t.observe("a", 502, 1.0) is False
    assert t.observe("a", 500, 1.0) is False, "a 5xx that is not a gateway error resets that count"
    assert t.observe("a", 504, 1.0) is False
    assert t.observe("a", None, 1.0) is True, "503 (connect failure) and 504 in a row"
    quiet = tracker(d)
    assert fail(quiet, "b", 10, 1.0, status=500) == [False] * 10, "5xx detector off: plain 500s never eject"


def test_the_5xx_detector_off_and_nothing_counts() -> None:
    t = tracker(OutlierDetection(consecutive_5xx=None, max_ejection_percent=100))
    assert fail(t, "a", 20, 1.0, status=None) == [False] * 20


def test_after_a_detection_the_count_starts_again() -> None:
    """The count is reset after a detection even when the cap refused the ejection, so the next
    ejection needs N new errors, not one."""
    t = tracker(OutlierDetection(consecutive_5xx=2, max_ejection_percent=25))
    assert fail(t, "a", 2, 1.0) == [False, True]
    assert fail(t, "b", 2, 1.0) == [False, False], "the cap (1 of 4) refuses b"
    assert t.state(1.0)[1] == HostState("b", False, None, 0, 0, 0, 0), "b's count was reset nonetheless"


# --- the cap and panic --------------------------------------------------------------------------


def test_never_above_max_ejection_percent() -> None:
    t = tracker(OutlierDetection(consecutive_5xx=1, max_ejection_percent=50))
    assert [t.observe(uid, 500, 1.0) for uid in HOSTS] == [True, True, False, False]
    assert t.ejected(HOSTS, 1.0) == {"a", "b"}


def test_istio_default_ten_percent_ejects_nothing_below_ten_hosts() -> None:
    """Envoy's rule: 100 * (ejected + 1) / hosts <= max_ejection_percent; no always_eject_one_host."""
    t = tracker(OutlierDetection(consecutive_5xx=1))  # max_ejection_percent 10
    assert fail(t, "a", 5, 1.0) == [False] * 5
    ten = OutlierTracker(OutlierDetection(consecutive_5xx=1))
    pool = [f"h{i}" for i in range(10)]
    assert ten.observe("h0", 500, 1.0, hosts=10) is True, "10 hosts: one may go"
    assert ten.observe("h1", 500, 1.0, hosts=10) is False, "but not two"
    assert ten.ejected(pool, 1.0) == {"h0"}


def test_the_pool_size_can_be_given() -> None:
    t = OutlierTracker(OutlierDetection(consecutive_5xx=1, max_ejection_percent=50))
    assert t.observe("a", 500, 1.0, hosts=1) is False, "one host of one is 100 %"
    assert t.observe("a", 500, 1.0, hosts=2) is True


def test_ejected_recaps_a_pool_that_shrank() -> None:
    t = tracker(OutlierDetection(consecutive_5xx=1, max_ejection_percent=50))
    t.observe("b", 500, 1.0)
    t.observe("a", 500, 2.0)
    assert t.ejected(["a", "b", "c"], 3.0) == {"b"}, "50 % of three is one: the one ejected first"


def test_min_health_percent_is_the_panic_threshold() -> None:
    d = OutlierDetection(consecutive_5xx=1, max_ejection_percent=100, min_health_percent=50)
    t = tracker(d)
    t.observe("a", 500, 1.0)
    assert t.ejected(HOSTS, 1.0) == {"a"}
    t.observe("b", 500, 1.0)
    assert t.ejected(HOSTS, 1.0) == {"a", "b"}, "half left: not below 50 %"
    t.observe("c", 500, 1.0)
    assert t.ejected(HOSTS, 1.0) == frozenset(), "a quarter left: panic, every host is used"


# --- return and the multiplier ------------------------------------------------------------------


def test_back_after_base_ejection_time_at_a_sweep() -> None:
    t = tracker()
    fail(t, "a", 3, 10.0)  # ejected at 10, for 30 s: returns at the sweep of 40
    assert t.ejected(HOSTS, 39.9) == {"a"}
    assert t.ejected(HOSTS, 40.0) == frozenset()
    assert t.state(40.0)[0] == HostState("a", False, None, 1, 1, 0, 0)


def test_return_waits_for_the_next_interval_sweep() -> None:
    """Envoy returns hosts only in its interval sweep (every 10 s from the start), not at once."""
    t = tracker()
    fail(t, "a", 3, 5.0)  # 30 s would end at 35; the sweeps are at 10, 20, 30, 40
    assert t.state(35.0)[0].returns_at == 40.0
    assert t.ejected(HOSTS, 39.0) == {"a"}
    assert t.ejected(HOSTS, 40.0) == frozenset()
    late = tracker(start=3.0)  # sweeps at 13, 23, 33, 43
    fail(late, "a", 3, 5.0)
    assert late.ejected(HOSTS, 42.9) == {"a"}
    assert late.ejected(HOSTS, 43.0) == frozenset()


def test_ejected_again_soon_lasts_base_times_the_count() -> None:
    t = tracker()
    fail(t, "a", 3, 10.0)  # 1st: 30 s, back at 40
    assert t.ejected(HOSTS, 40.0) == frozenset()
    assert fail(t, "a", 3, 45.0) == [False, False, True], "the counts were reset at the return"
    assert t.state(45.0)[0].multiplier == 2
    assert t.state(45.0)[0].returns_at == 110.0, "2 x 30 s from 45 is 105: the sweep of 110"
    assert t.ejected(HOSTS, 109.0) == {"a"}
    assert t.ejected(HOSTS, 110.0) == frozenset()
    fail(t, "a", 3, 111.0)  # 3rd, right after: 90 s
    assert t.state(111.0)[0].returns_at == 210.0


def test_the_multiplier_decays_one_per_healthy_interval() -> None:
    t = tracker()
    fail(t, "a", 3, 10.0)  # m=1, back at 40
    fail(t, "a", 3, 40.0)  # m=2 (no healthy sweep since the return), back at 100
    assert t.state(100.0)[0] == HostState("a", False, None, 2, 2, 0, 0)
    assert t.state(109.9)[0].multiplier == 2, "the sweep of the return does not count"
    assert t.state(110.0)[0].multiplier == 1, "one interval after the return"
    assert t.state(120.0)[0].multiplier == 0
    fail(t, "a", 3, 125.0)
    assert t.state(125.0)[0].multiplier == 1, "forgiven: the next ejection is base again"
    assert t.state(125.0)[0].returns_at == 160.0  # 125 + 30 = 155: the sweep of 160
    assert t.state(1000.0)[0].multiplier == 0, "never below 0"


def test_the_ejection_time_stops_growing_at_max_ejection_time() -> None:
    t = tracker(
        OutlierDetection(consecutive_5xx=1, interval=1.0, base_ejection_time=100.0, max_ejection_percent=100)
    )
    now = 0.5
    durations = []
    for _ in range(6):
        assert t.observe("a", 500, now) is True
        back = t.state(now)[0].returns_at
        assert back is not None
        durations.append(back - now)
        now = back  # fail again at the very sweep that returns it
    # max_ejection_time = max(300 s, base): 100 (+0.5 s to the first sweep), 200, 300, 300, ...
    assert durations == [100.5, 200.0, 300.0, 300.0, 300.0, 300.0]
    assert t.state(now)[0].multiplier == 4, "Envoy stops at m * base >= max + base"


def test_an_ejected_host_is_not_ejected_twice() -> None:
    t = tracker()
    fail(t, "a", 3, 1.0)
    assert fail(t, "a", 6, 2.0) == [False] * 6, "in-flight failures of an ejected host change nothing"
    assert t.state(2.0)[0].ejections == 1
    assert t.ejected(HOSTS, 39.0) == {"a"}, "ejected once: 30 s from 1, the sweep of 40"
    assert t.ejected(HOSTS, 40.0) == frozenset()


def test_time_never_goes_backwards() -> None:
    t = tracker()
    fail(t, "a", 3, 50.0)
    assert t.ejected(HOSTS, 10.0) == {"a"}, "an earlier now is taken as the latest seen"


def test_retain_forgets_hosts_that_left() -> None:
    t = tracker()
    fail(t, "a", 2, 1.0)
    t.retain(["b", "c"])
    assert [s.uid for s in t.state(1.0)] == []
    assert fail(t, "a", 2, 2.0) == [False, False], "a comes back with a fresh count"


# --- the circuit-breaker counter ----------------------------------------------------------------


def test_pending_limiter() -> None:
    limiter = PendingLimiter(2)
    assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
    assert (limiter.in_use, limiter.overflows) == (2, 1)
    limiter.release()
    assert limiter.try_acquire() is True
    limiter.resize(1)
    assert limiter.try_acquire() is False, "what is held counts against a smaller limit"
    limiter.release()
    limiter.release()
    assert limiter.try_acquire() is True
    assert FLAG_UPSTREAM_OVERFLOW == "UO"


def test_unlimited_limiter_and_misuse() -> None:
    unlimited = PendingLimiter(None)
    assert all(unlimited.try_acquire() for _ in range(1000))
    assert unlimited.overflows == 0
    with pytest.raises(RuntimeError, match="without a matching"):
        PendingLimiter(1).release()
    with pytest.raises(ValueError, match="at least 1"):
        PendingLimiter(0)
