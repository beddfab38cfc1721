"""How a connection's telemetry ends, in every direction: its metrics closed, its access-log line written.

The inbound (15008, 15006) and outbound (15001) trackers end through :func:`end_connection`, so every
side reports an end the same way, and only once.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from ambit.proxy import accesslog
from ambit.proxy.records import ConnectionRecord
from ambit.ztunnel.metrics import ConnectionMetrics


class EndingConnection(Protocol):
    """What :func:`end_connection` needs of a connection's tracker."""

    done: bool  # set once the end is recorded

    @property
    def metrics(self) -> ConnectionMetrics | None: ...  # None: never counted as opened
    @property
    def started(self) -> float: ...  # the loop's time when the connection was accepted
    def connection_record(self) -> ConnectionRecord: ...


def end_connection(
    tracker: EndingConnection, outcome: str, flags: str, error: str | None, *, received: int, sent: int
) -> None:
    """Close the tracker's metrics and log its access line, the first time only.

    ``received`` is the bytes from the client toward the server, ``sent`` the bytes back.
    """
    if tracker.done:
        return
    tracker.done = True
    metrics = tracker.metrics
    if metrics is not None:
        metrics.close(received=received, sent=sent, response_flags=flags)
    accesslog.emit(
        tracker.connection_record(),
        outcome=outcome,
        bytes_sent=received,
        bytes_recv=sent,
        duration_ms=(asyncio.get_running_loop().time() - tracker.started) * 1000.0,
        response_flags=flags,
        error=error,
    )
