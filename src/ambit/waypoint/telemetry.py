"""The waypoint's telemetry for one exchange: Istio's request metrics and the access log, recorded when
the response has been sent (:func:`observe_exchange`); Envoy's response-flag order (:func:`with_flag`).

The access log is one JSON line per request on logger ``ambit.waypoint.access`` (:data:`ACCESS_LOGGER`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from ambit.model.workload import Service, Workload
from ambit.state.snapshot import Snapshot
from ambit.waypoint.exchange import BodyError, BodyStream, Downstream, Request, Response
from ambit.waypoint.metrics import RequestMetrics, request_labels

ACCESS_LOGGER = "ambit.waypoint.access"
access_log = logging.getLogger(ACCESS_LOGGER)
_second: list[tuple[int, str]] = [(0, "")]  # the last UTC second formatted, and its text


def _utc_second() -> str:
    """The current UTC time to the second, RFC 3339 (formatted once per second)."""
    now = int(time.time())
    second, text = _second[0]
    if now != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        _second[0] = (now, text)
    return text


# Envoy writes response flags comma-separated in the order of its ResponseFlag enum (those ambit sets)
_FLAG_RANK = {flag: rank for rank, flag in enumerate((
    "LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX", "RLSE", "DC", "URX",
    "UPE", "NC",
))}  # fmt: skip


def with_flag(flags: str, flag: str) -> str:
    """``flags`` (Envoy's ``-`` or a comma-separated list) with ``flag`` added, in Envoy's order."""
    present = [f for f in flags.split(",") if f and f != "-"]
    if flag not in present:
        present.append(flag)
    return ",".join(sorted(present, key=lambda f: _FLAG_RANK.get(f, len(_FLAG_RANK))))


def grpc_status_text(response: Response) -> str:
    for headers in (response.body.trailers, response.headers):
        for name, value in headers:
            if name == b"grpc-status":
                return value.decode("latin-1")
    return ""


class ObservedBody(BodyStream):
    """A response body passed through unchanged, reporting its size and end (or failure) once."""

    __slots__ = ("_ended", "_inner", "_on_end")

    def __init__(self, inner: BodyStream, on_end: Callable[[int, str], None]) -> None:
        super().__init__()
        self._inner = inner
        self._on_end = on_end
        self._ended = False

    def _end(self, flags: str) -> None:
        if not self._ended:
            self._ended = True
            self.trailers = self._inner.trailers
            self._on_end(self.received, flags)

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._end("-")
            raise
        except BodyError:
            self._end("UC")
            raise
        self.received += len(chunk)
        return chunk

    @property
    def done(self) -> bool:
        """The upstream has finished (or failed) the body: what is left is buffered (a frontend
        sends a gRPC trailers-only response as one HEADERS frame when the body is done and empty)."""
        return self._inner.done

    def abandon(self) -> None:
        """The consumer gave up (the client left mid-response): tell the upstream side, count it."""
        self._inner.abandon()
        self._end("DC")

    def fail(self, exc: BaseException) -> None:
        self.abandon()


def observe_exchange(
    metrics: RequestMetrics,
    snapshot: Snapshot,
    request: Request,
    downstream: Downstream,
    *,
    started: float,
    service: Service | None,
    endpoint: Workload | None,
    response: Response,
    delayed: bool = False,
    on_end: Callable[[], None] | None = None,
) -> Response:
    """Count ``response`` to ``request`` once it has been sent: one ``istio_requests_total`` (and the
    duration and size histograms) and one access-log line, when its body ends (or at once for an
    Upgrade, whose stream is relayed as bytes). ``delayed``: a fault delayed it (flag ``DI``);
    ``on_end`` runs first (e.g. the connection pool's request slot)."""
    source = snapshot.find_workload_by_ip(downstream.peer_ip)
    grpc = (request.header(b"content-type") or b"").startswith(b"application/grpc")

    def ended(response_bytes: int, flags: str) -> None:
        if on_end is not None:
            on_end()  # e.g. the connection pool's request slot
        final_flags = response.flags if response.flags != "-" else flags
        if delayed:
            final_flags = with_flag(final_flags, "DI")
        duration_ms = (time.monotonic() - started) * 1000
        labels = request_labels(
            source=source,
            source_principal=downstream.peer_identity,
            destination=endpoint,
            service=service,
            protocol="grpc" if grpc else "http",
            status=response.status,
            grpc_status=grpc_status_text(response),
            flags=final_flags,
        )
        metrics.record(
            labels,
            duration_ms=duration_ms,
            request_bytes=request.body.received,
            response_bytes=response_bytes,
        )
        access_log.info(
            json.dumps(
                {
                    "start_time": _utc_second(),
                    "method": request.method.decode("latin-1"),
                    "path": request.path.decode("latin-1"),
                    "protocol": f"HTTP/{request.version}",
                    "authority": request.authority.decode("latin-1"),
                    "response_code": response.status,
                    "response_flags": final_flags,
                    "grpc_status": labels.grpc_response_status or None,
                    "bytes_received": request.body.received,
                    "bytes_sent": response_bytes,
                    "duration_ms": round(duration_ms, 3),
                    "x_request_id": (request.header(b"x-request-id") or b"").decode("latin-1") or None,
                    "src.addr": downstream.peer_ip,
                    "src.identity": downstream.peer_identity,
                    "dst.hbone_addr": downstream.target,
                    "dst.service": service.hostname if service is not None else None,
                    "dst.workload": endpoint.name if endpoint is not None else None,
                    "details": response.details or None,
                },
                separators=(",", ":"),
            )
        )

    if response.upgraded is not None:
        ended(0, "-")  # the upgraded stream is relayed as bytes: the request ends with its 101
        return response
    response.body = ObservedBody(response.body, ended)
    return response
