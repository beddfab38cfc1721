"""HorizontalPodAutoscaler decisions (pure): Kubernetes' autoscaling/v2 algorithm over per-pod samples.

Follows ``kubernetes/kubernetes`` ``pkg/controller/podautoscaler`` (read at master, 2026):
``replica_calculator.go`` (``GetResourceReplicas``, ``calcPlainMetricReplicas``, ``groupPods``,
``calculateRequests``, ``Tolerances.isWithin``), ``metrics/utilization.go`` (integer utilization
``metricsTotal*100/requestsTotal``, average ``metricsTotal/len``), ``horizontal.go``
(``computeReplicasForMetrics``, ``reconcileAutoscaler``, ``normalizeDesiredReplicas``,
``normalizeDesiredReplicasWithBehaviors``, ``stabilizeRecommendation[WithBehaviors]``,
``convertDesiredReplicasWith{Rules,BehaviorRate}``, ``calculateScale{Up,Down}Limit*``,
``storeScaleEvent``, ``setCondition``, ``tolerancesForHpa``), ``pkg/apis/autoscaling/v2/defaults.go``
(behavior defaults) and kubectl's ``formatHPAMetrics`` (``pkg/printers/internalversion/printers.go``).

What it does, as Kubernetes does it:

- Per metric, ``desired = ceil(usageRatio × pods)`` where ``usageRatio = current / target``; nothing
  changes while ``1 - tolerance.scaleDown <= ratio <= 1 + tolerance.scaleUp`` (0.1 both ways, or
  ``behavior.scaleUp/scaleDown.tolerance``). Resource/Utilization sums the pods' container requests
  (a container without one makes the metric fail: ``ScalingActive=False``,
  ``FailedGetResourceMetric``). Pods without a sample are set aside, then count as using 100 % of their
  request (at least the target) on a scale-down and 0 on a scale-up; pending pods (and, for CPU, pods not
  yet ready or still in their initialization period) count as 0 on a scale-up and are left out
  otherwise; deleting or failed pods are ignored. After filling in, a change of direction or a result
  inside the tolerance keeps the current count. Several metrics: the largest proposal wins; if some
  metrics fail the HPA still scales up, never down.
- Without ``spec.behavior`` (the API server does not default it) the controller's own path runs: the
  highest recommendation of the last 300 s (the downscale stabilization window) and a scale-up limit of
  ``max(2 × current, 4)``. With ``spec.behavior`` every unset field takes the API default (scaleUp:
  window 0, policies 4 Pods and 100 Percent per 15 s, selectPolicy Max; scaleDown: window 300 s,
  100 Percent per 15 s, Max); stabilization clamps the current count between the lowest recent
  recommendation (scale-up window) and the highest (scale-down window); policies limit the change
  relative to the replica count at the start of each policy's period (from the scale events within
  it); Min/Max/Disabled select among policies; min/maxReplicas clamp last.
- The status is the one the controller writes: ``currentReplicas``, ``desiredReplicas``,
  ``currentMetrics`` (a failed metric is ``{"type": ""}`` as Go serializes it), ``lastScaleTime`` (only
  set on a rescale) and the conditions AbleToScale / ScalingActive / ScalingLimited with Kubernetes'
  reasons and messages; a condition's ``lastTransitionTime`` moves only when its status flips, so equal
  inputs give an equal status.
- :func:`format_targets` is kubectl's TARGETS column: ``cpu: 45%/50%``, ``cpu: <unknown>/50%`` before a
  measurement, and Pods metrics without their name (``12/10``), first two metrics then ``+ N more...``.

The caller keeps one :class:`HpaHistory` per HPA (recommendations and scale events, trimmed to the
longest window in use) and passes it to :func:`reconcile`, which updates it; a returned
``replicas`` is assumed applied (Kubernetes records the scale event after a successful update).

Simplified: the target's scale is ``current_replicas`` (spec and status alike); Object, External and
ContainerResource metrics and metric label selectors are not evaluated (the runtime rejects them);
scale-to-zero (``HPAScaleToZero``) and ``status.observedGeneration`` (``HPAGeneration``), both feature
gated, are not written; a CPU sample's timestamp is ``now`` and its window ``HpaConfig.metric_window``.
Time is injected: ``now`` is seconds since the epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from typing import Any

from ambit.resources.quantity import QuantityError, parse_quantity

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
DEFAULT_CPU_UTILIZATION = 80  # autoscaling.DefaultCPUUtilization, used when spec.metrics is empty

_SCALE_UP_RATE = "the desired replica count is increasing faster than the maximum scale rate"
_SCALE_DOWN_RATE = "the desired replica count is decreasing faster than the maximum scale rate"
_TOO_MANY = "the desired replica count is more than the maximum replica count"
_TOO_FEW = "the desired replica count is less than the minimum replica count"
_WITHIN_RANGE = "the desired count is within the acceptable range"
_UNABLE = "the HPA was unable to compute the replica count: "
_UP_STABILIZED = (
    "recent recommendations were lower than current one, applying the lowest recent recommendation"
)
_DOWN_STABILIZED = (
    "recent recommendations were higher than current one, applying the highest recent recommendation"
)
_NO_RESOURCE_METRICS = "unable to get metrics for resource {}: no metrics returned from resource metrics API"


@dataclass(frozen=True)
class HpaConfig:
    """kube-controller-manager's ``--horizontal-pod-autoscaler-*`` flags, with their defaults."""

    tolerance: float = 0.1
    downscale_stabilization: float = 300.0
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0
    metric_window: float = 15.0  # the window of a CPU sample (metrics-server's resolution)


