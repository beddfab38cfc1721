"""HPA decisions: Kubernetes' replica calculator, behavior, conditions and kubectl's TARGETS column."""

from __future__ import annotations

import copy
from typing import Any

from ambit.runtime.hpa import (
    HpaConfig,
    HpaEvent,
    HpaHistory,
    PodSample,
    canonical_quantity,
    desired_replicas,
    format_milli_quantity,
    format_targets,
    pod_requests,
    reconcile,
    rfc3339,
)

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def cpu_hpa(target: int = 50, low: int = 1, high: int = 10, **spec: Any) -> dict[str, Any]:
    metric = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
    }
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [metric],
            **spec,
        },
    }


def pods_metric(name: str = "rps", target: str = "100m") -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {"metric": {"name": name}, "target": {"type": "AverageValue", "averageValue": target}},
    }


def pods_hpa(target: str = "100m", low: int = 1, high: int = 10, **spec: Any) -> dict[str, Any]:
    hpa = cpu_hpa(low=low, high=high, **spec)
    hpa["spec"]["metrics"] = [pods_metric(target=target)]
    return hpa


def cpu_pods(*usage: float | None, request: float = 1.0, **fields: Any) -> list[PodSample]:
    return [
        PodSample(f"web-{i}", cpu_cores=cores, requests={"cpu": request, "memory": 2**28}, **fields)
        for i, cores in enumerate(usage)
    ]


def rps_pods(*values: float) -> list[PodSample]:
    return [PodSample(f"web-{i}", metrics={"rps": v}) for i, v in enumerate(values)]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def limited(status: dict[str, Any]) -> tuple[str, str, str]:
    for c in status["conditions"]:
        if c["type"] == "ScalingLimited":
            return c["status"], c["reason"], c["message"]
    raise AssertionError("no ScalingLimited condition")


# --- the documented worked examples ---------------------------------------------------------------


def test_current_twice_the_target_doubles_the_replicas_with_kubernetes_status() -> None:
    """HPA docs: 200m current / 100m desired → twice the replicas."""
    decision = reconcile(pods_hpa("100m"), 3, rps_pods(0.2, 0.2, 0.2), HpaHistory(), now=T0)
    assert decision.replicas == 6
    stamp = "2023-11-14T22:13:20Z"
    assert decision.status == {
        "lastScaleTime": stamp,
        "currentReplicas": 3,
        "desiredReplicas": 6,
        "currentMetrics": [
            {"type": "Pods", "pods": {"metric": {"name": "rps"}, "current": {"averageValue": "200m"}}}
        ],
        "conditions": [
            {
                "type": "AbleToScale",
                "status": "True",
                "lastTransitionTime": stamp,
                "reason": "SucceededRescale",
                "message": "the HPA controller was able to update the target scale to 6",
            },
            {
                "type": "ScalingActive",
                "status": "True",
                "lastTransitionTime": stamp,
                "reason": "ValidMetricFound",
                "message": "the HPA was able to successfully calculate a replica count from pods metric rps",
            },
            {
                "type": "ScalingLimited",
                "status": "False",
                "lastTransitionTime": stamp,
                "reason": "DesiredWithinRange",
                "message": "the desired count is within the acceptable range",
            },
        ],
    }
    assert decision.events == (
        HpaEvent("Normal", "SuccessfulRescale", "New size: 6; reason: pods metric rps above target"),
    )


def test_current_half_the_target_halves_the_replicas() -> None:
    outcome = desired_replicas(pods_hpa("100m")["spec"], 6, rps_pods(*[0.05] * 6), now=T0)
    assert outcome.replicas == 3
    assert outcome.statuses[0]["pods"]["current"] == {"averageValue": "50m"}


def test_ratio_within_the_tolerance_keeps_the_replicas() -> None:
    hpa = pods_hpa("100m")
    decision = reconcile(hpa, 4, rps_pods(0.105, 0.105, 0.105, 0.105), HpaHistory(), now=T0)
    assert decision.replicas is None
    assert decision.status["desiredReplicas"] == 4
    assert "lastScaleTime" not in decision.status
    assert conditions(decision.status)["AbleToScale"] == ("True", "ReadyForNewScale")
    # 1.05 is outside a 1 % scale-up tolerance: ceil(1.05 × 4) = 5
    hpa["spec"]["behavior"] = {"scaleUp": {"tolerance": "0.01"}}
    assert reconcile(hpa, 4, rps_pods(0.105, 0.105, 0.105, 0.105), HpaHistory(), now=T0).replicas == 5
    # the bounds are inclusive: exactly 0.9 stays (else ceil(0.9 × 10) = 9)
    assert desired_replicas(pods_hpa("100m")["spec"], 10, rps_pods(*[0.09] * 10), now=T0).replicas == 10
    # ... and 0.95 inside a 10 % scale-down tolerance even then
    assert desired_replicas(hpa["spec"], 4, rps_pods(*[0.095] * 4), now=T0).replicas == 4


