"""One structured access-log line per connection, when it ends (facts §1.9).

The line is a JSON object logged at INFO on the logger ``ambit.ztunnel.access`` (so it can be routed,
filtered or silenced like any logger; the record also carries the dict as ``record.access``). Keys
follow ztunnel's access log, and every key is always present (``null`` when unknown):

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
from dataclasses import dataclass
from typing import Any

ACCESS_LOGGER = "ambit.ztunnel.access"
log = logging.getLogger(ACCESS_LOGGER)

OUTBOUND = "outbound"
INBOUND = "inbound"
INBOUND_PLAINTEXT = "inbound_plaintext"

OK = "ok"
DENIED = "denied"
REFUSED = "refused"
ERROR = "error"


def format_address(address: tuple[str, int] | None) -> str | None:
    """``ip:port``, IPv6 in brackets; None stays None."""
    if address is None:
        return None
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class AccessRecord:
    """Everything one access-log line says about a connection."""

    direction: str
    src_addr: str | None
    dst_addr: str | None
    bytes_sent: int
    bytes_recv: int
    duration_ms: float
    outcome: str
    response_flags: str = "-"
    dst_hbone_addr: str | None = None
    src_workload: str | None = None
    src_namespace: str | None = None
    src_identity: str | None = None
    dst_service: str | None = None
    dst_workload: str | None = None
    dst_namespace: str | None = None
    dst_identity: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "src.addr": self.src_addr,
            "src.workload": self.src_workload,
            "src.namespace": self.src_namespace,
            "src.identity": self.src_identity,
            "dst.addr": self.dst_addr,
            "dst.hbone_addr": self.dst_hbone_addr,
            "dst.service": self.dst_service,
            "dst.workload": self.dst_workload,
            "dst.namespace": self.dst_namespace,
            "dst.identity": self.dst_identity,
            "bytes_sent": self.bytes_sent,
            "bytes_recv": self.bytes_recv,
            "duration_ms": round(self.duration_ms, 3),
            "outcome": self.outcome,
            "response_flags": self.response_flags,
            "error": self.error,
        }


def format_line(record: AccessRecord) -> str:
    """The JSON line for ``record`` (one line: no embedded newlines, keys in a fixed order)."""
    return json.dumps(record.as_dict(), separators=(",", ":"), ensure_ascii=True)


def emit(record: AccessRecord) -> None:
    """Log ``record`` at INFO on ``ambit.ztunnel.access`` (no work when that level is off)."""
    if log.isEnabledFor(logging.INFO):
        log.info(format_line(record), extra={"access": record.as_dict()})