@dataclass(frozen=True)
class PodSample:
    """One pod matched by the target's selector, with what the metrics APIs would report for it.

    ``ready`` is the status of the pod's Ready condition and ``ready_since`` its lastTransitionTime
    (None: the pod has no Ready condition); ``started_at`` is ``status.startTime``. ``cpu_cores`` and
    ``memory_bytes`` are the pod's usage (None: no sample, the pod counts as missing); ``metrics`` holds
    the per-pod custom metrics by name. ``requests`` are the pod's summed container requests in cores
    and bytes (see :func:`pod_requests`): a resource absent there means a container has no request,
    named in ``unrequested`` for the message.
    """

    name: str
    ready: bool = True
    ready_since: float | None = 0.0
    started_at: float | None = 0.0
    phase: str = "Running"
    deleting: bool = False
    cpu_cores: float | None = None
    memory_bytes: float | None = None
    requests: Mapping[str, float] = field(default_factory=dict)
    unrequested: Mapping[str, str] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass
class HpaHistory:
    """What the controller remembers per HPA between syncs: ``(timestamp, replicas)`` pairs."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)
    scale_up_events: list[tuple[float, int]] = field(default_factory=list)
    scale_down_events: list[tuple[float, int]] = field(default_factory=list)
    started: bool = False


@dataclass(frozen=True)
class HpaEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class MetricsOutcome:
    """``computeReplicasForMetrics``: the largest proposal (None when the HPA cannot act on metrics)."""

    replicas: int | None
    metric: str
    statuses: list[dict[str, Any]]
    condition: tuple[str, str, str]  # ScalingActive (status, reason, message)
    events: tuple[HpaEvent, ...] = ()


@dataclass(frozen=True)
class HpaDecision:
    replicas: int | None  # the new scale, None when it stays
    status: dict[str, Any]
    events: tuple[HpaEvent, ...] = ()


class _MetricError(Exception):
    pass


@dataclass(frozen=True)
class _Tolerances:
    down: float
    up: float

    def within(self, ratio: float) -> bool:
        return (1.0 - self.down) <= ratio <= (1.0 + self.up)


@dataclass(frozen=True)
class _Policy:
    type: str
    value: int
    period: float


@dataclass(frozen=True)
class _Rules:
    window: float
    select: str
    policies: tuple[_Policy, ...]


# --- quantities --------------------------------------------------------------------------------

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def _milli(value: Decimal | float | int) -> int:
    """``Quantity.MilliValue()``: the value in thousandths, rounded up."""
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return int((number * 1000).to_integral_value(rounding=ROUND_CEILING))


def _canonical_decimal(number: Decimal, exponent_style: bool = False) -> str:
    if number == 0:
        return "0"
    exponent = number.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    scale = max(-9, min(18, (exponent // 3) * 3))
    mantissa = int((number / Decimal(10) ** scale).to_integral_value(rounding=ROUND_CEILING))
    if exponent_style:
        return f"{mantissa}e{scale}" if scale else f"{mantissa}"
    return f"{mantissa}{_DECIMAL_SUFFIXES[scale]}"


def _canonical_binary(number: Decimal) -> str:
    if abs(number) < 1024 or number != number.to_integral_value():
        return _canonical_decimal(number)
    whole, power = int(number), 0
    while whole % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
        whole //= 1024
        power += 1
    return f"{whole}{_BINARY_SUFFIXES[power]}"


def format_milli_quantity(milli: int, binary: bool = False) -> str:
    """``resource.NewMilliQuantity(milli, DecimalSI|BinarySI).String()`` (``1500m``, ``12``, ``100Mi``)."""
    number = Decimal(milli) / 1000
    return _canonical_binary(number) if binary else _canonical_decimal(number)


def canonical_quantity(value: object) -> str:
    """As the API server returns it: ``0.5`` → ``500m``, ``1000`` → ``1k``, ``1024Ki`` → ``1Mi``."""
    number = parse_quantity(value)
    text = value.strip() if isinstance(value, str) else ""
    if text.endswith("i"):
        return _canonical_binary(number)
    if "e" in text.lower() and not text[-1:].isalpha():
        return _canonical_decimal(number, exponent_style=True)
    return _canonical_decimal(number)


# --- requests and timestamps --------------------------------------------------------------------


def pod_requests(pod: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """The pod's CPU (cores) and memory (bytes) requests as the HPA sums them, and the unrequested.

    Pod-level ``spec.resources.requests`` win (KEP-2837); otherwise the containers' plus the
    restartable (``restartPolicy: Always``) init containers'. The second map names, per resource, the
    first container without a request; such a resource is absent from the first map.
    """
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    containers += [
        c
        for c in spec.get("initContainers") or []
        if isinstance(c, Mapping) and c.get("restartPolicy") == "Always"
    ]
    pod_level = _mapping(_mapping(spec.get("resources")).get("requests"))
    requests: dict[str, float] = {}
    unrequested: dict[str, str] = {}
    for resource in ("cpu", "memory"):
        if resource in pod_level:
            requests[resource] = float(parse_quantity(pod_level[resource]))
            continue
        total = Decimal(0)
        for container in containers:
            wanted = _mapping(_mapping(container.get("resources")).get("requests")).get(resource)
            if wanted is None:
                unrequested[resource] = str(container.get("name", ""))
                break
            total += parse_quantity(wanted)
        else:
            requests[resource] = float(total)
    return requests, unrequested


def rfc3339(now: float) -> str:
    """``metav1.Time`` as serialized: whole seconds, UTC."""
    return datetime.fromtimestamp(int(now), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# --- the replica calculator ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    current: int
    pods: Sequence[PodSample]
    tolerances: _Tolerances
    now: float
    config: HpaConfig


def _group_pods(
    ctx: _Context, metrics: Mapping[str, int], resource: str
) -> tuple[int, set[str], set[str], set[str]]:
    """``groupPods``: ready count, unready, missing and ignored pod names."""
    config, now = ctx.config, ctx.now
    ready_count = 0
    unready: set[str] = set()
    missing: set[str] = set()
    ignored: set[str] = set()
    for pod in ctx.pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        if pod.name not in metrics:
            missing.add(pod.name)
            continue
        if resource == "cpu":
            if pod.ready_since is None or pod.started_at is None:
                not_ready = True
            elif pod.started_at + config.cpu_initialization_period > now:
                # Still initializing: ignored unless ready for a whole metric window.
                not_ready = not pod.ready or now < pod.ready_since + config.metric_window
            else:
                # Ignored only if it has never been ready.
                not_ready = (
                    not pod.ready and pod.started_at + config.initial_readiness_delay > pod.ready_since
                )
            if not_ready:
                unready.add(pod.name)
                continue
        ready_count += 1
    return ready_count, unready, missing, ignored


def _pod_requests_milli(pods: Sequence[PodSample], resource: str) -> dict[str, int]:
    requests: dict[str, int] = {}
    for pod in pods:
        if resource not in pod.requests:
            container = pod.unrequested.get(resource)
            where = f"container {container} of Pod {pod.name}" if container else f"Pod {pod.name}"
            raise _MetricError(f"missing request for {resource} in {where}")
        requests[pod.name] = _milli(pod.requests[resource])
    return requests


def _utilization_ratio(
    metrics: Mapping[str, int], requests: Mapping[str, int], target: int
) -> tuple[float, int, int]:
    metrics_total = requests_total = entries = 0
    for name, value in metrics.items():
        if name in requests:
            metrics_total += value
            requests_total += requests[name]
            entries += 1
    if requests_total == 0:
        raise _MetricError("no metrics returned matched known pods")
    utilization = (metrics_total * 100) // requests_total
    return utilization / target, utilization, metrics_total // entries


def _usage_ratio(metrics: Mapping[str, int], target: int) -> tuple[float, int]:
    usage = sum(metrics.values()) // len(metrics)
    return usage / target, usage


def _grouped(ctx: _Context, metrics: dict[str, int], resource: str) -> tuple[int, set[str], set[str]]:
    """Group the pods and drop the samples of the ignored and unready ones."""
    if not ctx.pods:
        raise _MetricError("no pods returned by selector while calculating replica count")
    ready_count, unready, missing, ignored = _group_pods(ctx, metrics, resource)
    for name in ignored | unready:
        metrics.pop(name, None)
    if not metrics:
        raise _MetricError("did not receive metrics for targeted pods (pods might be unready)")
    return ready_count, unready, missing


def _resource_replicas(
    ctx: _Context, target_utilization: int, resource: str, metrics: dict[str, int]
) -> tuple[int, int, int]:
    """``GetResourceReplicas``: replicas, utilization (%) and raw average (milli)."""
    ready_count, unready, missing = _grouped(ctx, metrics, resource)
    requests = _pod_requests_milli(ctx.pods, resource)
    ratio, utilization, raw = _utilization_ratio(metrics, requests, target_utilization)

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if ctx.tolerances.within(ratio):
            return ctx.current, utilization, raw
        return math.ceil(ratio * ready_count), utilization, raw
    if missing:
        if ratio < 1.0:
            # 100 % of the request (or the target, when above 100 %) on a scale-down
            fallback = max(100, target_utilization)
            for name in missing:
                metrics[name] = requests[name] * fallback // 100
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0
    new_ratio, _, _ = _utilization_ratio(metrics, requests, target_utilization)
    return _rebalanced(ctx, ratio, new_ratio, len(metrics)), utilization, raw


def _plain_replicas(ctx: _Context, target: int, resource: str, metrics: dict[str, int]) -> tuple[int, int]:
    """``calcPlainMetricReplicas`` (AverageValue targets): replicas and average usage (milli)."""
    ready_count, unready, missing = _grouped(ctx, metrics, resource)
    ratio, usage = _usage_ratio(metrics, target)

    scale_up_with_unready = bool(unready) and ratio > 1.0
    if not scale_up_with_unready and not missing:
        if ctx.tolerances.within(ratio):
            return ctx.current, usage
        return math.ceil(ratio * ready_count), usage
    if missing:
        if ratio < 1.0:
            for name in missing:
                metrics[name] = target  # exactly the target on a scale-down
        elif ratio > 1.0:
            for name in missing:
                metrics[name] = 0
    if scale_up_with_unready:
        for name in unready:
            metrics[name] = 0
    new_ratio, _ = _usage_ratio(metrics, target)
    return _rebalanced(ctx, ratio, new_ratio, len(metrics)), usage


def _rebalanced(ctx: _Context, ratio: float, new_ratio: float, counted: int) -> int:
    if ctx.tolerances.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return ctx.current  # too small a change, or the direction would flip
    replicas = math.ceil(new_ratio * counted)
    if (new_ratio < 1.0 and replicas > ctx.current) or (new_ratio > 1.0 and replicas < ctx.current):
        return ctx.current
    return replicas


# --- metrics ------------------------------------------------------------------------------------


def _tolerances(spec: Mapping[str, Any], config: HpaConfig) -> _Tolerances:
    """``tolerancesForHpa``: ``behavior.scale{Down,Up}.tolerance`` over the controller's tolerance."""
    found = {"scaleDown": config.tolerance, "scaleUp": config.tolerance}
    behavior = _mapping(spec.get("behavior"))
    for key in found:
        value = _mapping(behavior.get(key)).get("tolerance")
        if value is not None:
            try:
                found[key] = float(parse_quantity(value))
            except QuantityError:
                continue
    return _Tolerances(found["scaleDown"], found["scaleUp"])