def test_cpu_utilization_is_the_sum_of_usage_over_the_sum_of_requests() -> None:
    pods = cpu_pods(0.45, 0.45, request=0.5)
    decision = reconcile(cpu_hpa(50), 2, pods, HpaHistory(), now=T0)
    assert decision.replicas == 4  # 90 % / 50 % = 1.8, ceil(1.8 × 2)
    assert decision.status["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 90, "averageValue": "450m"}},
        }
    ]
    # utilization is an integer percentage: 1 core of 3 is 33 %, not 33.3 %
    outcome = desired_replicas(cpu_hpa(50)["spec"], 3, cpu_pods(0.5, 0.25, 0.25), now=T0)
    assert outcome.statuses[0]["resource"]["current"] == {"averageUtilization": 33, "averageValue": "333m"}
    assert outcome.replicas == 2  # 0.66 × 3 = 1.98


def test_memory_average_value_target_and_binary_quantity() -> None:
    hpa = cpu_hpa()
    hpa["spec"]["metrics"] = [
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}},
        }
    ]
    pods = [PodSample(f"web-{i}", memory_bytes=200 * 2**20) for i in range(2)]
    outcome = desired_replicas(hpa["spec"], 2, pods, now=T0)
    assert outcome.replicas == 4
    assert outcome.statuses == [
        {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "200Mi"}}}
    ]
    assert outcome.metric == "memory resource"


# --- missing metrics, unready pods ----------------------------------------------------------------


def test_missing_metrics_count_as_full_usage_on_a_scale_down() -> None:
    # 5 pods at 10 % and one without a sample: 10 % / 50 % alone would ask for ceil(0.2 × 5) = 1;
    # the missing pod at 100 % makes it (5 × 100m + 1000m) / 6 cores = 25 %, ceil(0.5 × 6) = 3
    pods = cpu_pods(0.1, 0.1, 0.1, 0.1, 0.1, None)
    assert desired_replicas(cpu_hpa(50)["spec"], 6, pods, now=T0).replicas == 3
    # Above-100 % targets: missing pods are assumed at the target instead; (1000m + 2000m) / 3 cores
    # = 100 % of a 200 % target → ceil(0.5 × 3) = 2 (at 100 % it would have been 66 % → 1)
    pods = cpu_pods(0.5, 0.5, None)
    assert desired_replicas(cpu_hpa(200)["spec"], 3, pods, now=T0).replicas == 2


def test_missing_metrics_count_as_zero_on_a_scale_up_and_never_flip_the_direction() -> None:
    # one pod at 120 % of a 100 % target, three without samples: with them at 0 it is 30 %, a
    # scale-down, so the count stays (the pod alone would have asked for ceil(1.2 × 1) = 2)
    pods = cpu_pods(1.2, None, None, None)
    assert desired_replicas(cpu_hpa(100)["spec"], 4, pods, now=T0).replicas == 4
    # 3 pods at 100 % (ratio 2.0) and one missing at 0: 75 % / 50 % = 1.5, ceil(1.5 × 4) = 6
    pods = cpu_pods(1.0, 1.0, 1.0, None)
    assert desired_replicas(cpu_hpa(50)["spec"], 4, pods, now=T0).replicas == 6


def test_missing_pods_metric_counts_as_the_target_on_a_scale_down() -> None:
    # 3 pods at 20m of a 100m target, one missing at 100m: 160m / 4 = 40m, ceil(0.4 × 4) = 2
    pods = [*rps_pods(0.02, 0.02, 0.02), PodSample("web-9")]
    assert desired_replicas(pods_hpa("100m")["spec"], 4, pods, now=T0).replicas == 2


