"""Istio DestinationRule → the waypoint's ``TrafficPolicy`` (connection pool, outlier detection, subsets).

The data model is ``ambit.model.traffic_policy``, the per-request logic ``ambit.routing.outlier``.
Istio's own handling is followed (``pilot/pkg/model/destination_rule.go``, ``push_context.go``,
``config.go::ResolveShortnameToFQDN``, ``pilot/pkg/networking/core/cluster_traffic_policy.go``) unless
said otherwise. Exactly what happens:

* objects: ``DestinationRule`` of ``networking.istio.io`` (v1, v1beta1, v1alpha3); one ``TrafficPolicy``
  per Service whose rules set a connection-pool limit, outlier detection or at least one subset,
  named after the oldest of its rules;
* ``host`` names a Service **in the rule's namespace**: a short name (``web``, completed with the rule's
  namespace and ``svc.<cluster domain>``, as Istio does) or the FQDN ``web.<ns>.svc.<cluster domain>``.
  ``web.<ns>`` and ``web.<ns>.svc`` are resolved too when that Service exists (``example.com`` stays an
  external host), with a warning: Istio takes any host with a dot as fully qualified
  (``ResolveShortnameToFQDN``), so in Istio they match no Kubernetes Service. A host in
  another namespace (consumer-side rules), a wildcard, or a host that is no Service in the cluster
  (ServiceEntry hosts, IPs) is skipped with a warning, as is a rule with a ``workloadSelector`` (it
  would apply only to the workloads it selects);
* two or more rules for one Service: Istio sorts them by ``creationTimestamp``, then name, then namespace
  (``sortConfigBySelectorAndCreationTime``) and merges them in that order into the oldest, concatenating
  only subsets: "if the original rule did not have any top level traffic policy, traffic policies from
  the new rule will be used" (``mergeDestinationRule``). So the **oldest rule with a trafficPolicy wins it
  whole** (not field by field); a newer rule's trafficPolicy is ignored, with a warning naming the
  winner. Subsets are every rule's, oldest first; a subset whose name an older rule (or an earlier entry
  of the same rule) already defines is ignored with a warning, as ``mergeDestinationRule`` does. A rule
  without a creationTimestamp sorts first (Go's zero time);
* ``subsets[]`` → ``Subset`` (Istio's ``Subset``): ``name`` (a DNS-1123 label, as istiod's
  ``ValidateSubsetName``; another name drops that subset with a warning) and ``labels``: the subset
  holds the Service's endpoints whose pod labels include every one of them (no labels: every endpoint),
  as istiod selects a subset cluster's endpoints. ambit's workloads carry no labels, so the subset is
  resolved here into workload uids: the endpoints are the pods that translation makes workloads of (an
  IP, not Succeeded/Failed) and that the Service selects (``Workload.services``), given by the caller
  (``endpoints``). A subset's own ``trafficPolicy`` is **not supported**: ignored with a warning (the
  subset takes the Service's connection pool and outlier detection);
* ``trafficPolicy.connectionPool`` → ``ConnectionPool``: ``tcp.maxConnections``,
  ``http.http1MaxPendingRequests``, ``http.maxRequestsPerConnection``, ``http.http2MaxRequests``; 0 or
  unset is unlimited (``None``), as ``applyConnectionPool`` sets a threshold only for a value above 0.
  No limit set → no ``ConnectionPool``;
* ``trafficPolicy.outlierDetection`` (even ``{}``) → ``OutlierDetection`` as ``applyOutlierDetection``
  configures Envoy: ``consecutive5xxErrors`` unset → 5, 0 → off; ``consecutiveGatewayErrors`` unset or
  0 → off; ``interval`` (10 s) and ``baseEjectionTime`` (30 s) Go durations (``10s``, ``1m``,
  ``500ms``, ``1.5s``: ``ambit.resources.durations``); ``maxEjectionPercent`` 0 or unset → 10 (Istio passes
  only a value above 0); ``minHealthPercent`` (0);
* not supported yet, each with a warning naming the rule and the field (the rest is kept):
  ``subsets[].trafficPolicy``, ``trafficPolicy.portLevelSettings``, ``.loadBalancer``, ``.tls``, ``.tunnel``,
  ``.proxyProtocol``, ``.retryBudget``, the connection pool's timeouts, keepalives, ``maxRetries``,
  ``maxConcurrentStreams``, ``h2UpgradePolicy``, ``useClientProtocol``, and outlier detection's
  ``splitExternalLocalOriginErrors``, ``consecutiveLocalOriginFailures``,
  ``outlierDetectionHttpErrorCodes``; the deprecated ``consecutiveErrors`` is ignored (istiod ignores it
  too, with a warning);
* ``exportTo`` is ignored, with a note: the rule applies at its Service's waypoint whatever it says
  (a waypoint serves its Service for every client namespace).

Warnings name the rule (``DestinationRule <ns>/<name>``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ambit.model.traffic_policy import (
    DEFAULT_BASE_EJECTION_TIME,
    DEFAULT_CONSECUTIVE_5XX,
    DEFAULT_INTERVAL,
    DEFAULT_MAX_EJECTION_PERCENT,
    DEFAULT_MIN_HEALTH_PERCENT,
    ConnectionPool,
    OutlierDetection,
    Subset,
    TrafficPolicy,
)
from ambit.model.workload import Service, service_hostname
from ambit.resources.checks import check_dns1123_label
from ambit.resources.durations import MILLISECOND, SECOND, parse_go_nanos
from ambit.resources.objects import (
    JSON,
    labels_subset,
    mapping,
    name_of,
    namespace_of,
    service_for_host,
    text,
)

NETWORKING_GROUP = "networking.istio.io"
KIND = "DestinationRule"
_EPOCH = datetime.min.replace(tzinfo=UTC)  # Go's zero time: a rule without a timestamp sorts first
_MAX_UINT32 = 2**32 - 1

Endpoint = tuple[str, Mapping[str, str]]  # (Workload.uid, the pod's labels) of one endpoint of a Service
_UNSUPPORTED_POLICY = ("portLevelSettings", "loadBalancer", "tls", "tunnel", "proxyProtocol", "retryBudget")
_UNSUPPORTED_TCP = ("connectTimeout", "maxConnectionDuration", "idleTimeout", "tcpKeepalive")
_UNSUPPORTED_HTTP = (
    "maxRetries",
    "idleTimeout",
    "maxConcurrentStreams",
    "h2UpgradePolicy",
    "useClientProtocol",
    "http2KeepAlive",
)
_UNSUPPORTED_OUTLIER = (
    "splitExternalLocalOriginErrors",
    "consecutiveLocalOriginFailures",
    "outlierDetectionHttpErrorCodes",
)


@dataclass(frozen=True, slots=True)
class _Rule:
    """One DestinationRule whose host is a Service of its namespace, ready to be ranked."""

    name: str
    namespace: str
    created: datetime
    service_key: str
    policy: JSON | None  # spec.trafficPolicy, None when the rule has none
    subsets: tuple[Any, ...]  # spec.subsets as written

    @property
    def shown(self) -> str:
        return f"{KIND} {self.namespace}/{self.name}"

    @property
    def rank(self) -> tuple[datetime, str, str]:
        """Istio's order: creation time, then name, then namespace."""
        return (self.created, self.name, self.namespace)