def metric_specs(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``spec.metrics``, or the API default (CPU at 80 % utilization) when there are none."""
    metrics = [m for m in spec.get("metrics") or [] if isinstance(m, Mapping)]
    if metrics:
        return metrics
    return [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION},
            },
        }
    ]


def _pod_usage(pod: PodSample, resource: str) -> float | None:
    return pod.cpu_cores if resource == "cpu" else pod.memory_bytes if resource == "memory" else None


def _resource_metric(ctx: _Context, source: Mapping[str, Any]) -> tuple[int, str, dict[str, Any]]:
    name = str(source.get("name"))
    target = _mapping(source.get("target"))
    samples = {p.name: _milli(u) for p in ctx.pods if (u := _pod_usage(p, name)) is not None}
    current: dict[str, Any]
    if target.get("averageValue") is not None:
        try:
            if not samples:
                raise _MetricError(_NO_RESOURCE_METRICS.format(name))
            target_milli = _milli(parse_quantity(target["averageValue"]))
            replicas, usage = _plain_replicas(ctx, target_milli, name, samples)
        except (_MetricError, QuantityError) as exc:
            raise _MetricError(f"failed to get {name} usage: {exc}") from None
        current = {"averageValue": format_milli_quantity(usage, binary=name == "memory")}
        description = f"{name} resource"
    elif target.get("averageUtilization") is None:
        raise _MetricError(
            "invalid resource metric source: neither an average utilization target nor an average value "
            "(usage) target was set"
        )
    else:
        try:
            if not samples:
                raise _MetricError(_NO_RESOURCE_METRICS.format(name))
            replicas, utilization, raw = _resource_replicas(
                ctx, int(target["averageUtilization"]), name, samples
            )
        except _MetricError as exc:
            raise _MetricError(f"failed to get {name} utilization: {exc}") from None
        current = {
            "averageUtilization": utilization,
            "averageValue": format_milli_quantity(raw, name == "memory"),
        }
        description = f"{name} resource utilization (percentage of request)"
    return replicas, description, {"type": "Resource", "resource": {"name": name, "current": current}}


def _pods_metric(ctx: _Context, source: Mapping[str, Any]) -> tuple[int, str, dict[str, Any]]:
    identifier = _mapping(source.get("metric"))
    name = str(identifier.get("name"))
    target = _mapping(source.get("target")).get("averageValue")
    if target is None:
        raise _MetricError("invalid pods metric source: no average value target was set")
    samples = {p.name: _milli(p.metrics[name]) for p in ctx.pods if name in p.metrics}
    if not samples:
        raise _MetricError(f"unable to get metric {name}: no metrics returned from custom metrics API")
    try:
        target_milli = _milli(parse_quantity(target))
    except QuantityError as exc:
        raise _MetricError(str(exc)) from None
    replicas, usage = _plain_replicas(ctx, target_milli, "", samples)
    metric: dict[str, Any] = {"name": name}
    if identifier.get("selector") is not None:
        metric["selector"] = identifier["selector"]
    current = {"averageValue": format_milli_quantity(usage)}
    return replicas, f"pods metric {name}", {"type": "Pods", "pods": {"metric": metric, "current": current}}


_FAILED_REASON = {
    "Resource": ("FailedGetResourceMetric", "failed to get {} resource metric value: "),
    "Pods": ("FailedGetPodsMetric", "failed to get pods metric value: "),
}


def desired_replicas(
    spec: Mapping[str, Any],
    current_replicas: int,
    pods: Sequence[PodSample],
    *,
    now: float,
    config: HpaConfig | None = None,
) -> MetricsOutcome:
    """``computeReplicasForMetrics``: the replica count the metrics ask for (before behavior and limits)."""
    config = config or HpaConfig()
    ctx = _Context(current_replicas, pods, _tolerances(spec, config), now, config)
    specs = metric_specs(spec)
    statuses: list[dict[str, Any]] = [{"type": ""} for _ in specs]
    replicas, metric = 0, ""
    invalid = 0
    first_error: tuple[str, str, str] | None = None
    events: list[HpaEvent] = []
    for i, metric_spec in enumerate(specs):
        kind = str(metric_spec.get("type"))
        try:
            if kind == "Resource":
                count, name, statuses[i] = _resource_metric(ctx, _mapping(metric_spec.get("resource")))
            elif kind == "Pods":
                count, name, statuses[i] = _pods_metric(ctx, _mapping(metric_spec.get("pods")))
            else:
                raise _MetricError(f"{kind} metrics are not supported by ambit's runtime")
        except _MetricError as exc:
            reason, prefix = _FAILED_REASON.get(kind, ("InvalidMetricSourceType", "{}"))
            events.append(HpaEvent("Warning", reason, str(exc)))
            if first_error is None:
                resource = _mapping(metric_spec.get("resource")).get("name", "")
                first_error = (reason, _UNABLE + str(exc), prefix.format(resource) + str(exc))
            invalid += 1
            continue
        if replicas == 0 or count > replicas:
            replicas, metric = count, name
    if first_error is not None and (invalid >= len(specs) or replicas < current_replicas):
        summary = f"invalid metrics ({invalid} invalid out of {len(specs)}), first error is: {first_error[2]}"
        events.append(HpaEvent("Warning", "FailedComputeMetricsReplicas", summary))
        return MetricsOutcome(None, "", statuses, ("False", first_error[0], first_error[1]), tuple(events))
    message = f"the HPA was able to successfully calculate a replica count from {metric}"
    return MetricsOutcome(replicas, metric, statuses, ("True", "ValidMetricFound", message), tuple(events))


# --- behavior -----------------------------------------------------------------------------------


def _rules(raw: object, default: _Rules) -> _Rules:
    """``GenerateHPAScale{Up,Down}Rules``: the set fields of ``raw`` over the defaults."""
    rules = _mapping(raw)
    window = rules.get("stabilizationWindowSeconds")
    select = rules.get("selectPolicy")
    policies = rules.get("policies")
    return _Rules(
        window=float(window) if isinstance(window, int | float) else default.window,
        select=str(select) if select is not None else default.select,
        policies=(
            tuple(
                _Policy(str(p.get("type")), int(p.get("value", 0)), float(p.get("periodSeconds", 0)))
                for p in policies
                if isinstance(p, Mapping)
            )
            if isinstance(policies, list)
            else default.policies
        ),
    )


def _behavior_rules(spec: Mapping[str, Any], config: HpaConfig) -> tuple[_Rules, _Rules] | None:
    """Scale-up and scale-down rules with the API defaults filled in; None without ``spec.behavior``."""
    behavior = spec.get("behavior")
    if not isinstance(behavior, Mapping):
        return None
    up = _Rules(0.0, "Max", (_Policy("Pods", 4, 15.0), _Policy("Percent", 100, 15.0)))
    # The API leaves scaleDown's window unset; the controller uses its downscale stabilization.
    down = _Rules(config.downscale_stabilization, "Max", (_Policy("Percent", 100, 15.0),))
    return _rules(behavior.get("scaleUp"), up), _rules(behavior.get("scaleDown"), down)


def _changed_within(events: Iterable[tuple[float, int]], period: float, now: float) -> int:
    return sum(change for at, change in events if at > now - period)


def _period_start(current: int, history: HpaHistory, policy: _Policy, now: float) -> int:
    added = _changed_within(history.scale_up_events, policy.period, now)
    removed = _changed_within(history.scale_down_events, policy.period, now)
    return current - added + removed


def _scale_up_limit(current: int, history: HpaHistory, rules: _Rules, now: float) -> int:
    if rules.select == "Disabled":
        return current
    pick_min = rules.select == "Min"
    result = INT32_MAX if pick_min else INT32_MIN
    for policy in rules.policies:
        start = _period_start(current, history, policy, now)
        if policy.type == "Pods":
            proposed = start + policy.value
        elif policy.type == "Percent":
            # rounded up, or a small target could never grow
            proposed = math.ceil(start * (1 + policy.value / 100))
        else:
            continue
        result = min(result, proposed) if pick_min else max(result, proposed)
    return result


def _scale_down_limit(current: int, history: HpaHistory, rules: _Rules, now: float) -> int:
    if rules.select == "Disabled":
        return current
    pick_min = rules.select == "Min"
    result = INT32_MIN if pick_min else INT32_MAX
    for policy in rules.policies:
        start = _period_start(current, history, policy, now)
        if policy.type == "Pods":
            proposed = start - policy.value
        elif policy.type == "Percent":
            proposed = int(start * (1 - policy.value / 100))
        else:
            continue
        result = max(result, proposed) if pick_min else min(result, proposed)
    return result


_CONDITION_KEYS = ("type", "status", "lastTransitionTime", "reason", "message")


class _Conditions:
    """``setCondition``: ``lastTransitionTime`` changes only when a condition's status does."""

    def __init__(self, existing: object, now: float) -> None:
        items = existing if isinstance(existing, list) else []
        self.items = [dict(c) for c in items if isinstance(c, Mapping)]
        self.now = rfc3339(now)

    def set(self, kind: str, status: str, reason: str, message: str) -> None:
        for condition in self.items:
            if condition.get("type") == kind:
                break
        else:
            condition = {"type": kind}
            self.items.append(condition)
        if condition.get("status") != status:
            condition["lastTransitionTime"] = self.now
        condition["status"] = status
        condition["reason"] = reason
        condition["message"] = message
        ordered = {k: condition[k] for k in _CONDITION_KEYS if k in condition}
        ordered.update((k, v) for k, v in condition.items() if k not in _CONDITION_KEYS)
        condition.clear()
        condition.update(ordered)


@dataclass(frozen=True)
class _Proposal:
    current: int
    desired: int
    low: int
    high: int
    now: float


def _normalize_without_behavior(
    history: HpaHistory, proposal: _Proposal, config: HpaConfig, conditions: _Conditions
) -> int:
    """``normalizeDesiredReplicas``: downscale stabilization, then ``convertDesiredReplicasWithRules``."""
    current, desired = proposal.current, proposal.desired
    cutoff = proposal.now - config.downscale_stabilization
    kept = [(at, rec) for at, rec in history.recommendations if at >= cutoff]
    stabilized = max([desired, *(rec for _, rec in kept)])
    history.recommendations = [*kept, (proposal.now, desired)]
    if stabilized != desired:
        conditions.set("AbleToScale", "True", "ScaleDownStabilized", _DOWN_STABILIZED)
    else:
        conditions.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")

    scale_up_limit = int(max(2.0 * current, 4.0))
    if proposal.high > scale_up_limit:
        maximum, reason, message = scale_up_limit, "ScaleUpLimit", _SCALE_UP_RATE
    else:
        maximum, reason, message = proposal.high, "TooManyReplicas", _TOO_MANY
    if stabilized < proposal.low:
        result, reason, message = proposal.low, "TooFewReplicas", _TOO_FEW
    elif stabilized > maximum:
        result = maximum
    else:
        result, reason, message = stabilized, "DesiredWithinRange", _WITHIN_RANGE
    conditions.set("ScalingLimited", "True" if result != stabilized else "False", reason, message)
    return result


def _stabilize_with_behavior(history: HpaHistory, rules: tuple[_Rules, _Rules], proposal: _Proposal) -> int:
    """``stabilizeRecommendationWithBehaviors``: between the lowest and highest recent recommendations."""
    up, down = rules
    up_cutoff, down_cutoff = proposal.now - up.window, proposal.now - down.window
    up_recommendation = down_recommendation = proposal.desired
    for at, rec in history.recommendations:
        if at > up_cutoff:
            up_recommendation = min(rec, up_recommendation)
        if at > down_cutoff:
            down_recommendation = max(rec, down_recommendation)
    oldest = min(up_cutoff, down_cutoff)
    history.recommendations = [(at, rec) for at, rec in history.recommendations if at > oldest]
    history.recommendations.append((proposal.now, proposal.desired))
    return min(max(proposal.current, up_recommendation), down_recommendation)


def _normalize_with_behavior(
    history: HpaHistory, rules: tuple[_Rules, _Rules], proposal: _Proposal, conditions: _Conditions
) -> int:
    """``normalizeDesiredReplicasWithBehaviors``: stabilization windows, then the policies' rate."""
    current = proposal.current
    stabilized = _stabilize_with_behavior(history, rules, proposal)
    if stabilized == proposal.desired:
        conditions.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
    elif proposal.desired >= current:
        conditions.set("AbleToScale", "True", "ScaleUpStabilized", _UP_STABILIZED)
    else:
        conditions.set("AbleToScale", "True", "ScaleDownStabilized", _DOWN_STABILIZED)

    result, reason, message = stabilized, "DesiredWithinRange", _WITHIN_RANGE
    if stabilized > current:
        limit = max(_scale_up_limit(current, history, rules[0], proposal.now), current)
        if proposal.high > limit:
            maximum, why, text = limit, "ScaleUpLimit", _SCALE_UP_RATE
        else:
            maximum, why, text = proposal.high, "TooManyReplicas", _TOO_MANY
        if stabilized > maximum:
            result, reason, message = maximum, why, text
    elif stabilized < current:
        limit = min(_scale_down_limit(current, history, rules[1], proposal.now), current)
        if proposal.low < limit:
            minimum, why, text = limit, "ScaleDownLimit", _SCALE_DOWN_RATE
        else:
            minimum, why, text = proposal.low, "TooFewReplicas", _TOO_FEW
        if stabilized < minimum:
            result, reason, message = minimum, why, text
    conditions.set("ScalingLimited", "True" if result != stabilized else "False", reason, message)
    return result


def _store_scale_event(
    history: HpaHistory, rules: tuple[_Rules, _Rules], current: int, new: int, now: float
) -> None:
    """``storeScaleEvent``: reuse the slot of an event older than the direction's longest period."""
    if new > current:
        policies, events, change = rules[0].policies, history.scale_up_events, new - current
    else:
        policies, events, change = rules[1].policies, history.scale_down_events, current - new
    longest = max((p.period for p in policies), default=0.0)
    outdated = [i for i, (at, _) in enumerate(events) if at < now - longest]
    if outdated:
        events[outdated[-1]] = (now, change)
    else:
        events.append((now, change))


def _trim_events(history: HpaHistory, rules: tuple[_Rules, _Rules], now: float) -> None:
    """Events older than every policy period can never count again."""
    longest = max((p.period for p in (*rules[0].policies, *rules[1].policies)), default=0.0)
    history.scale_up_events = [e for e in history.scale_up_events if e[0] > now - longest]
    history.scale_down_events = [e for e in history.scale_down_events if e[0] > now - longest]


# --- reconcile ----------------------------------------------------------------------------------


def _replica_bounds(spec: Mapping[str, Any]) -> tuple[int, int]:
    low = spec.get("minReplicas")
    high = spec.get("maxReplicas")
    return (low if isinstance(low, int) else 1), (high if isinstance(high, int) else 0)


def reconcile(
    hpa: Mapping[str, Any],
    current_replicas: int,
    pods: Sequence[PodSample],
    history: HpaHistory,
    *,
    now: float,
    config: HpaConfig | None = None,
) -> HpaDecision:
    """One sync of ``reconcileAutoscaler``: the new scale (or None) and the HPA's new ``status``."""
    config = config or HpaConfig()
    spec = _mapping(hpa.get("spec"))
    old = _mapping(hpa.get("status"))
    conditions = _Conditions(old.get("conditions"), now)
    conditions.set("AbleToScale", "True", "SucceededGetScale", _GOT_SCALE)
    if not history.started:
        history.recommendations.append((now, current_replicas))
        history.started = True
    low, high = _replica_bounds(spec)
    rules = _behavior_rules(spec, config)
    if rules is not None:
        _trim_events(history, rules, now)

    events: list[HpaEvent] = []
    statuses: list[dict[str, Any]] | None = None
    desired, reason = 0, ""
    if current_replicas == 0:
        conditions.set("ScalingActive", "False", "ScalingDisabled", _DISABLED)
    elif current_replicas > high:
        desired, reason = high, "Current number of replicas above Spec.MaxReplicas"
    elif current_replicas < low:
        desired, reason = low, "Current number of replicas below Spec.MinReplicas"
    else:
        outcome = desired_replicas(spec, current_replicas, pods, now=now, config=config)
        events.extend(outcome.events)
        statuses = outcome.statuses
        conditions.set("ScalingActive", *outcome.condition)
        if outcome.replicas is None:
            kept = old.get("desiredReplicas")
            kept = kept if isinstance(kept, int) else 0
            status = _status(old.get("lastScaleTime"), current_replicas, kept, statuses, conditions)
            return HpaDecision(None, status, tuple(events))
        desired = max(outcome.replicas, 0)
        if desired != current_replicas:
            reason = (
                f"{outcome.metric} above target" if desired > current_replicas else "All metrics below target"
            )
        proposal = _Proposal(current_replicas, desired, low, high, now)
        if rules is None:
            desired = _normalize_without_behavior(history, proposal, config, conditions)
        else:
            desired = _normalize_with_behavior(history, rules, proposal, conditions)

    if desired == current_replicas:  # also when scaling is disabled at zero
        status = _status(old.get("lastScaleTime"), current_replicas, current_replicas, statuses, conditions)
        return HpaDecision(None, status, tuple(events))
    conditions.set("AbleToScale", "True", "SucceededRescale", f"{_RESCALED} {desired}")
    events.append(HpaEvent("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
    if rules is not None:
        _store_scale_event(history, rules, current_replicas, desired, now)
    status = _status(rfc3339(now), current_replicas, desired, statuses, conditions)
    return HpaDecision(desired, status, tuple(events))


_GOT_SCALE = "the HPA controller was able to get the target's current scale"
_RESCALED = "the HPA controller was able to update the target scale to"
_DISABLED = "scaling is disabled since the replica count of the target is zero"


def _status(
    last_scale: object,
    current: int,
    desired: int,
    statuses: list[dict[str, Any]] | None,
    conditions: _Conditions,
) -> dict[str, Any]:
    """``HorizontalPodAutoscalerStatus`` as JSON (``omitempty`` fields left out when empty)."""
    status: dict[str, Any] = {}
    if last_scale:
        status["lastScaleTime"] = last_scale
    if current:
        status["currentReplicas"] = current
    status["desiredReplicas"] = desired
    if statuses:
        status["currentMetrics"] = statuses
    if conditions.items:
        status["conditions"] = conditions.items
    return status


# --- kubectl ------------------------------------------------------------------------------------


def format_targets(hpa: Mapping[str, Any], limit: int = 2) -> str:
    """``kubectl get hpa``'s TARGETS column (``formatHPAMetrics``): ``cpu: 45%/50%, 12/10 + 1 more...``."""
    spec = _mapping(hpa.get("spec"))
    specs = metric_specs(spec)
    current = [m for m in _mapping(hpa.get("status")).get("currentMetrics") or [] if isinstance(m, Mapping)]
    cells: list[str] = []
    for i, metric in enumerate(specs):
        status = current[i] if i < len(current) else {}
        kind = metric.get("type")
        if kind == "Pods":
            target = _mapping(_mapping(metric.get("pods")).get("target")).get("averageValue")
            value = _mapping(_mapping(status.get("pods")).get("current")).get("averageValue")
            cells.append(f"{_shown(value)}/{_shown(target)}")
        elif kind == "Resource":
            source = _mapping(metric.get("resource"))
            name = source.get("name")
            target = _mapping(source.get("target"))
            now = _mapping(_mapping(status.get("resource")).get("current"))
            if target.get("averageValue") is not None:
                cells.append(f"{name}: {_shown(now.get('averageValue'))}/{_shown(target['averageValue'])}")
            else:
                used = now.get("averageUtilization")
                wanted = target.get("averageUtilization")
                shown_used = f"{used}%" if used is not None and status.get("resource") else "<unknown>"
                shown_target = f"{wanted}%" if wanted is not None else "<auto>"
                cells.append(f"{name}: {shown_used}/{shown_target}")
        else:
            cells.append("<unknown type>")
    if not cells:
        return "<none>"
    if len(cells) > limit:
        return f"{', '.join(cells[:limit])} + {len(cells) - limit} more..."
    return ", ".join(cells)


def _shown(value: object) -> str:
    if value is None:
        return "<unknown>"
    try:
        return canonical_quantity(value)
    except QuantityError:
        return str(value)
