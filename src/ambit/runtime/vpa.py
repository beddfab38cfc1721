"""VerticalPodAutoscaler recommender in recommendation mode (pure): samples in, ``status.recommendation`` out.

Follows ``kubernetes/autoscaler`` ``vertical-pod-autoscaler/pkg/recommender`` (read at master, 2026):
``util/histogram_options.go`` and ``util/histogram.go`` (exponential buckets, percentile = start of the
next bucket), ``util/decaying_histogram.go`` (weight ``2^((t - reference) / halfLife)``, reference
shifted in whole half-lives), ``model/aggregations_config.go`` (CPU buckets from 0.01 core to 1000
cores, memory from 10 MB to 1 TB, each 5 % wider; 24 h half-lives; one memory peak per 24 h interval,
8 intervals), ``model/aggregate_container_state.go`` (CPU samples weigh 0.1; first/last sample and
count from CPU samples), ``model/container.go`` (``addMemorySample``: one peak per container instance
and interval, a higher sample replaces the interval's peak), ``logic/estimator.go`` (percentile,
margin, confidence ``min(lifespan / 24 h, samples / 1440)`` and ``× (1 + m / confidence)^e``),
``logic/recommender.go`` (target p90 + 15 %, lower bound p50 + 15 % × ``(1 + 0.001/c)^-2``, upper
bound p95 + 15 % × ``(1 + 1/c)``, minimums 25 millicores and 250 MiB per pod shared among the
containers), ``model/types.go`` (amounts truncated to millicores and bytes, at most 1e14),
``routines/vpa.go`` (containers whose policy has ``mode: Off`` get none) and ``utils/vpa/capping.go``
(``minAllowed``/``maxAllowed`` cap target and bounds; ``uncappedTarget`` is the target before capping).

Aggregation is per container name, as the VPA does for the pods it matches: each (pod, container)
instance keeps its own memory-peak interval and last CPU sample time, and all instances of a name feed
one histogram pair. The runtime measures whole pods (a process tree), so a single-container pod's
samples go under that container's name.

A short history gives wide bounds on purpose: after a minute of samples the upper bound is about 1441 ×
its base and the lower bound about 0.17 × (so usually the minimum); a single sample gives 1e14 and 0.
Not done: checkpoints, OOM bump-ups, LimitRange capping, ``controlledValues`` and the CPU-as-integer
post-processor. Time is injected (seconds since the epoch). Quantities are written with
:func:`~ambit.resources.quantity.format_cpu` (millicores, so a capped bound reads ``100000000000000m``
where the VPA's Go quantity would print ``100G``) and ``format_bytes``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ambit.resources.quantity import QuantityError, format_bytes, format_cpu, parse_quantity

DAY = 24 * 3600.0
BUCKET_GROWTH = 1.05
MIN_SAMPLE_WEIGHT = 0.1
EPSILON = 0.001 * MIN_SAMPLE_WEIGHT
CPU_HALF_LIFE = DAY
MEMORY_HALF_LIFE = DAY
MEMORY_AGGREGATION_INTERVAL = DAY
MEMORY_AGGREGATION_INTERVAL_COUNT = 8
SAFETY_MARGIN = 0.15
POD_MIN_CPU_MILLICORES = 25.0
POD_MIN_MEMORY_MB = 250.0  # MiB: the recommender multiplies by 1024 * 1024
TARGET_PERCENTILE = 0.9
LOWER_BOUND_PERCENTILE = 0.5
UPPER_BOUND_PERCENTILE = 0.95
CONFIDENCE_INTERVAL = DAY
MAX_RESOURCE_AMOUNT = 10**14
_MAX_DECAY_EXPONENT = 100


class DecayingHistogram:
    """An exponential-bucket histogram whose samples lose half their weight every ``half_life``."""

    def __init__(
        self, max_value: float, first_bucket: float, half_life: float, ratio: float = BUCKET_GROWTH
    ) -> None:
        self.first_bucket = first_bucket
        self.ratio = ratio
        self.half_life = half_life
        self.num_buckets = (
            math.ceil(math.log(max_value * (ratio - 1) / first_bucket + 1) / math.log(ratio)) + 1
        )
        self.weights = [0.0] * self.num_buckets
        self.total = 0.0
        self.min_bucket = self.num_buckets - 1
        self.max_bucket = 0
        self.reference: float | None = None

    def bucket(self, value: float) -> int:
        if value < self.first_bucket:
            return 0
        index = int(math.log(value * (self.ratio - 1) / self.first_bucket + 1) / math.log(self.ratio))
        return min(index, self.num_buckets - 1)

    def bucket_start(self, index: int) -> float:
        if index == 0:
            return 0.0
        return self.first_bucket * (self.ratio**index - 1) / (self.ratio - 1)

    def add(self, value: float, weight: float, at: float) -> None:
        weight *= self._decay(at)
        index = self.bucket(value)
        self.weights[index] += weight
        self.total += weight
        if index < self.min_bucket and self.weights[index] >= EPSILON:
            self.min_bucket = index
        if index > self.max_bucket and self.weights[index] >= EPSILON:
            self.max_bucket = index

    def subtract(self, value: float, weight: float, at: float) -> None:
        weight *= self._decay(at)
        index = self.bucket(value)
        self.total = _safe_subtract(self.total, weight)
        self.weights[index] = _safe_subtract(self.weights[index], weight)
        self._update_min_max()

    def is_empty(self) -> bool:
        return self.weights[self.min_bucket] < EPSILON

    def percentile(self, percentile: float) -> float:
        """The start of the bucket after the one where the cumulative weight reaches ``percentile``."""
        if self.is_empty():
            return 0.0
        threshold = percentile * self.total
        partial = 0.0
        index = self.min_bucket
        while index < self.max_bucket:
            partial += self.weights[index]
            if partial >= threshold:
                break
            index += 1
        if index < self.num_buckets - 1:
            return self.bucket_start(index + 1)
        return self.bucket_start(index)

    def _decay(self, at: float) -> float:
        if self.reference is None or at > self.reference + self.half_life * _MAX_DECAY_EXPONENT:
            self._shift(at)
        assert self.reference is not None
        return float(2.0 ** ((at - self.reference) / self.half_life))

    def _shift(self, at: float) -> None:
        new_reference = math.floor(at / self.half_life + 0.5) * self.half_life
        if self.reference is not None:
            exponent = math.floor((self.reference - new_reference) / self.half_life + 0.5)
            factor = math.ldexp(1.0, exponent)
            for index in range(self.min_bucket, self.max_bucket + 1):
                self.weights[index] *= factor
            self.total *= factor
            self._update_min_max()
        self.reference = new_reference

    def _update_min_max(self) -> None:
        last = self.num_buckets - 1
        while self.weights[self.min_bucket] < EPSILON and self.min_bucket < last:
            self.min_bucket += 1
        while self.weights[self.max_bucket] < EPSILON and self.max_bucket > 0:
            self.max_bucket -= 1


def _safe_subtract(value: float, sub: float) -> float:
    value -= sub
    return 0.0 if value < EPSILON else value


def cpu_histogram() -> DecayingHistogram:
    return DecayingHistogram(1000.0, 0.01, CPU_HALF_LIFE)


def memory_histogram() -> DecayingHistogram:
    return DecayingHistogram(1e12, 1e7, MEMORY_HALF_LIFE)


@dataclass(eq=False)
class ContainerAggregate:
    """``AggregateContainerState`` for one container name."""

    created: float
    cpu: DecayingHistogram = field(default_factory=cpu_histogram)
    memory_peaks: DecayingHistogram = field(default_factory=memory_histogram)
    first_sample: float | None = None  # CPU samples only, as in the VPA
    last_sample: float | None = None
    samples: int = 0


@dataclass(eq=False)
class _Instance:
    """``ContainerState``: one container of one pod."""

    container: str
    last_cpu_sample: float | None = None
    memory_peak: int = 0
    window_end: float | None = None
    last_memory_sample: float | None = None


@dataclass(eq=False)
class VpaState:
    """Everything the recommender remembers for one VPA; the caller keeps one per VPA."""

    containers: dict[str, ContainerAggregate] = field(default_factory=dict)
    instances: dict[tuple[str, str], _Instance] = field(default_factory=dict)


def add_sample(
    state: VpaState,
    pod: str,
    container: str,
    at: float,
    *,
    cpu_cores: float | None = None,
    memory_bytes: float | None = None,
) -> None:
    """Feed one measurement of ``container`` in ``pod`` taken at ``at`` (CPU as a rate in cores).

    Like ``ContainerState.AddSample``: CPU samples not newer than the instance's last one and memory
    samples older than its last one are dropped.
    """
    aggregate = state.containers.get(container)
    if aggregate is None:
        aggregate = state.containers[container] = ContainerAggregate(created=at)
    instance = state.instances.get((pod, container))
    if instance is None:
        instance = state.instances[(pod, container)] = _Instance(container)
    if (
        cpu_cores is not None
        and cpu_cores >= 0
        and (instance.last_cpu_sample is None or at > instance.last_cpu_sample)
    ):
        cores = int(cpu_cores * 1000) / 1000  # CPUAmountFromCores: whole millicores
        aggregate.cpu.add(cores, MIN_SAMPLE_WEIGHT, at)
        if aggregate.last_sample is None or at > aggregate.last_sample:
            aggregate.last_sample = at
        if aggregate.first_sample is None or at < aggregate.first_sample:
            aggregate.first_sample = at
        aggregate.samples += 1
        instance.last_cpu_sample = at
    if memory_bytes is not None and memory_bytes >= 0:
        _add_memory_sample(aggregate, instance, at, min(int(memory_bytes), MAX_RESOURCE_AMOUNT))


def _add_memory_sample(aggregate: ContainerAggregate, instance: _Instance, at: float, usage: int) -> None:
    if instance.last_memory_sample is not None and at < instance.last_memory_sample:
        return
    instance.last_memory_sample = at
    if instance.window_end is None:
        instance.window_end = at
    add_new_peak = False
    if at < instance.window_end:
        if instance.memory_peak != 0 and usage > instance.memory_peak:
            aggregate.memory_peaks.subtract(float(instance.memory_peak), 1.0, instance.window_end)
            add_new_peak = True
    else:
        elapsed = at - instance.window_end
        shift = (
            elapsed // MEMORY_AGGREGATION_INTERVAL
        ) * MEMORY_AGGREGATION_INTERVAL + MEMORY_AGGREGATION_INTERVAL
        instance.window_end += shift
        instance.memory_peak = 0
        add_new_peak = True
    if add_new_peak:
        aggregate.memory_peaks.add(float(usage), 1.0, instance.window_end)
        instance.memory_peak = usage


def remove_pod(state: VpaState, pod: str) -> None:
    """Forget a pod's instances (its samples stay in the aggregates, as in the VPA)."""
    for key in [key for key in state.instances if key[0] == pod]:
        del state.instances[key]