def _integer(value: Any) -> int | None:
    """``value`` if it is an integer (a bool is not), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def resolve_host(host: str, namespace: str, cluster_domain: str) -> tuple[str, str] | None:
    """(Service namespace, Service name) that a DestinationRule ``host`` in ``namespace`` names, or None
    when it names no Kubernetes Service (``ambit.resources.objects.service_for_host``)."""
    return service_for_host(host, namespace, cluster_domain)


def _created(obj: JSON, what: str, warnings: list[str]) -> datetime:
    raw = text(mapping(obj, "metadata"), "creationTimestamp")
    if not raw:
        return _EPOCH
    try:
        created = datetime.fromisoformat(raw)
    except ValueError:
        warnings.append(f"{what}: creationTimestamp {raw!r} is not RFC 3339; taken as the oldest")
        return _EPOCH
    return created if created.tzinfo is not None else created.replace(tzinfo=UTC)


def _unsupported(spec: JSON, fields: Iterable[str], where: str, what: str, warnings: list[str]) -> None:
    for field in fields:
        if spec.get(field) is not None:
            warnings.append(f"{what}: {where}{field} is not supported yet; it is ignored")


def _candidate(
    obj: JSON, services: Mapping[str, Service], cluster_domain: str, warnings: list[str]
) -> _Rule | None:
    """The rule, if its host is a Service of its namespace (else None, with a warning)."""
    ns, name = namespace_of(obj), name_of(obj)
    what = f"{KIND} {ns}/{name}"
    spec = mapping(obj, "spec")
    host = text(spec, "host")
    if spec.get("workloadSelector") is not None:
        warnings.append(
            f"{what}: workloadSelector is not supported yet (such a rule applies only to the workloads it "
            "selects); the rule is ignored"
        )
        return None
    if "*" in host:
        warnings.append(f"{what}: wildcard host {host!r} is not supported yet; the rule is ignored")
        return None
    service_ns, service_name = resolve_host(host, ns, cluster_domain) or ("", "")
    fqdn = service_hostname(service_name, service_ns, cluster_domain)
    key = f"{service_ns}/{fqdn}"
    # A partial name (``web.ns``, ``web.ns.svc``) counts only if it names a Service: ``example.com`` is
    # an external host, not Service ``example`` of namespace ``com``.
    if not service_name or ("." in host and host != fqdn and key not in services):
        warnings.append(
            f"{what}: host {host!r} is not a Service of the cluster (ServiceEntry hosts are not supported); "
            "the rule is ignored"
        )
        return None
    if service_ns != ns:
        warnings.append(
            f"{what}: host {host!r} is a Service in another namespace; DestinationRules for another "
            "namespace's Service are not supported yet; the rule is ignored"
        )
        return None
    if key not in services:
        warnings.append(f"{what}: host {host!r}: no such Service; the rule is ignored")
        return None
    if "." in host and host != fqdn:
        warnings.append(
            f"{what}: host {host!r} is read as Service {ns}/{service_name}, but Istio takes a host with a "
            f"dot as fully qualified and would match no Service: write {service_name!r} or {fqdn!r}"
        )
    if spec.get("exportTo") is not None:
        warnings.append(
            f"{what}: exportTo is ignored: the rule applies at its Service's waypoint for every client"
        )
    raw_policy = spec.get("trafficPolicy")
    policy = raw_policy if isinstance(raw_policy, dict) else None
    raw_subsets = spec.get("subsets")
    if raw_subsets is not None and not isinstance(raw_subsets, list):
        warnings.append(f"{what}: subsets is not a list; it is ignored")
    subsets = tuple(raw_subsets) if isinstance(raw_subsets, list) else ()
    return _Rule(name, ns, _created(obj, what, warnings), key, policy, subsets)


# --- the traffic policy -----------------------------------------------------------------------


def _limit(spec: JSON, field: str, where: str, what: str, warnings: list[str]) -> int | None:
    """A connection-pool threshold: a positive int32, else None (0 and unset: unlimited)."""
    raw = spec.get(field)
    if raw is None:
        return None
    value = _integer(raw)
    if value is None or value < 0 or value > _MAX_UINT32:
        warnings.append(f"{what}: {where}{field} {raw!r} is not a non-negative count; it is ignored")
        return None
    return value or None


def _connection_pool(spec: JSON, what: str, warnings: list[str]) -> ConnectionPool | None:
    tcp, http = mapping(spec, "tcp"), mapping(spec, "http")
    where = "trafficPolicy.connectionPool."
    _unsupported(tcp, _UNSUPPORTED_TCP, where + "tcp.", what, warnings)
    _unsupported(http, _UNSUPPORTED_HTTP, where + "http.", what, warnings)
    pool = ConnectionPool(
        max_connections=_limit(tcp, "maxConnections", where + "tcp.", what, warnings),
        max_pending_requests=_limit(http, "http1MaxPendingRequests", where + "http.", what, warnings),
        max_requests_per_connection=_limit(http, "maxRequestsPerConnection", where + "http.", what, warnings),
        max_requests=_limit(http, "http2MaxRequests", where + "http.", what, warnings),
    )
    return pool if pool != ConnectionPool() else None


def _seconds(spec: JSON, field: str, default: float, what: str, warnings: list[str]) -> float:
    raw = spec.get(field)
    if raw is None:
        return default
    try:
        nanos = parse_go_nanos(raw) if isinstance(raw, str) else None
    except ValueError:
        nanos = None
    if nanos is None or nanos < MILLISECOND:
        warnings.append(
            f"{what}: trafficPolicy.outlierDetection.{field} {raw!r} is not a duration of at least 1ms; "
            f"the default {default:g}s is used"
        )
        return default
    return nanos / SECOND


def _errors(spec: JSON, field: str, default: int | None, what: str, warnings: list[str]) -> int | None:
    """A consecutive-error threshold: unset → ``default``, 0 → off (None)."""
    raw = spec.get(field)
    if raw is None:
        return default
    value = _integer(raw)
    if value is None or not 0 <= value <= _MAX_UINT32:
        warnings.append(
            f"{what}: trafficPolicy.outlierDetection.{field} {raw!r} is not a count; "
            f"{'off' if default is None else default} is used"
        )
        return default
    return value or None


def _percent(spec: JSON, field: str, default: int, what: str, warnings: list[str], *, zero: int) -> int:
    """A percentage in 0..100; unset → ``default``, 0 → ``zero``."""
    raw = spec.get(field)
    if raw is None:
        return default
    value = _integer(raw)
    if value is None or not 0 <= value <= 100:
        warnings.append(
            f"{what}: trafficPolicy.outlierDetection.{field} {raw!r} is not a percentage in 0..100; "
            f"{default} is used"
        )
        return default
    return value or zero


def _outlier_detection(spec: JSON, what: str, warnings: list[str]) -> OutlierDetection:
    _unsupported(spec, _UNSUPPORTED_OUTLIER, "trafficPolicy.outlierDetection.", what, warnings)
    if spec.get("consecutiveErrors") is not None:
        warnings.append(
            f"{what}: trafficPolicy.outlierDetection.consecutiveErrors is deprecated and ignored (as by "
            "Istio); use consecutive5xxErrors or consecutiveGatewayErrors"
        )
    return OutlierDetection(
        consecutive_5xx=_errors(spec, "consecutive5xxErrors", DEFAULT_CONSECUTIVE_5XX, what, warnings),
        consecutive_gateway_errors=_errors(spec, "consecutiveGatewayErrors", None, what, warnings),
        interval=_seconds(spec, "interval", DEFAULT_INTERVAL, what, warnings),
        base_ejection_time=_seconds(spec, "baseEjectionTime", DEFAULT_BASE_EJECTION_TIME, what, warnings),
        max_ejection_percent=_percent(
            spec,
            "maxEjectionPercent",
            DEFAULT_MAX_EJECTION_PERCENT,
            what,
            warnings,
            zero=DEFAULT_MAX_EJECTION_PERCENT,
        ),
        min_health_percent=_percent(
            spec, "minHealthPercent", DEFAULT_MIN_HEALTH_PERCENT, what, warnings, zero=0
        ),
    )


def _traffic_policy(
    rule: _Rule, policy: JSON, warnings: list[str]
) -> tuple[ConnectionPool | None, OutlierDetection | None]:
    what = rule.shown
    _unsupported(policy, _UNSUPPORTED_POLICY, "trafficPolicy.", what, warnings)
    raw_pool = policy.get("connectionPool")
    raw_outlier = policy.get("outlierDetection")
    pool = _connection_pool(raw_pool, what, warnings) if isinstance(raw_pool, dict) else None
    outlier = _outlier_detection(raw_outlier, what, warnings) if isinstance(raw_outlier, dict) else None
    return pool, outlier


# --- subsets ------------------------------------------------------------------------------------


def _subset_labels(raw: Any) -> dict[str, str] | None:
    """A subset's ``labels``: ``{}`` when unset, None when not a map of strings (unusable)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict) or any(
        not (isinstance(k, str) and isinstance(v, str)) for k, v in raw.items()
    ):
        return None
    return raw


