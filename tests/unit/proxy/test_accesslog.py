"""The access-log line: one JSON object per connection, every key present, on ambit.ztunnel.access."""

from __future__ import annotations

import json
import logging

import pytest

from ambit.proxy.accesslog import ACCESS_LOGGER, AccessRecord, emit, format_address, format_line

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

RECORD = AccessRecord(
    direction="outbound",
    src_addr="10.244.1.2:40000",
    dst_addr="10.96.0.10:80",
    bytes_sent=12,
    bytes_recv=3400,
    duration_ms=12.34567,
    outcome="ok",
    dst_hbone_addr="10.244.2.3:8080",
    src_identity="spiffe://cluster.local/ns/default/sa/sleep",
    error='quote " and\nnewline',
)


def test_line_shape() -> None:
    line = format_line(RECORD)
    assert "\n" not in line
    parsed = json.loads(line)
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
    emit(RECORD)
    records = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert len(records) == 1
    assert json.loads(records[0].getMessage())["direction"] == "outbound"
    assert records[0].access["outcome"] == "ok"  # type: ignore[attr-defined]


def test_emit_does_nothing_when_the_logger_is_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=ACCESS_LOGGER)
    emit(RECORD)
    assert not [r for r in caplog.records if r.name == ACCESS_LOGGER]
