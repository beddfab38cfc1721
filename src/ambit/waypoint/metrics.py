"""Istio's request metrics, as a waypoint reports them (``reporter="waypoint"``), on its 15020.

| metric | type | what |
|---|---|---|
| `istio_requests_total` | counter | one per request answered (by the upstream or by the waypoint) |
| `istio_request_duration_milliseconds` | histogram | request start to the response's last byte |
| `istio_request_bytes` | histogram | request body bytes |
| `istio_response_bytes` | histogram | response body bytes |
| `ambit_waypoint_rate_limited_requests_total` | counter | requests an HTTPLocalRateLimitPolicy refused |

The last one is ambit's own, labelled ``policy`` (``<namespace>/<name>``) and ``bucket`` (``total``,
``identity``, ``override``); the others are Istio's.

Labels are Istio's standard set (``source_*``, ``destination_*``, ``request_protocol`` (``http`` or
``grpc``), ``response_code``, ``grpc_response_status`` (the ``grpc-status`` trailer, else the header,
else empty), ``response_flags`` (Envoy's: ``-``, ``UF`` upstream connect failure, ``UC`` upstream
connection termination, ``NR`` no route, ``UH`` no healthy upstream, ``RBAC`` denied by policy,
``RL`` rate limited, ``DC`` downstream connection termination), ``connection_security_policy``
(``mutual_tls``: the waypoint only speaks HBONE). Unknown values are ``unknown``, as in Istio.
Buckets are Istio's default
(``[0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
1800000, 3600000]`` ms for the duration; ``1, 10, ..., 10^8`` bytes for the sizes).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from ambit.model.workload import Service, Workload
from ambit.proxy.records import UNKNOWN, workload_labels

REPORTER = "waypoint"
DURATION_BUCKETS = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
    1800000, 3600000,
)  # fmt: skip
SIZE_BUCKETS = tuple(float(10**i) for i in range(9))


@dataclass(frozen=True, slots=True)
class RequestLabels:
    """One label set of the request metrics (field order = label order)."""

    reporter: str = REPORTER
    source_workload: str = UNKNOWN
    source_canonical_service: str = UNKNOWN
    source_canonical_revision: str = UNKNOWN
    source_workload_namespace: str = UNKNOWN
    source_principal: str = UNKNOWN
    destination_service: str = UNKNOWN
    destination_service_namespace: str = UNKNOWN
    destination_service_name: str = UNKNOWN
    destination_workload: str = UNKNOWN
    destination_canonical_service: str = UNKNOWN
    destination_canonical_revision: str = UNKNOWN
    destination_workload_namespace: str = UNKNOWN
    destination_principal: str = UNKNOWN
    request_protocol: str = "http"
    response_code: str = "0"
    grpc_response_status: str = ""
    response_flags: str = "-"
    connection_security_policy: str = "mutual_tls"


LABEL_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(RequestLabels))


def request_labels(
    *,
    source: Workload | None,
    source_principal: str,
    destination: Workload | None,
    service: Service | None,
    protocol: str,
    status: int,
    grpc_status: str,
    flags: str,
) -> RequestLabels:
    """The labels of one request; ``source_principal`` is a SPIFFE id (or empty when unknown)."""
    src, dst = workload_labels(source), workload_labels(destination)
    return RequestLabels(
        source_workload=src[0],
        source_canonical_service=src[1],
        source_canonical_revision=src[2],
        source_workload_namespace=src[3],
        source_principal=source_principal or UNKNOWN,
        destination_service=service.hostname if service is not None else UNKNOWN,
        destination_service_namespace=service.namespace if service is not None else UNKNOWN,
        destination_service_name=service.name if service is not None else UNKNOWN,
        destination_workload=dst[0],
        destination_canonical_service=dst[1],
        destination_canonical_revision=dst[2],
        destination_workload_namespace=dst[3],
        destination_principal=str(destination.identity) if destination is not None else UNKNOWN,
        request_protocol=protocol,
        response_code=str(status),
        grpc_response_status=grpc_status,
        response_flags=flags or "-",
    )


@dataclass(slots=True)
class _Series:
    requests: Any
    duration: Any
    request_bytes: Any
    response_bytes: Any


class RequestMetrics:
    """The request metrics of one waypoint, in its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, names = self.registry, list(LABEL_NAMES)
        self.requests = Counter("istio_requests", "Requests.", names, registry=r)
        self.duration = Histogram(
            "istio_request_duration_milliseconds",
            "Request duration.",
            names,
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        self.request_bytes = Histogram(
            "istio_request_bytes", "Request body size.", names, registry=r, buckets=SIZE_BUCKETS
        )
        self.response_bytes = Histogram(
            "istio_response_bytes", "Response body size.", names, registry=r, buckets=SIZE_BUCKETS
        )
        self.rate_limited_requests = Counter(
            "ambit_waypoint_rate_limited_requests",
            "Requests answered 429 by an HTTPLocalRateLimitPolicy, by policy and refusing bucket.",
            ["policy", "bucket"],
            registry=r,
        )
        self._series: dict[RequestLabels, _Series] = {}

    def rate_limited(self, policy: str, bucket: str) -> None:
        """One request refused by ``policy`` (``<namespace>/<name>``) in its ``bucket`` (``total``,
        ``identity`` or ``override``)."""
        self.rate_limited_requests.labels(policy, bucket).inc()

    def record(
        self, labels: RequestLabels, *, duration_ms: float, request_bytes: int, response_bytes: int
    ) -> None:
        series = self._series.get(labels)
        if series is None:
            values = dataclasses.astuple(labels)
            series = self._series[labels] = _Series(
                self.requests.labels(*values),
                self.duration.labels(*values),
                self.request_bytes.labels(*values),
                self.response_bytes.labels(*values),
            )
        series.requests.inc()
        series.duration.observe(duration_ms)
        series.request_bytes.observe(request_bytes)
        series.response_bytes.observe(response_bytes)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))

    async def exposition_async(self) -> bytes:
        """:meth:`exposition` off the event loop (a scrape walks every series)."""
        return await asyncio.get_running_loop().run_in_executor(None, self.exposition)