def _subsets(
    rule: _Rule,
    endpoints: Sequence[Endpoint],
    defined: dict[str, str],
    warnings: list[str],
) -> list[Subset]:
    """The usable subsets of ``rule`` not defined before (``defined``: name → the rule that defined it,
    updated), each resolved against the Service's ``endpoints``."""
    what = rule.shown
    out: list[Subset] = []
    for position, raw in enumerate(rule.subsets):
        where = f"{what}: subsets[{position}]"
        name = raw.get("name") if isinstance(raw, dict) else None
        if not isinstance(name, str) or check_dns1123_label(name) is not None:
            warnings.append(f"{where}: name {name!r} is not a DNS-1123 label; that subset is ignored")
            continue
        where = f"{where} ({name})"
        wanted = _subset_labels(raw.get("labels"))
        if wanted is None:
            warnings.append(f"{where}: labels is not a map of strings; that subset is ignored")
            continue
        if name in defined:
            earlier = "this rule" if defined[name] == what else defined[name]
            warnings.append(
                f"{where}: subset {name!r} is already defined by {earlier}; this one is ignored (as in "
                "Istio, the oldest definition wins)"
            )
            continue
        if raw.get("trafficPolicy") is not None:
            warnings.append(
                f"{where}: trafficPolicy is not supported yet; it is ignored (the subset takes the "
                "Service's connection pool and outlier detection)"
            )
        defined[name] = what
        members = sorted({uid for uid, pod_labels in endpoints if labels_subset(wanted, pod_labels)})
        out.append(Subset(name, tuple(members)))
    return out


