"""Istio's TCP metrics: names, label sets, cached children, bytes at close."""

from __future__ import annotations

import asyncio

from ambit.model.identity import Identity
from ambit.model.workload import Service, ServicePort, Workload
from ambit.proxy.records import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, ConnectionRecord
from ambit.routing import FLAG_DENY
from ambit.ztunnel.metrics import (
    DESTINATION,
    LABEL_NAMES,
    SOURCE,
    UNKNOWN,
    Metrics,
    TcpLabels,
    labels_for,
    tcp_labels,
)

CLIENT = Identity("cluster.local", "default", "sleep")
SERVER = Identity("cluster.local", "default", "web")
A = Workload(
    "a", "a-7f9", "default", "sleep", "n1", ("10.244.1.2",), workload_name="sleep", canonical_name="sleep"
)
B = Workload("b", "b-4c2", "prod", "web", "n2", ("10.244.2.3",), canonical_revision="v2")
SVC = Service("web", "prod", "web.prod.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),))


def value(metrics: Metrics, name: str, labels: TcpLabels) -> float | None:
    return metrics.registry.get_sample_value(name, dict(zip(LABEL_NAMES, _values(labels), strict=True)))


def _values(labels: TcpLabels) -> tuple[str, ...]:
    return tuple(getattr(labels, name) for name in LABEL_NAMES)


def test_the_required_labels_exist() -> None:
    required = {
        "reporter",
        "source_workload",
        "source_workload_namespace",
        "source_principal",
        "destination_workload",
        "destination_workload_namespace",
        "destination_principal",
        "destination_service",
        "connection_security_policy",
        "response_flags",
    }
    assert required <= set(LABEL_NAMES)


def test_labels_of_a_meshed_connection() -> None:
    labels = tcp_labels(
        SOURCE,
        source=A,
        source_principal=CLIENT,
        destination=B,
        destination_principal=SERVER,
        service=SVC,
        mutual_tls=True,
    )
    assert labels.reporter == "source"
    assert labels.source_workload == "sleep"  # the workload (deployment) name, not the pod name
    assert labels.source_canonical_service == "sleep"
    assert labels.source_workload_namespace == "default"
    assert labels.source_principal == "spiffe://cluster.local/ns/default/sa/sleep"
    assert labels.destination_workload == "b-4c2"  # no workload name: the pod's
    assert labels.destination_canonical_revision == "v2"
    assert labels.destination_workload_namespace == "prod"
    assert labels.destination_principal == "spiffe://cluster.local/ns/default/sa/web"
    assert labels.destination_service == "web.prod.svc.cluster.local"
    assert labels.destination_service_name == "web"
    assert labels.destination_service_namespace == "prod"
    assert labels.connection_security_policy == "mutual_tls"
    assert labels.response_flags == "-"
    assert labels.request_protocol == "tcp"


def test_unknown_parts_are_unknown_and_plaintext_is_none() -> None:
    labels = tcp_labels(
        DESTINATION,
        source=None,
        source_principal=None,
        destination=B,
        destination_principal=None,
        service=None,
        mutual_tls=False,
    )
    assert labels.source_workload == UNKNOWN
    assert labels.source_principal == UNKNOWN
    assert labels.destination_service == UNKNOWN
    assert labels.connection_security_policy == "none"


def test_children_are_cached_per_label_set() -> None:
    metrics = Metrics()
    labels = TcpLabels(SOURCE, source_workload="a")
    first = metrics.series(labels)
    assert metrics.series(TcpLabels(SOURCE, source_workload="a")) is first
    assert metrics.series(TcpLabels(SOURCE, source_workload="b")) is not first
    assert metrics.cached_series == 2


def test_open_then_close_counts_once_and_adds_bytes_at_close() -> None:
    metrics = Metrics()
    labels = TcpLabels(DESTINATION, source_principal="spiffe://cluster.local/ns/default/sa/sleep")
    conn = metrics.connection(labels)
    assert value(metrics, "istio_tcp_connections_opened_total", labels) == 1
    assert value(metrics, "istio_tcp_connections_closed_total", labels) == 0
    conn.close(received=100, sent=7)
    conn.close(received=100, sent=7)  # idempotent
    assert value(metrics, "istio_tcp_connections_closed_total", labels) == 1
    assert value(metrics, "istio_tcp_received_bytes_total", labels) == 100
    assert value(metrics, "istio_tcp_sent_bytes_total", labels) == 7


def test_close_flags_label_the_close_not_the_open() -> None:
    metrics = Metrics()
    labels = TcpLabels(DESTINATION)
    metrics.connection(labels).close(received=0, sent=0, response_flags=FLAG_DENY)
    denied = TcpLabels(DESTINATION, response_flags=FLAG_DENY)
    assert value(metrics, "istio_tcp_connections_opened_total", labels) == 1
    assert value(metrics, "istio_tcp_connections_closed_total", labels) == 0
    assert value(metrics, "istio_tcp_connections_closed_total", denied) == 1


def test_each_ztunnel_has_its_own_registry_and_exposition_runs_off_the_loop() -> None:
    one, two = Metrics(), Metrics()
    one.connection(TcpLabels(SOURCE)).close(received=1, sent=2)
    text = asyncio.run(one.exposition_async()).decode()
    for name in (
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
    ):
        assert name in text
    assert 'reporter="source"' in text
    assert 'reporter="source"' not in two.exposition().decode()


def record(direction: str, hbone_addr: str | None) -> ConnectionRecord:
    return ConnectionRecord(
        direction=direction,
        src_addr=("10.244.1.2", 40000),
        dst_addr=("10.244.2.3", 8080),
        hbone_addr=hbone_addr,
        source=A,
        source_name="ignored-by-metrics",
        source_namespace="ignored-by-metrics",
        source_principal=CLIENT,
        destination=B,
        destination_name="ignored-by-metrics",
        destination_namespace="ignored-by-metrics",
        destination_principal=SERVER,
        service=SVC,
    )


def meshed(reporter: str, *, mutual_tls: bool) -> TcpLabels:
    return tcp_labels(
        reporter,
        source=A,
        source_principal=CLIENT,
        destination=B,
        destination_principal=SERVER,
        service=SVC,
        mutual_tls=mutual_tls,
    )


def test_labels_come_from_the_connection_record() -> None:
    assert labels_for(record(OUTBOUND, "10.244.2.3:8080")) == meshed(SOURCE, mutual_tls=True)
    assert labels_for(record(INBOUND, "10.244.2.3:8080")) == meshed(DESTINATION, mutual_tls=True)
    plain = labels_for(record(INBOUND_PLAINTEXT, None))
    assert plain == meshed(DESTINATION, mutual_tls=False)
    assert plain.connection_security_policy == "none"


async def test_open_counts_the_records_label_set() -> None:
    metrics = Metrics()
    conn = metrics.open(record(OUTBOUND, "10.244.2.3:8080"))
    labels = labels_for(record(OUTBOUND, "10.244.2.3:8080"))
    assert conn.labels == labels
    assert value(metrics, "istio_tcp_connections_opened_total", labels) == 1