def test_unready_pods_count_as_zero_on_a_cpu_scale_up() -> None:
    never_ready = {"ready": False, "started_at": T0 - 3600, "ready_since": T0 - 3590}
    pods = [
        *cpu_pods(0.6, 0.6),
        *(PodSample(f"new-{i}", cpu_cores=0.9, requests={"cpu": 1.0}, **never_ready) for i in range(2)),
    ]
    # ready pods at 60 % of 50 % (1.2); the unready ones at 0 make it 30 %: no scale-down either
    assert desired_replicas(cpu_hpa(50)["spec"], 4, pods, now=T0).replicas == 4
    # On a scale-down they are simply left out: 10 % / 50 % over the 2 ready pods
    pods = [
        *cpu_pods(0.1, 0.1),
        *(PodSample(f"new-{i}", cpu_cores=0.9, requests={"cpu": 1.0}, **never_ready) for i in range(2)),
    ]
    assert desired_replicas(cpu_hpa(50)["spec"], 4, pods, now=T0).replicas == 1


def test_cpu_samples_of_initializing_pods_wait_a_metric_window() -> None:
    spec = cpu_hpa(50)["spec"]
    fresh = PodSample("new", cpu_cores=1.0, requests={"cpu": 1.0}, started_at=T0 - 60, ready_since=T0 - 5)
    settled = PodSample("new", cpu_cores=1.0, requests={"cpu": 1.0}, started_at=T0 - 60, ready_since=T0 - 20)
    base = cpu_pods(0.6, 0.6)
    # became ready 5 s ago (inside the 15 s window): its 100 % is ignored, counted as 0 on the scale-up
    assert desired_replicas(spec, 3, [*base, fresh], now=T0).replicas == 3  # 1200/3000 = 40 %: flip → stay
    # ready for 20 s: it counts, (600+600+1000)/3000 = 73 %, ceil(1.46 × 3) = 5
    assert desired_replicas(spec, 3, [*base, settled], now=T0).replicas == 5
    # Memory ignores readiness: the same fresh pod counts
    mem = cpu_hpa()
    mem["spec"]["metrics"] = [
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100"}},
        }
    ]
    pods = [
        PodSample("a", memory_bytes=100),
        PodSample("b", memory_bytes=300, ready=False, ready_since=T0 - 1),
    ]
    assert desired_replicas(mem["spec"], 2, pods, now=T0).replicas == 4


def test_pending_and_deleting_pods() -> None:
    pods = [
        *rps_pods(0.3, 0.3),
        PodSample("pending", phase="Pending"),
        PodSample("gone", deleting=True, metrics={"rps": 5.0}),
    ]
    # the deleting pod is ignored; the pending one counts 0 on the scale-up: 600m / 3 = 200m → 6
    assert desired_replicas(pods_hpa("100m")["spec"], 4, pods, now=T0).replicas == 6


# --- invalid metrics --------------------------------------------------------------------------------


def test_a_pod_without_a_cpu_request_makes_utilization_invalid() -> None:
    hpa = cpu_hpa(50)
    hpa["status"] = {"currentReplicas": 2, "desiredReplicas": 2}
    requests, unrequested = pod_requests(
        {
            "spec": {
                "containers": [
                    {"name": "app", "resources": {"requests": {"cpu": "500m"}}},
                    {"name": "sidecar"},
                ]
            }
        }
    )
    assert (requests, unrequested) == ({}, {"cpu": "sidecar", "memory": "app"})
    pods = [*cpu_pods(0.9), PodSample("web-9", cpu_cores=0.9, requests=requests, unrequested=unrequested)]
    decision = reconcile(hpa, 2, pods, HpaHistory(), now=T0)
    assert decision.replicas is None
    error = "failed to get cpu utilization: missing request for cpu in container sidecar of Pod web-9"
    active = next(c for c in decision.status["conditions"] if c["type"] == "ScalingActive")
    assert active == {
        "type": "ScalingActive",
        "status": "False",
        "lastTransitionTime": rfc3339(T0),
        "reason": "FailedGetResourceMetric",
        "message": f"the HPA was unable to compute the replica count: {error}",
    }
    assert decision.status["desiredReplicas"] == 2
    assert decision.status["currentMetrics"] == [{"type": ""}]
    assert conditions(decision.status)["AbleToScale"] == ("True", "SucceededGetScale")
    assert decision.events == (
        HpaEvent("Warning", "FailedGetResourceMetric", error),
        HpaEvent(
            "Warning",
            "FailedComputeMetricsReplicas",
            "invalid metrics (1 invalid out of 1), first error is: "
            f"failed to get cpu resource metric value: {error}",
        ),
    )


