"""A Service's DestinationRule state in one waypoint replica: outlier detection, the request limit and the
HTTP/1.1 connection slots (:class:`ServiceTraffic`), kept per Service across config pushes while the
policy is unchanged (:class:`TrafficStates`), and what the router asks of it per request."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import Service
from ambit.proxy.config_dump import OutlierView
from ambit.routing import OutboundPlan
from ambit.routing.outlier import OutlierTracker, PendingLimiter
from ambit.state.snapshot import Snapshot
from ambit.waypoint.connection_slots import ConnectionSlots

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServiceTraffic:
    """A Service's DestinationRule state in this waypoint: its outlier tracker, request limiter and
    HTTP/1.1 connection slots."""

    policy: TrafficPolicy
    outliers: OutlierTracker | None
    requests: PendingLimiter
    connections: ConnectionSlots | None = None  # tcp.maxConnections, for HTTP/1.1 upstreams


class TrafficStates:
    """Every Service's :class:`ServiceTraffic` in this replica, by service key."""

    def __init__(self) -> None:
        self._traffic: dict[str, ServiceTraffic] = {}

    def get(self, snapshot: Snapshot, service: Service | None) -> ServiceTraffic | None:
        """The DestinationRule state of ``service``: made when its policy appears, kept while the
        policy is unchanged (the tracker's ejections survive config pushes), dropped when it goes."""
        if service is None:
            return None
        policy = snapshot.traffic_policy_for(service.key)
        state = self._traffic.get(service.key)
        if policy is None:
            self._traffic.pop(service.key, None)
            return None
        if state is None or state.policy != policy:
            pool = policy.connection_pool
            limit = None
            connections = None
            if pool is not None:
                # without maxConnections every request waits for a connection of its own, so the pending
                # limit bounds the requests in flight; with it, requests wait for one of its slots
                pending = pool.max_pending_requests if pool.max_connections is None else None
                limits = [v for v in (pool.max_requests, pending) if v is not None]
                limit = min(limits) if limits else None
                if pool.max_connections is not None:
                    connections = ConnectionSlots(pool.max_connections, pool.max_pending_requests)
            outliers = (
                OutlierTracker(policy.outlier_detection) if policy.outlier_detection is not None else None
            )
            if state is not None and state.policy.outlier_detection == policy.outlier_detection:
                outliers = state.outliers
            requests = PendingLimiter(limit)
            if state is not None and state.policy.connection_pool == policy.connection_pool:
                # the same limits (e.g. only a subset's members changed): keep the counters, which the
                # requests in flight hold, so the limits never count twice
                requests, connections = state.requests, state.connections
            state = ServiceTraffic(policy, outliers, requests, connections)
            self._traffic[service.key] = state
        return state

    def outlier_views(self, snapshot: Snapshot) -> tuple[OutlierView, ...]:
        """Every endpoint the outlier detection of a Service's DestinationRule tracks (config dump)."""
        now = time.monotonic()
        views: list[OutlierView] = []
        for key in sorted(self._traffic):
            outliers = self._traffic[key].outliers
            for host in outliers.state(now) if outliers is not None else ():
                endpoint = snapshot.workloads.get(host.uid)
                views.append(
                    OutlierView(
                        service=key,
                        uid=host.uid,
                        name=f"{endpoint.namespace}/{endpoint.name}" if endpoint is not None else "",
                        ejected=host.ejected,
                        remaining=None
                        if host.returns_at is None
                        else round(max(host.returns_at - now, 0.0), 3),
                        ejections=host.ejections,
                        consecutive_5xx=host.consecutive_5xx,
                        consecutive_gateway_errors=host.consecutive_gateway_errors,
                    )
                )
        return tuple(views)


def without_outliers(plans: list[OutboundPlan], traffic: ServiceTraffic | None) -> list[OutboundPlan]:
    """``plans`` without the endpoints the Service's outlier detection ejects now (Envoy drops them
    from the load-balancing pool; the tracker never ejects more than maxEjectionPercent)."""
    if traffic is None or traffic.outliers is None:
        return plans
    uids = [p.endpoint.uid for p in plans if p.endpoint is not None]
    out = traffic.outliers.ejected(uids, time.monotonic())
    return [p for p in plans if p.endpoint is None or p.endpoint.uid not in out]


def observe_attempt(
    traffic: ServiceTraffic | None, plan: OutboundPlan, status: int | None, hosts: int
) -> None:
    """Feed one attempt's outcome to the Service's outlier detection (None: no response at all)."""
    endpoint = plan.endpoint
    outliers = traffic.outliers if traffic is not None else None
    if (
        outliers is not None
        and endpoint is not None
        and outliers.observe(endpoint.uid, status, time.monotonic(), hosts=hosts)
    ):
        log.info("outlier detection ejected %s/%s", endpoint.namespace, endpoint.name)
