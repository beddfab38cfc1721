"""The access-log line: one JSON object per connection, every key present, on ambit.ztunnel.access."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from ambit.model.identity import Identity
from ambit.model.workload import Service, ServicePort
from ambit.proxy.accesslog import ACCESS_LOGGER, emit, format_address, format_line, line
from ambit.proxy.records import OUTBOUND, ConnectionRecord

KEYS = [
    "direction",
    "src.addr",
    "src.workload",
    "src.namespace",
    "src.identity",
    "dst.addr",
    "dst.hbone_addr",
    "dst.service",
    "dst.workload",
    "dst.namespace",
    "dst.identity",
    "bytes_sent",
    "bytes_recv",
    "duration_ms",
    "outcome",
    "response_flags",
    "error",
]

RECORD = ConnectionRecord(
    direction=OUTBOUND,
    src_addr=("10.244.1.2", 40000),
    dst_addr=("10.96.0.10", 80),
    hbone_addr="10.244.2.3:8080",
    source=None,
    source_name=None,
    source_namespace=None,
    source_principal=Identity.parse("spiffe://cluster.local/ns/default/sa/sleep"),
    destination=None,
    destination_name=None,
    destination_namespace=None,
    destination_principal=None,
    service=None,
)

ERROR = 'quote " and\nnewline'


def end_of(record: ConnectionRecord) -> dict[str, Any]:
    """The line of ``record`` ending as the tests' connection did."""
    return line(record, bytes_sent=12, bytes_recv=3400, duration_ms=12.34567, outcome="ok", error=ERROR)


def test_line_shape() -> None:
    text = format_line(end_of(RECORD))
    assert "\n" not in text
    parsed = json.loads(text)
    assert list(parsed) == KEYS
    assert parsed["bytes_sent"] == 12 and parsed["bytes_recv"] == 3400
    assert parsed["duration_ms"] == 12.346
    assert parsed["dst.service"] is None
    assert parsed["response_flags"] == "-"
    assert parsed["error"] == 'quote " and\nnewline'


def test_format_address() -> None:
    assert format_address(("10.0.0.1", 80)) == "10.0.0.1:80"
    assert format_address(("fd00::1", 80)) == "[fd00::1]:80"
    assert format_address(None) is None


def test_emit_logs_one_line_on_the_access_logger(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    emit(RECORD, bytes_sent=12, bytes_recv=3400, duration_ms=12.34567, outcome="ok", error=ERROR)
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == 1
    assert json.loads(records[0].getMessage())["direction"] == "outbound"
    assert records[0].access["outcome"] == "ok"  # type: ignore[attr-defined]


def test_emit_does_nothing_when_the_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER)
    emit(RECORD, bytes_sent=12, bytes_recv=3400, duration_ms=12.34567, outcome="ok", error=ERROR)
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]


def test_line_names_both_sides_from_the_record() -> None:
    web = Service(
        "web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80, 8080),)
    )
    record = replace(
        RECORD,
        source_name="sleep-1",
        source_namespace="default",
        destination_name="web-1",
        destination_namespace="prod",
        destination_principal=Identity("cluster.local", "prod", "web"),
        service=web,
        dst_addr=("fd00::10", 80),
    )
    parsed = json.loads(format_line(end_of(record)))
    assert parsed["src.workload"] == "sleep-1" and parsed["src.namespace"] == "default"
    assert parsed["src.identity"] == "spiffe://cluster.local/ns/default/sa/sleep"
    assert parsed["dst.workload"] == "web-1" and parsed["dst.namespace"] == "prod"
    assert parsed["dst.identity"] == "spiffe://cluster.local/ns/prod/sa/web"
    assert parsed["dst.service"] == "web.default.svc.cluster.local"
    assert parsed["dst.addr"] == "[fd00::10]:80"
    assert parsed["src.addr"] == "10.244.1.2:40000"
    assert parsed["dst.hbone_addr"] == "10.244.2.3:8080"