def test_no_samples_at_all() -> None:
    outcome = desired_replicas(cpu_hpa()["spec"], 2, cpu_pods(None, None), now=T0)
    assert outcome.replicas is None
    assert outcome.condition == (
        "False",
        "FailedGetResourceMetric",
        "the HPA was unable to compute the replica count: failed to get cpu utilization: "
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API",
    )


def test_several_metrics_take_the_largest_and_a_failing_one_blocks_only_scale_down() -> None:
    hpa = cpu_hpa(50)
    hpa["spec"]["metrics"].append(pods_metric("rps", "100m"))
    pods = [
        PodSample(f"web-{i}", cpu_cores=0.45, requests={"cpu": 0.5}, metrics={"rps": 0.3}) for i in range(2)
    ]
    outcome = desired_replicas(hpa["spec"], 2, pods, now=T0)
    assert outcome.replicas == 6  # cpu asks for 4, rps for 6
    assert outcome.metric == "pods metric rps"
    assert [s["type"] for s in outcome.statuses] == ["Resource", "Pods"]
    # rps missing everywhere: cpu still scales up (4 > 2) ...
    pods = [PodSample(f"web-{i}", cpu_cores=0.45, requests={"cpu": 0.5}) for i in range(2)]
    outcome = desired_replicas(hpa["spec"], 2, pods, now=T0)
    assert (outcome.replicas, outcome.statuses[1]) == (4, {"type": ""})
    assert outcome.condition[1] == "ValidMetricFound"
    # ... but never down
    pods = [PodSample(f"web-{i}", cpu_cores=0.05, requests={"cpu": 0.5}) for i in range(4)]
    outcome = desired_replicas(hpa["spec"], 4, pods, now=T0)
    assert outcome.replicas is None
    assert outcome.condition[:2] == ("False", "FailedGetPodsMetric")


# --- behavior: policies, stabilization, limits ------------------------------------------------------


def test_default_behavior_policies_limit_a_scale_up_per_period() -> None:
    hpa = pods_hpa("100m", high=30, behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    history = HpaHistory()
    busy = rps_pods(*[1.0] * 2)  # ten times the target
    first = reconcile(hpa, 2, busy, history, now=T0)
    assert first.replicas == 6  # max(2 + 4 pods, 2 × 200 %)
    assert limited(first.status) == (
        "True",
        "ScaleUpLimit",
        "the desired replica count is increasing faster than the maximum scale rate",
    )
    hpa["status"] = first.status
    busy = rps_pods(*[1.0] * 6)
    # 10 s later the period still started at 2 replicas: no room left
    second = reconcile(hpa, 6, busy, history, now=T0 + 10)
    assert second.replicas is None
    assert limited(second.status)[:2] == ("True", "ScaleUpLimit")
    # 16 s later the first scale event left the 15 s period: max(6 + 4, 6 × 2) = 12
    third = reconcile(hpa, 6, busy, history, now=T0 + 16)
    assert third.replicas == 12
    assert history.scale_up_events == [(T0 + 16, 6)]  # the outdated event's slot was reused


def test_without_behavior_the_controller_limits_a_scale_up_to_twice_or_four() -> None:
    decision = reconcile(pods_hpa("100m", high=30), 1, rps_pods(1.0), HpaHistory(), now=T0)
    assert decision.replicas == 4  # max(2 × 1, 4), not the default policies' 1 + 4
    assert limited(decision.status)[:2] == ("True", "ScaleUpLimit")


def test_select_policy_min_and_disabled() -> None:
    up = {
        "selectPolicy": "Min",
        "policies": [
            {"type": "Pods", "value": 1, "periodSeconds": 60},
            {"type": "Percent", "value": 50, "periodSeconds": 60},
        ],
    }
    hpa = pods_hpa("100m", high=30, behavior={"scaleUp": up})
    assert reconcile(hpa, 4, rps_pods(*[1.0] * 4), HpaHistory(), now=T0).replicas == 5  # min(4+1, 4×1.5)
    hpa["spec"]["behavior"] = {"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}
    decision = reconcile(hpa, 4, rps_pods(*[0.01] * 4), HpaHistory(), now=T0)
    assert decision.replicas is None
    assert limited(decision.status)[:2] == ("True", "ScaleDownLimit")


def test_scale_down_is_held_by_the_stabilization_window_then_applied() -> None:
    hpa = pods_hpa("100m", high=10)
    history = HpaHistory()
    idle = rps_pods(*[0.02] * 6)  # asks for ceil(0.2 × 6) = 2
    first = reconcile(hpa, 6, idle, history, now=T0)
    assert first.replicas is None
    assert conditions(first.status)["AbleToScale"] == ("True", "ScaleDownStabilized")
    assert first.status["desiredReplicas"] == 6
    hpa["status"] = first.status
    held = reconcile(hpa, 6, idle, history, now=T0 + 299)
    assert held.replicas is None
    applied = reconcile(hpa, 6, idle, history, now=T0 + 301)  # the start-up recommendation (6) expired
    assert applied.replicas == 2
    assert conditions(applied.status)["AbleToScale"] == ("True", "SucceededRescale")
    assert history.recommendations == [(T0 + 299, 2), (T0 + 301, 2)]


def test_behavior_stabilization_window_and_percent_policy_on_scale_down() -> None:
    down = {
        "stabilizationWindowSeconds": 60,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 30}],
    }
    hpa = pods_hpa("100m", behavior={"scaleDown": down})
    history = HpaHistory()
    idle = rps_pods(*[0.01] * 8)  # asks for 1
    assert reconcile(hpa, 8, idle, history, now=T0).replicas is None
    decision = reconcile(hpa, 8, idle, history, now=T0 + 61)
    assert decision.replicas == 4  # int(8 × 50 %)
    assert limited(decision.status)[:2] == ("True", "ScaleDownLimit")
    # inside the 30 s period the period started at 8: still 4 allowed, so no further step
    assert reconcile(hpa, 4, rps_pods(*[0.01] * 4), history, now=T0 + 80).replicas is None
    assert reconcile(hpa, 4, rps_pods(*[0.01] * 4), history, now=T0 + 92).replicas == 2