def _merged(
    rules: Sequence[_Rule], endpoints: Sequence[Endpoint], warnings: list[str]
) -> TrafficPolicy | None:
    """The rules of one Service, oldest first, merged as ``mergeDestinationRule`` does (module docstring);
    None when they give nothing to apply."""
    winner: _Rule | None = None
    pool: ConnectionPool | None = None
    outlier: OutlierDetection | None = None
    defined: dict[str, str] = {}
    subsets: list[Subset] = []
    for rule in rules:
        if rule.policy is not None:
            if winner is not None:
                warnings.append(
                    f"{rule.shown}: {winner.shown} is older and also sets a trafficPolicy for Service "
                    f"{rule.service_key}; the oldest rule's trafficPolicy wins whole (as in Istio), this "
                    "one's is ignored"
                )
            else:
                winner = rule
                pool, outlier = _traffic_policy(rule, rule.policy, warnings)
        subsets.extend(_subsets(rule, endpoints, defined, warnings))
    if pool is None and outlier is None and not subsets:
        return None
    oldest = rules[0]
    return TrafficPolicy(
        oldest.name,
        oldest.namespace,
        oldest.service_key,
        pool,
        outlier,
        tuple(sorted(subsets, key=lambda subset: subset.name)),
    )


# --- entry points -------------------------------------------------------------------------------


