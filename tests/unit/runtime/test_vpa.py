"""The VPA recommender: decaying histograms, memory peaks, estimators and the recommendation."""

from __future__ import annotations

import math

import pytest

from ambit.runtime.vpa import (
    DAY,
    VpaState,
    add_sample,
    cpu_histogram,
    estimate,
    memory_histogram,
    recommend,
    remove_pod,
)

T0 = 1_700_000_000.0
MB = 1e6


def a_minute_of(cores: float, memory: float, pod: str = "web-1", container: str = "app") -> VpaState:
    state = VpaState()
    for i in range(13):  # every 5 s for a minute
        add_sample(state, pod, container, T0 + 5 * i, cpu_cores=cores, memory_bytes=memory)
    return state


def test_exponential_buckets_match_the_vpa_options() -> None:
    cpu = cpu_histogram()
    assert cpu.num_buckets == 176  # ceil(log_1.05(1000 × 0.05 / 0.01 + 1)) + 1
    assert memory_histogram().num_buckets == 176
    assert cpu.bucket(0.005) == 0
    assert cpu.bucket(0.1) == 8  # floor(log_1.05(0.1 × 0.05 / 0.01 + 1)) = floor(8.31)
    assert cpu.bucket_start(9) == pytest.approx(0.01 * (1.05**9 - 1) / 0.05)
    assert cpu.bucket(5000.0) == 175  # clamped to the last bucket
    # a percentile is the start of the next bucket
    cpu.add(0.1, 0.1, T0)
    assert cpu.percentile(0.5) == pytest.approx(0.1102656432)


def test_samples_decay_with_a_day_half_life() -> None:
    hist = cpu_histogram()
    hist.add(0.1, 1.0, T0)
    hist.add(1.0, 1.0, T0 + DAY)
    old, new = hist.weights[hist.bucket(0.1)], hist.weights[hist.bucket(1.0)]
    assert new / old == pytest.approx(2.0)
    # two-thirds of the weight is the newer sample: the median is in its bucket
    assert hist.percentile(0.5) == pytest.approx(hist.bucket_start(hist.bucket(1.0) + 1))
    assert hist.percentile(0.3) == pytest.approx(hist.bucket_start(hist.bucket(0.1) + 1))


def test_a_recommendation_exists_after_a_minute_of_samples() -> None:
    state = a_minute_of(0.1, 100 * MB)
    assert recommend(state, T0 + 60) == {
        "containerRecommendations": [
            {
                "containerName": "app",
                # p90: 0.1103 cores → 110m, + 15 % → 126m; memory p90 + 15 % < 250Mi → the minimum
                "target": {"cpu": "126m", "memory": "250Mi"},
                # a minute of history: lower bound × (1 + 0.001/c)^-2 ≈ 0.17 → the 25m minimum
                "lowerBound": {"cpu": "25m", "memory": "250Mi"},
                # upper bound × (1 + 1/c) with c = 60 s / 24 h
                "upperBound": {"cpu": "181566m", "memory": "182726709649"},
                "uncappedTarget": {"cpu": "126m", "memory": "250Mi"},
            }
        ]
    }


def test_the_recommendation_grows_with_load() -> None:
    light = recommend(a_minute_of(0.1, 100 * MB), T0 + 60)["containerRecommendations"][0]
    heavy = recommend(a_minute_of(0.5, 600 * MB), T0 + 60)["containerRecommendations"][0]
    assert light["target"] == {"cpu": "126m", "memory": "250Mi"}
    # 0.5 cores falls in the bucket [0.4863, 0.5107): 511m + 15 % = 587m; 600 MB peaks: 623.2 MB + 15 %
    assert heavy["target"] == {"cpu": "587m", "memory": "716711186"}
    assert heavy["lowerBound"]["cpu"] == "98m"


def test_confidence_narrows_the_bounds_with_history() -> None:
    state = VpaState()
    for minute in range(2 * 24 * 60):  # two days, one sample a minute
        add_sample(state, "web-1", "app", T0 + 60 * minute, cpu_cores=1.0, memory_bytes=500 * MB)
    result = estimate(state.containers["app"])
    base = math.floor(state.containers["app"].cpu.percentile(0.5) * 1000)
    with_margin = base + math.floor(base * 0.15)
    confidence = (2 * 24 * 60 - 1) / (24 * 60)  # days between the first and last sample
    assert result.lower_bound.cpu == math.floor(with_margin * (1 + 0.001 / confidence) ** -2)
    upper_base = math.floor(state.containers["app"].cpu.percentile(0.95) * 1000)
    upper_with_margin = upper_base + math.floor(upper_base * 0.15)
    assert result.upper_bound.cpu == math.floor(upper_with_margin * (1 + 1 / confidence))
    assert result.target.cpu == 1168  # bucket end 1.0163 cores → 1016m + 152m
    # two days: the lower bound has nearly converged, the upper is still half again the base
    assert (result.lower_bound.cpu, result.upper_bound.cpu) == (1166, 1752)


