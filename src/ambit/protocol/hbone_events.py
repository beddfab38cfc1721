"""The events an HBONE connection (`protocol.hbone.HboneConnection`) reports, and its command error.

Frozen value objects, as h11's and h2's events are: the sans-IO core returns them from `receive`, and
the I/O edge (`net.hbone`) dispatches on their type. They carry no behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TunnelRequested:
    """Server: a well-formed CONNECT arrived; answer with `respond`."""

    stream_id: int
    authority: str
    host: str
    port: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class TunnelRefused:
    """Server: a malformed request was answered here (status already queued)."""

    stream_id: int
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class TunnelResponse:
    """Client: the server's answer to our CONNECT."""

    stream_id: int
    status: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Tunnel bytes. Call `acknowledge(stream_id, flow_controlled_length)` once they are consumed."""

    stream_id: int
    data: bytes
    flow_controlled_length: int


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer half-closed its direction of the tunnel (END_STREAM ↔ FIN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    error_code: int
    remote: bool


@dataclass(frozen=True, slots=True)
class StreamWritable:
    """A stream's send buffer fell below the low watermark after `send` had returned False."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    """The peer will accept no stream above `last_stream_id`; streams at or below it may finish."""

    error_code: int
    last_stream_id: int
    debug: bytes


@dataclass(frozen=True, slots=True)
class PingAcknowledged:
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConnectionAborted:
    """The connection is unusable (protocol error or abuse); queued bytes should still be flushed."""

    reason: str


Event = (
    TunnelRequested
    | TunnelRefused
    | TunnelResponse
    | DataReceived
    | StreamEnded
    | StreamReset
    | StreamWritable
    | GoAwayReceived
    | PingAcknowledged
    | ConnectionAborted
)


class HboneProtocolError(Exception):
    """A command that the connection's state does not allow (a programming error at the edge)."""