def convert_destination_rules(
    rules: Iterable[JSON],
    services: Mapping[str, Service],
    *,
    cluster_domain: str,
    warnings: list[str],
    endpoints: Mapping[str, Sequence[Endpoint]] | None = None,
) -> dict[str, TrafficPolicy]:
    """Every traffic policy by ``TrafficPolicy.key``; problems are appended to ``warnings``. ``services``
    are the translated Services by key (a rule's host must be one of them); ``endpoints`` each Service's
    endpoints by Service key, as (workload uid, pod labels), for the subsets (none when not given)."""
    by_service: dict[str, list[_Rule]] = {}
    for obj in rules:
        if text(obj, "kind") != KIND:
            continue
        if not text(obj, "apiVersion").startswith(NETWORKING_GROUP + "/"):
            what = f"{KIND} {namespace_of(obj)}/{name_of(obj)}"
            version = text(obj, "apiVersion")
            warnings.append(f"{what}: apiVersion {version!r} is not {NETWORKING_GROUP}; ignored")
            continue
        rule = _candidate(obj, services, cluster_domain, warnings)
        if rule is not None:
            by_service.setdefault(rule.service_key, []).append(rule)
    out: dict[str, TrafficPolicy] = {}
    for service_key in sorted(by_service):
        ranked = sorted(by_service[service_key], key=lambda r: r.rank)
        value = _merged(ranked, (endpoints or {}).get(service_key, ()), warnings)
        if value is not None:
            out[value.key] = value
    return out


def defined_subsets(policies: Iterable[TrafficPolicy]) -> dict[str, frozenset[str]]:
    """Service key → the names of the subsets its DestinationRules define (for VirtualService
    destinations that name a subset)."""
    return {policy.service_key: frozenset(s.name for s in policy.subsets) for policy in policies}