def test_min_and_max_replicas_clamp_with_their_reasons() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    low = reconcile(
        pods_hpa("100m", low=3, behavior=behavior), 4, rps_pods(*[0.01] * 4), HpaHistory(), now=T0
    )
    assert low.replicas == 3
    assert limited(low.status) == (
        "True",
        "TooFewReplicas",
        "the desired replica count is less than the minimum replica count",
    )
    high = reconcile(
        pods_hpa("100m", high=6, behavior=behavior), 4, rps_pods(*[0.3] * 4), HpaHistory(), now=T0
    )
    assert high.replicas == 6
    assert limited(high.status) == (
        "True",
        "TooManyReplicas",
        "the desired replica count is more than the maximum replica count",
    )
    # without behavior (and past the start-up recommendation) the rules clamp the same way
    history = HpaHistory(started=True)
    legacy = reconcile(pods_hpa("100m", low=3), 3, rps_pods(*[0.01] * 3), history, now=T0)
    assert legacy.replicas is None
    assert limited(legacy.status)[:2] == ("True", "TooFewReplicas")


def test_replicas_outside_the_range_are_brought_back_without_metrics() -> None:
    decision = reconcile(pods_hpa("100m", high=5), 8, [], HpaHistory(), now=T0)
    assert decision.replicas == 5
    assert decision.events == (
        HpaEvent(
            "Normal",
            "SuccessfulRescale",
            "New size: 5; reason: Current number of replicas above Spec.MaxReplicas",
        ),
    )
    assert "currentMetrics" not in decision.status
    assert reconcile(pods_hpa("100m", low=2), 1, [], HpaHistory(), now=T0).replicas == 2


def test_zero_replicas_disable_scaling() -> None:
    decision = reconcile(pods_hpa("100m"), 0, [], HpaHistory(), now=T0)
    assert decision.replicas is None
    assert decision.status == {
        "desiredReplicas": 0,
        "conditions": [
            {
                "type": "AbleToScale",
                "status": "True",
                "lastTransitionTime": rfc3339(T0),
                "reason": "SucceededGetScale",
                "message": "the HPA controller was able to get the target's current scale",
            },
            {
                "type": "ScalingActive",
                "status": "False",
                "lastTransitionTime": rfc3339(T0),
                "reason": "ScalingDisabled",
                "message": "scaling is disabled since the replica count of the target is zero",
            },
        ],
    }


