"""Wire ↔ model for the TrafficPolicy type (``tp/`` names): the DestinationRules of one Service (connection
pool, outlier detection, subsets), read only by waypoints (:mod:`ambit.model.traffic_policy`).

Decoding checks limits and error thresholds of at least 1 when set, positive finite durations,
percentages in 0..100, a ``<namespace>/<hostname>`` service key, and subsets with non-empty, unique
names and non-empty, unique workload uids (the order on the wire does not matter: both are sorted).
"""

from __future__ import annotations

from collections.abc import Iterable

from ambit.model.traffic_policy import ConnectionPool, OutlierDetection, Subset, TrafficPolicy
from ambit.state.snapshot import resource_name
from ambit.xds.codec_fields import (
    XdsRejected,
    int_percent,
    key_of,
    optional_count,
    required,
    seconds,
    segment,
    uint32,
)
from ambit.xds.pb.traffic.v1 import traffic_policy_pb2

_POOL_FIELDS = ("max_connections", "max_pending_requests", "max_requests_per_connection", "max_requests")


def traffic_policy_to_pb(policy: TrafficPolicy) -> traffic_policy_pb2.TrafficPolicy:
    name = resource_name(policy)
    pb = traffic_policy_pb2.TrafficPolicy(
        name=policy.name, namespace=policy.namespace, service_key=policy.service_key
    )
    pool = policy.connection_pool
    if pool is not None:
        pb.connection_pool.SetInParent()
        for field in _POOL_FIELDS:
            limit = getattr(pool, field)
            if limit is not None:
                setattr(pb.connection_pool, field, uint32(name, limit, field))
    detection = policy.outlier_detection
    if detection is not None:
        out = pb.outlier_detection
        out.SetInParent()
        if detection.consecutive_5xx is not None:
            out.consecutive_5xx = uint32(name, detection.consecutive_5xx, "consecutive_5xx")
        if detection.consecutive_gateway_errors is not None:
            out.consecutive_gateway_errors = uint32(
                name, detection.consecutive_gateway_errors, "consecutive_gateway_errors"
            )
        out.interval = detection.interval
        out.base_ejection_time = detection.base_ejection_time
        out.max_ejection_percent = uint32(name, detection.max_ejection_percent, "max_ejection_percent")
        out.min_health_percent = uint32(name, detection.min_health_percent, "min_health_percent")
    for subset in policy.subsets:
        pb.subsets.add(name=subset.name, workloads=subset.workloads)
    return pb


def _subsets_from_pb(name: str, subsets: Iterable[traffic_policy_pb2.Subset]) -> tuple[Subset, ...]:
    found: dict[str, Subset] = {}
    for pb in subsets:
        subset_name = required(name, "subset name", pb.name)
        if subset_name in found:
            raise XdsRejected(name, f"subset {subset_name!r} is defined twice")
        uids = [required(name, f"subset {subset_name!r} workload uid", uid) for uid in pb.workloads]
        if len(set(uids)) != len(uids):
            raise XdsRejected(name, f"subset {subset_name!r} lists a workload twice")
        found[subset_name] = Subset(subset_name, tuple(sorted(uids)))
    return tuple(found[key] for key in sorted(found))


def traffic_policy_from_pb(name: str, pb: traffic_policy_pb2.TrafficPolicy) -> TrafficPolicy:
    pool: ConnectionPool | None = None
    if pb.HasField("connection_pool"):
        pool = ConnectionPool(
            **{field: optional_count(name, field, pb.connection_pool, field) for field in _POOL_FIELDS}
        )
    detection: OutlierDetection | None = None
    if pb.HasField("outlier_detection"):
        od = pb.outlier_detection
        detection = OutlierDetection(
            consecutive_5xx=optional_count(name, "consecutive_5xx", od, "consecutive_5xx"),
            consecutive_gateway_errors=optional_count(
                name, "consecutive_gateway_errors", od, "consecutive_gateway_errors"
            ),
            interval=seconds(name, "outlier detection interval", od.interval),
            base_ejection_time=seconds(name, "base ejection time", od.base_ejection_time),
            max_ejection_percent=int_percent(name, "max_ejection_percent", od.max_ejection_percent),
            min_health_percent=int_percent(name, "min_health_percent", od.min_health_percent),
        )
    return TrafficPolicy(
        name=segment(name, "traffic policy name", pb.name),
        namespace=segment(name, "namespace", pb.namespace),
        service_key=key_of(name, "service key", pb.service_key),
        connection_pool=pool,
        outlier_detection=detection,
        subsets=_subsets_from_pb(name, pb.subsets),
    )