def test_one_memory_peak_per_interval_per_container_instance() -> None:
    state = VpaState()
    add_sample(state, "web-1", "app", T0, memory_bytes=100 * MB)
    add_sample(state, "web-1", "app", T0 + 60, memory_bytes=300 * MB)
    add_sample(state, "web-1", "app", T0 + 120, memory_bytes=200 * MB)
    peaks = state.containers["app"].memory_peaks
    assert peaks.total == pytest.approx(peaks.weights[peaks.bucket(300 * MB)])  # only the 300 MB peak
    assert peaks.bucket(300 * MB) == peaks.max_bucket == peaks.min_bucket
    # a sample in the next day's interval adds a second peak
    add_sample(state, "web-1", "app", T0 + DAY + 1, memory_bytes=50 * MB)
    assert peaks.weights[peaks.bucket(50 * MB)] > 0
    assert peaks.max_bucket == peaks.bucket(300 * MB)
    # another pod's container keeps its own peak in the same aggregate
    add_sample(state, "web-2", "app", T0 + 10, memory_bytes=400 * MB)
    assert peaks.max_bucket == peaks.bucket(400 * MB)
    # out-of-order and duplicate CPU samples are dropped
    add_sample(state, "web-1", "app", T0 + 5, cpu_cores=0.2)
    add_sample(state, "web-1", "app", T0 + 5, cpu_cores=0.2)
    add_sample(state, "web-1", "app", T0 + 1, cpu_cores=0.2)
    assert state.containers["app"].samples == 1
    remove_pod(state, "web-1")
    assert list(state.instances) == [("web-2", "app")]


def test_minimums_are_shared_between_containers() -> None:
    state = VpaState()
    for i in range(13):
        add_sample(state, "web-1", "app", T0 + 5 * i, cpu_cores=0.001, memory_bytes=MB)
        add_sample(state, "web-1", "proxy", T0 + 5 * i, cpu_cores=0.001, memory_bytes=MB)
    recs = recommend(state, T0 + 60)["containerRecommendations"]
    assert [r["containerName"] for r in recs] == ["app", "proxy"]
    assert recs[0]["target"] == {"cpu": "12m", "memory": "125Mi"}  # 25m and 250Mi split in two


def test_resource_policy_caps_the_target_but_not_the_uncapped_target() -> None:
    state = a_minute_of(0.5, 600 * MB)
    add_sample(state, "web-1", "debug", T0, cpu_cores=0.1)
    policy = {
        "containerPolicies": [
            {"containerName": "app", "maxAllowed": {"cpu": "300m"}, "minAllowed": {"memory": "1Gi"}},
            {"containerName": "*", "mode": "Off"},
        ]
    }
    recs = recommend(state, T0 + 60, policy)["containerRecommendations"]
    assert [r["containerName"] for r in recs] == ["app"]
    assert recs[0]["target"] == {"cpu": "300m", "memory": "1Gi"}
    assert recs[0]["uncappedTarget"] == {"cpu": "587m", "memory": "716711186"}
    assert recs[0]["upperBound"]["cpu"] == "300m"
    only_cpu = {"containerPolicies": [{"containerName": "*", "controlledResources": ["cpu"]}]}
    recs = recommend(state, T0 + 60, only_cpu)["containerRecommendations"]
    assert recs[0]["target"] == {"cpu": "587m"}
    # two containers share the minimums now
    assert recs[1]["target"] == {"cpu": "126m"}


def test_expired_aggregates_are_dropped() -> None:
    state = a_minute_of(0.1, 100 * MB)
    assert recommend(state, T0 + 8 * DAY - 1)["containerRecommendations"]
    assert recommend(state, T0 + 8 * DAY + 60) == {"containerRecommendations": []}
    assert state.containers == {}


def test_confidence_counts_samples_as_well_as_lifespan() -> None:
    # two samples a day apart: a day of lifespan but only 2 of the 1440 samples a day would bring
    state = VpaState()
    add_sample(state, "web-1", "app", T0, cpu_cores=1.0)
    add_sample(state, "web-1", "app", T0 + DAY, cpu_cores=1.0)
    result = estimate(state.containers["app"])
    assert result.target.cpu == 1168
    assert result.upper_bound.cpu == math.floor(1168 * (1 + 1 / (2 / 1440)))