def test_identical_inputs_give_an_identical_status() -> None:
    hpa = pods_hpa("100m")
    history = HpaHistory()
    scaled = reconcile(hpa, 2, rps_pods(0.2, 0.2), history, now=T0)
    assert scaled.replicas == 4
    hpa["status"] = scaled.status
    steady = rps_pods(0.1, 0.1, 0.1, 0.1)
    first = reconcile(hpa, 4, steady, history, now=T0 + 30)
    hpa["status"] = copy.deepcopy(first.status)
    second = reconcile(hpa, 4, steady, history, now=T0 + 45)
    assert second.status == first.status
    assert second.status["lastScaleTime"] == rfc3339(T0)
    # AbleToScale stayed True throughout: its transition time is the first sync's
    assert [c["lastTransitionTime"] for c in second.status["conditions"]] == [rfc3339(T0)] * 3
    # a flip moves only the flipped condition's time
    failing = reconcile(hpa, 4, [PodSample(f"web-{i}") for i in range(4)], history, now=T0 + 60)
    times = {c["type"]: c["lastTransitionTime"] for c in failing.status["conditions"]}
    assert times == {
        "AbleToScale": rfc3339(T0),
        "ScalingActive": rfc3339(T0 + 60),
        "ScalingLimited": rfc3339(T0),
    }


def test_history_stays_bounded() -> None:
    hpa = pods_hpa("100m", behavior={"scaleDown": {"stabilizationWindowSeconds": 60}})
    history = HpaHistory()
    for step in range(200):
        reconcile(hpa, 4, rps_pods(*[0.1] * 4), history, now=T0 + 15 * step)
    assert len(history.recommendations) == 4  # 60 s of 15 s syncs


# --- kubectl, quantities, requests -----------------------------------------------------------------


def test_format_targets_like_kubectl() -> None:
    hpa = cpu_hpa(50)
    assert format_targets(hpa) == "cpu: <unknown>/50%"
    hpa["status"] = {
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "225m"}},
            }
        ]
    }
    assert format_targets(hpa) == "cpu: 45%/50%"
    hpa["spec"]["metrics"].append(pods_metric("istio_requests_per_second", "10"))
    hpa["status"]["currentMetrics"].append(
        {
            "type": "Pods",
            "pods": {"metric": {"name": "istio_requests_per_second"}, "current": {"averageValue": "12"}},
        }
    )
    assert format_targets(hpa) == "cpu: 45%/50%, 12/10"
    hpa["spec"]["metrics"].append(
        {
            "type": "Resource",
            "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "0.5Gi"}},
        }
    )
    assert format_targets(hpa) == "cpu: 45%/50%, 12/10 + 1 more..."
    assert format_targets(hpa, limit=3) == "cpu: 45%/50%, 12/10, memory: <unknown>/512Mi"
    assert format_targets({"spec": {"maxReplicas": 3}}) == "cpu: <unknown>/80%"  # the API's default metric


def test_quantities_are_canonical() -> None:
    assert [canonical_quantity(v) for v in ("0.5", "1000", "1024Ki", "1.5", "12000m", 10, "1536")] == [
        "500m",
        "1k",
        "1Mi",
        "1500m",
        "12",
        "10",
        "1536",
    ]
    assert [format_milli_quantity(m) for m in (200, 12000, 0, 1_000_000_000)] == ["200m", "12", "0", "1M"]
    assert format_milli_quantity(300 * 2**20 * 1000, binary=True) == "300Mi"
    assert format_milli_quantity(1500, binary=True) == "1500m"


def test_pod_requests_sum_containers_and_sidecars() -> None:
    pod = {
        "spec": {
            "initContainers": [
                {"name": "setup", "resources": {"requests": {"cpu": "2"}}},
                {
                    "name": "proxy",
                    "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                },
            ],
            "containers": [{"name": "app", "resources": {"requests": {"cpu": "250m", "memory": "128Mi"}}}],
        }
    }
    assert pod_requests(pod) == ({"cpu": 0.35, "memory": float(192 * 2**20)}, {})
    pod["spec"]["resources"] = {"requests": {"cpu": "1"}}
    assert pod_requests(pod)[0]["cpu"] == 1.0


def test_config_tolerance_applies_without_behavior() -> None:
    spec = pods_hpa("100m")["spec"]
    pods = rps_pods(*[0.108] * 4)
    assert desired_replicas(spec, 4, pods, now=T0).replicas == 4
    assert desired_replicas(spec, 4, pods, now=T0, config=HpaConfig(tolerance=0.05)).replicas == 5