def prune(state: VpaState, now: float) -> None:
    """Drop aggregates without a sample for the memory aggregation window (8 days), as ``isExpired``."""
    window = MEMORY_AGGREGATION_INTERVAL * MEMORY_AGGREGATION_INTERVAL_COUNT
    for name in [n for n, a in state.containers.items() if now - (a.last_sample or a.created) >= window]:
        del state.containers[name]
        for key in [k for k in state.instances if k[1] == name]:
            del state.instances[key]


# --- estimation ---------------------------------------------------------------------------------


def _amount(value: float) -> int:
    """``resourceAmountFromFloat``: truncated, within [0, 1e14] (NaN, from 0 × ∞, counts as 0)."""
    if math.isnan(value) or value < 0:
        return 0
    if value > MAX_RESOURCE_AMOUNT:
        return MAX_RESOURCE_AMOUNT
    return int(value)


def _confidence(aggregate: ContainerAggregate) -> float:
    if aggregate.first_sample is None or aggregate.last_sample is None:
        lifespan = 0.0
    else:
        lifespan = (aggregate.last_sample - aggregate.first_sample) / CONFIDENCE_INTERVAL
    return min(lifespan, aggregate.samples / (CONFIDENCE_INTERVAL / 60))


def _with_margin(base: int) -> int:
    return base + _amount(base * SAFETY_MARGIN)


