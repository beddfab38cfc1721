"""Istio DestinationRule traffic policy as a waypoint applies it: connection-pool limits, outlier detection,
subsets.

Data only; translation is ``ambit.control.translate_destination_rule``, the per-request logic
``ambit.routing.outlier``. Stdlib only. Meaning, as in Istio's ``DestinationRule.trafficPolicy``
(``networking/v1alpha3/destination_rule.proto``) and the Envoy cluster Istio makes of it
(``pilot/pkg/networking/core/cluster_traffic_policy.go``: ``applyConnectionPool``,
``applyOutlierDetection``):

* a :class:`TrafficPolicy` is the DestinationRules of ONE Service (``service_key``, ``Service.key`` =
  ``<namespace>/<hostname>``) merged as istiod's ``mergeDestinationRule`` does, whatever the port; it
  is named (``name``, ``namespace``) after the oldest of them. Its connection pool and outlier
  detection are the oldest rule's that has a ``trafficPolicy`` (whole, not field by field); its
  subsets are every rule's, oldest first, a repeated subset name ignored;
* :class:`ConnectionPool` — Envoy's circuit-breaker thresholds. ``None`` is Istio's default, which is
  unlimited (Istio sets every threshold to 2^32-1, ``getDefaultCircuitBreakerThresholds``; a 0 in the
  DestinationRule also means "unset"): ``max_connections`` ← ``tcp.maxConnections``,
  ``max_pending_requests`` ← ``http.http1MaxPendingRequests``, ``max_requests_per_connection`` ←
  ``http.maxRequestsPerConnection``, ``max_requests`` ← ``http.http2MaxRequests`` (Envoy's
  ``max_requests``: concurrent requests to the Service, whatever the HTTP version). A value is at least 1;
* :class:`OutlierDetection` — Envoy's consecutive-error ejection with Istio's defaults:
  ``consecutive_5xx`` ← ``consecutive5xxErrors`` (default 5: Istio leaves Envoy's ``consecutive_5xx``
  default in place, enforced 100 %; 0 turns it off, here ``None``), ``consecutive_gateway_errors`` ←
  ``consecutiveGatewayErrors`` (502, 503, 504 and connect failures; off unless set above 0: Envoy's
  ``enforcing_consecutive_gateway_failure`` defaults to 0 and Istio raises it to 100 only for a value
  above 0), ``interval`` (default 10 s) and ``base_ejection_time`` (default 30 s) in seconds,
  ``max_ejection_percent`` (default 10: Istio passes only a value above 0, so Envoy's 10 % stays),
  ``min_health_percent`` (default 0; Istio writes it as Envoy's ``healthy_panic_threshold``, so 0
  turns panic mode off). Istio's documented defaults: consecutive5xxErrors "defaults to 5",
  interval "Default is 10s", baseEjectionTime "Default is 30s", maxEjectionPercent "Defaults to
  10%", minHealthPercent "The default is 0%";
* :class:`Subset` — a named subset of the Service's endpoints (``DestinationRule.subsets[]``, which a
  VirtualService destination names with ``subset``): in Istio the endpoints whose pod labels match
  the subset's ``labels`` (every label equal; no labels: every endpoint), resolved by istiod into a
  cluster of their own. ambit's workloads carry no labels, so the control plane resolves them:
  ``workloads`` are the uids (``Workload.uid``) of the Service's workloads that match, sorted. A
  subset's own ``trafficPolicy`` is **not supported**: translation warns and ignores it, so a subset
  uses the Service's connection pool and outlier detection. ``TrafficPolicy.subsets`` is sorted by
  name, names unique. ``ambit.routing.subsets.subset_members`` is the per-request lookup.

Keys: :attr:`TrafficPolicy.key` is the (oldest) DestinationRule's ``<namespace>/<name>`` (one rule names
one host, so one Service).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_CONSECUTIVE_5XX = 5
DEFAULT_INTERVAL = 10.0  # seconds
DEFAULT_BASE_EJECTION_TIME = 30.0  # seconds
DEFAULT_MAX_EJECTION_PERCENT = 10
DEFAULT_MIN_HEALTH_PERCENT = 0


def _limit(what: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{what} {value!r} is not a count of at least 1 (None: unlimited or off)")


def _percent(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise ValueError(f"{what} {value!r} is not a percentage in 0..100")


def _seconds(what: str, value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} {value!r} is not a positive number of seconds")


@dataclass(frozen=True, slots=True)
class ConnectionPool:
    """Circuit-breaker limits for one Service; ``None`` is unlimited (Istio's default)."""

    max_connections: int | None = None  # tcp.maxConnections
    max_pending_requests: int | None = None  # http.http1MaxPendingRequests
    max_requests_per_connection: int | None = None  # http.maxRequestsPerConnection
    max_requests: int | None = None  # http.http2MaxRequests

    def __post_init__(self) -> None:
        _limit("max_connections", self.max_connections)
        _limit("max_pending_requests", self.max_pending_requests)
        _limit("max_requests_per_connection", self.max_requests_per_connection)
        _limit("max_requests", self.max_requests)


@dataclass(frozen=True, slots=True)
class OutlierDetection:
    """Consecutive-error ejection of a Service's endpoints, Istio's defaults as field defaults.

    ``consecutive_5xx`` / ``consecutive_gateway_errors``: how many errors in a row eject an endpoint
    (``None``: that detector is off)."""

    consecutive_5xx: int | None = DEFAULT_CONSECUTIVE_5XX
    consecutive_gateway_errors: int | None = None
    interval: float = DEFAULT_INTERVAL
    base_ejection_time: float = DEFAULT_BASE_EJECTION_TIME
    max_ejection_percent: int = DEFAULT_MAX_EJECTION_PERCENT
    min_health_percent: int = DEFAULT_MIN_HEALTH_PERCENT

    def __post_init__(self) -> None:
        _limit("consecutive_5xx", self.consecutive_5xx)
        _limit("consecutive_gateway_errors", self.consecutive_gateway_errors)
        _seconds("interval", self.interval)
        _seconds("base_ejection_time", self.base_ejection_time)
        _percent("max_ejection_percent", self.max_ejection_percent)
        _percent("min_health_percent", self.min_health_percent)


@dataclass(frozen=True, slots=True)
class Subset:
    """A DestinationRule subset: ``name`` and the uids of the Service's workloads it holds (sorted, each
    once; empty when no endpoint matches). Its own ``trafficPolicy`` is not supported (ignored)."""

    name: str
    workloads: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"subset name {self.name!r} is empty or not a string")
        if any(not isinstance(uid, str) or not uid for uid in self.workloads):
            raise ValueError(f"subset {self.name!r}: a workload uid is empty or not a string")
        if list(self.workloads) != sorted(set(self.workloads)):
            raise ValueError(f"subset {self.name!r}: workload uids are not sorted and unique")


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """The DestinationRules of one Service, merged (see the module docstring)."""

    name: str
    namespace: str
    service_key: str  # the Service's key, <namespace>/<hostname>
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    subsets: tuple[Subset, ...] = ()  # sorted by name, names unique

    def __post_init__(self) -> None:
        names = [subset.name for subset in self.subsets]
        if names != sorted(set(names)):
            raise ValueError(f"subsets {names} are not sorted by name with unique names")

    def subset(self, name: str) -> Subset | None:
        """The subset called ``name``, or None when no rule defines it."""
        return next((subset for subset in self.subsets if subset.name == name), None)

    @property
    def key(self) -> str:
        """The DestinationRule: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"
