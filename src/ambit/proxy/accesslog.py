"""One structured access-log line per connection, when it ends (facts §1.9).

The line is a JSON object logged at INFO on the logger ``ambit.ztunnel.access`` (so it can be routed,
filtered or silenced like any logger; the record also carries the dict as ``record.access``). Keys
follow ztunnel's access log, and every key is always present (``null`` when unknown). The line is made
from the connection's :class:`~ambit.proxy.records.ConnectionRecord` (the same value the metrics
labels come from) and how it ended:

| key | meaning |
|---|---|
| `direction` | `outbound` (15001), `inbound` (HBONE, 15008) or `inbound_plaintext` (15006) |
| `src.addr`, `dst.addr` | the client's address; where it meant to go (`ip:port`) |
| `dst.hbone_addr` | the HBONE target (`:authority`), when tunnelled |
| `src.workload`, `src.namespace`, `src.identity` | the client side (identity = SPIFFE ID) |
| `dst.service`, `dst.workload`, `dst.namespace`, `dst.identity` | the server side |
| `bytes_sent` | bytes from the client toward the server |
| `bytes_recv` | bytes from the server back to the client |
| `duration_ms` | from accept to close |
| `outcome` | `ok`, `denied`, `refused` (routing, sync or no certificate) or `error` |
| `response_flags` | as the metrics (`-`, `DENY`, `CONNECT`, ...) |
| `error` | why it failed, else null |
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ambit.proxy.records import INBOUND, INBOUND_PLAINTEXT, OUTBOUND, Address, ConnectionRecord

ACCESS_LOGGER = "ambit.ztunnel.access"
log = logging.getLogger(ACCESS_LOGGER)

__all__ = [
    "ACCESS_LOGGER",
    "DENIED",
    "ERROR",
    "INBOUND",
    "INBOUND_PLAINTEXT",
    "OK",
    "OUTBOUND",
    "REFUSED",
    "emit",
    "format_address",
    "format_line",
    "line",
]

OK = "ok"
DENIED = "denied"
REFUSED = "refused"
ERROR = "error"


def format_address(address: Address | None) -> str | None:
    """``ip:port``, IPv6 in brackets; None stays None."""
    if address is None:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def line(
    record: ConnectionRecord,
    *,
    outcome: str,
    bytes_sent: int,
    bytes_recv: int,
    duration_ms: float,
    response_flags: str = "-",
    error: str | None = None,
) -> dict[str, Any]:
    """Everything the access-log line says about the connection ``record`` and how it ended.

    ``bytes_sent`` is from the client toward the server, ``bytes_recv`` back to the client.
    """
    service = record.service
    return {
        "direction": record.direction,
        "src.addr": format_address(record.src_addr),
        "src.workload": record.source_name,
        "src.namespace": record.source_namespace,
        "src.identity": _text(record.source_principal),
        "dst.addr": format_address(record.dst_addr),
        "dst.hbone_addr": record.hbone_addr,
        "dst.service": service.hostname if service is not None else None,
        "dst.workload": record.destination_name,
        "dst.namespace": record.destination_namespace,
        "dst.identity": _text(record.destination_principal),
        "bytes_sent": bytes_sent,
        "bytes_recv": bytes_recv,
        "duration_ms": round(duration_ms, 3),
        "outcome": outcome,
        "response_flags": response_flags,
        "error": error,
    }


def format_line(fields: dict[str, Any]) -> str:
    """The JSON line for ``fields`` (one line: no embedded newlines, keys in a fixed order)."""
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=True)


def emit(
    record: ConnectionRecord,
    *,
    outcome: str,
    bytes_sent: int,
    bytes_recv: int,
    duration_ms: float,
    response_flags: str = "-",
    error: str | None = None,
) -> None:
    """Log the line of ``record`` at INFO on ``ambit.ztunnel.access`` (no work when that level is off)."""
    if log.isEnabledFor(logging.INFO):
        fields = line(
            record,
            outcome=outcome,
            bytes_sent=bytes_sent,
            bytes_recv=bytes_recv,
            duration_ms=duration_ms,
            response_flags=response_flags,
            error=error,
        )
        log.info(format_line(fields), extra={"access": fields})