def _with_confidence(base: int, confidence: float, multiplier: float, exponent: float) -> int:
    ratio = math.inf if confidence == 0 else multiplier / confidence
    return _amount(base * (1.0 + ratio) ** exponent)


@dataclass(frozen=True)
class Estimate:
    """Millicores and bytes."""

    cpu: int
    memory: int


@dataclass(frozen=True)
class ContainerEstimate:
    target: Estimate
    lower_bound: Estimate
    upper_bound: Estimate


def estimate(aggregate: ContainerAggregate, containers: int = 1) -> ContainerEstimate:
    """``podResourceRecommender.estimateContainerResources`` for one of ``containers`` containers."""
    fraction = 1.0 / max(1, containers)
    min_cpu = _amount(_amount(POD_MIN_CPU_MILLICORES * 0.001 * 1000.0) * fraction)
    min_memory = _amount(_amount(POD_MIN_MEMORY_MB * 1024 * 1024) * fraction)
    confidence = _confidence(aggregate)

    def cpu(percentile: float) -> int:
        return _with_margin(_amount(aggregate.cpu.percentile(percentile) * 1000.0))

    def memory(percentile: float) -> int:
        return _with_margin(_amount(aggregate.memory_peaks.percentile(percentile)))

    target = Estimate(max(cpu(TARGET_PERCENTILE), min_cpu), max(memory(TARGET_PERCENTILE), min_memory))
    lower = Estimate(
        max(_with_confidence(cpu(LOWER_BOUND_PERCENTILE), confidence, 0.001, -2.0), min_cpu),
        max(_with_confidence(memory(LOWER_BOUND_PERCENTILE), confidence, 0.001, -2.0), min_memory),
    )
    upper = Estimate(
        max(_with_confidence(cpu(UPPER_BOUND_PERCENTILE), confidence, 1.0, 1.0), min_cpu),
        max(_with_confidence(memory(UPPER_BOUND_PERCENTILE), confidence, 1.0, 1.0), min_memory),
    )
    return ContainerEstimate(target, lower, upper)


