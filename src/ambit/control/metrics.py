"""The control plane's Prometheus metrics, with Istio's names where istiod has one.

| metric | meaning |
|---|---|
| `pilot_xds` | proxies connected to this replica now |
| `pilot_xds_pushes_total{type}` | xDS responses sent |
| `pilot_xds_push_bytes_total` | bytes of those responses |
| `pilot_proxy_convergence_time` | seconds from a new snapshot to a push carrying it |
| `pilot_total_xds_rejects_total{type}` | NACKs received |
| `ambit_translation_seconds`, `ambit_translations_total` | the translation step |
| `citadel_server_success_cert_issuance_count` | certificates signed |
| `citadel_server_csr_denied_count` | certificate requests refused (node authorization or bad CSR) |

Each replica has its own registry, so several replicas in one process (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StatsCollector(Collector):
    """Reads the xDS and CA servers' own counters at scrape time (no double bookkeeping)."""

    def __init__(self, xds_stats: Any, ca_stats: Any) -> None:
        self.xds_stats = xds_stats
        self.ca_stats = ca_stats

    def collect(self) -> Iterator[Any]:
        yield GaugeMetricFamily(
            "pilot_xds", "Proxies connected to this replica.", value=self.xds_stats.streams_active
        )
        yield CounterMetricFamily(
            "citadel_server_success_cert_issuance_count", "Certificates signed.", value=self.ca_stats.issued
        )
        yield CounterMetricFamily(
            "citadel_server_csr_denied_count",
            "Certificate requests refused.",
            value=self.ca_stats.denied + self.ca_stats.invalid,
        )


class ControlPlaneMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.pushes = Counter("pilot_xds_pushes", "xDS responses sent.", ["type"], registry=r)
        self.push_bytes = Counter("pilot_xds_push_bytes", "Bytes of xDS responses sent.", registry=r)
        self.rejects = Counter("pilot_total_xds_rejects", "xDS NACKs received.", ["type"], registry=r)
        self.convergence_seconds = Histogram(
            "pilot_proxy_convergence_time",
            "Seconds from a new snapshot to a push carrying it.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.translations = Counter("ambit_translations", "Translations of the store.", registry=r)
        self.translation_seconds = Histogram(
            "ambit_translation_seconds", "Seconds per translation.", buckets=_LATENCY_BUCKETS, registry=r
        )

    def follow(self, xds_stats: Any, ca_stats: Any) -> None:
        self.registry.register(_StatsCollector(xds_stats, ca_stats))

    def exposition(self) -> bytes:
        """Prometheus text format (blocking: call it in an executor)."""
        return bytes(generate_latest(self.registry))