# --- the recommendation -------------------------------------------------------------------------


def _container_policy(name: str, resource_policy: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """``GetContainerResourcePolicy``: the policy naming the container, else the ``*`` one."""
    fallback = None
    for policy in (resource_policy or {}).get("containerPolicies") or []:
        if not isinstance(policy, Mapping):
            continue
        if policy.get("containerName") == name:
            return policy
        if policy.get("containerName") == "*":
            fallback = policy
    return fallback


def _limit(policy: Mapping[str, Any] | None, key: str, resource: str) -> int | None:
    """``minAllowed``/``maxAllowed`` for ``resource`` in millicores or bytes (zero means unset)."""
    if policy is None or not isinstance(policy.get(key), Mapping) or resource not in policy[key]:
        return None
    try:
        value = parse_quantity(policy[key][resource])
    except QuantityError:
        return None
    amount = int(value * 1000) if resource == "cpu" else int(value)
    return amount or None


def _cap(value: int, low: int | None, high: int | None) -> int:
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    return value


def _quantities(
    estimate: Estimate, resources: tuple[str, ...], policy: Mapping[str, Any] | None
) -> dict[str, str]:
    out: dict[str, str] = {}
    if "cpu" in resources:
        cpu = _cap(estimate.cpu, _limit(policy, "minAllowed", "cpu"), _limit(policy, "maxAllowed", "cpu"))
        out["cpu"] = format_cpu(cpu / 1000)
    if "memory" in resources:
        memory = _cap(
            estimate.memory, _limit(policy, "minAllowed", "memory"), _limit(policy, "maxAllowed", "memory")
        )
        out["memory"] = format_bytes(memory)
    return out


def recommend(
    state: VpaState, now: float, resource_policy: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``status.recommendation``: ``{"containerRecommendations": [...]}`` sorted by container name.

    ``resource_policy`` is the VPA's ``spec.resourcePolicy`` (``containerPolicies`` with ``mode``,
    ``controlledResources``, ``minAllowed``, ``maxAllowed``). Aggregates expired at ``now`` are dropped.
    """
    prune(state, now)
    names = []
    for name in sorted(state.containers):
        policy = _container_policy(name, resource_policy)
        if policy is None or policy.get("mode") != "Off":
            names.append(name)
    recommendations = []
    for name in names:
        policy = _container_policy(name, resource_policy)
        controlled = policy.get("controlledResources") if policy is not None else None
        resources = (
            tuple(r for r in ("cpu", "memory") if r in controlled)
            if isinstance(controlled, list)
            else ("cpu", "memory")
        )
        result = estimate(state.containers[name], len(names))
        recommendations.append(
            {
                "containerName": name,
                "target": _quantities(result.target, resources, policy),
                "lowerBound": _quantities(result.lower_bound, resources, policy),
                "upperBound": _quantities(result.upper_bound, resources, policy),
                "uncappedTarget": _quantities(result.target, resources, None),
            }
        )
    return {"containerRecommendations": recommendations}
