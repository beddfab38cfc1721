"""The VirtualService fields that shape traffic rather than choose its destination: durations,
``retries`` (``retryOn`` read as Istio's ``parseRetryOn`` and Envoy's router conditions) and ``fault``
(delay and abort with their percentages). Pure; :mod:`ambit.control.translate_virtualservice` uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ambit.model.route import FaultPolicy, RetryPolicy
from ambit.resources.durations import parse_go_duration
from ambit.resources.objects import JSON, mapping

MIN_ABORT_STATUS, MAX_ABORT_STATUS = 200, 599  # Istio's validateHTTPStatus / Envoy's FaultAbort
MIN_RETRY_STATUS, MAX_RETRY_STATUS = 100, 599

# gRPC status names as Istio's grpcStatus takes them (github.com/grpc/grpc doc/statuscodes.md).
GRPC_STATUS_CODES: Mapping[str, int] = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}


# retryOn: Envoy's x-envoy-retry-on / x-envoy-retry-grpc-on conditions (router filter docs) → RetryPolicy.
_RETRY_ON_CODES: Mapping[str, tuple[int, ...]] = {
    "5xx": tuple(range(500, 600)),
    "gateway-error": (502, 503, 504),
    "retriable-4xx": (409,),
}
_RETRY_ON_CONNECT = frozenset({"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure"})
_RETRY_ON_REFUSED = frozenset({"5xx", "gateway-error", "reset", "reset-before-request", "refused-stream"})
_RETRY_ON_GRPC: Mapping[str, int] = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}


def parse_duration(value: str) -> float:
    """A Go / protobuf-JSON duration (``10s``, ``1.5s``, ``500ms``, ``1h30m``) in seconds, not negative;
    ValueError unless it is one (``ambit.resources.durations``)."""
    seconds = parse_go_duration(value)
    if seconds < 0:
        raise ValueError(f"{value!r} is a negative duration")
    return seconds


def number(value: Any) -> float | None:
    """``value`` if it is a finite number (a bool is not), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def duration_field(spec: JSON, field: str, what: str, warnings: list[str]) -> float | None:
    """Seconds (0.0 for ``0s``), or None for unset or junk (junk with a warning)."""
    value = spec.get(field)
    if value is None:
        return None
    try:
        if isinstance(value, str):
            return parse_duration(value)
    except ValueError:
        pass
    warnings.append(f"{what}: {field} {value!r} is not a duration; it is ignored")
    return None


# --- retries --------------------------------------------------------------------------------------


def retry_on(attempts: int, value: str, what: str, warnings: list[str]) -> RetryPolicy:
    """The RetryPolicy of ``retries.retryOn`` (a comma-separated list), as Istio's ``parseRetryOn``
    reads it (a number is a status code to retry, the rest are Envoy conditions) and as Envoy's router
    applies the conditions:

    ======================== ===================================================================
    retryOn                  RetryPolicy
    ======================== ===================================================================
    ``5xx``                  codes 500..599, connect failure, refused stream
    ``gateway-error``        codes 502, 503, 504, connect failure, refused stream
    ``reset``                connect failure, refused stream (1)
    ``reset-before-request`` connect failure, refused stream
    ``connect-failure``      connect failure
    ``refused-stream``       refused stream
    ``retriable-4xx``        code 409
    ``<status>`` (100..599)  that code (Istio adds ``retriable-status-codes`` for it)
    ``retriable-status-codes``  nothing by itself: the listed codes
    ``cancelled``, ``deadline-exceeded``, ``internal``, ``resource-exhausted``, ``unavailable``
                             that gRPC status (1, 4, 13, 8, 14) in the response
    anything else            ignored, with a warning (``retriable-headers``,
                             ``envoy-ratelimited``, ``http3-post-connect-failure``, unknown names)
    ======================== ===================================================================

    (1) and, with ``5xx`` and ``gateway-error``, Envoy also retries a reset or a per-try timeout after
    the request was sent; ambit's waypoint never retries those (its retries only replay what cannot
    have reached the application, or a response it may retry), which the warning for ``reset`` says.
    Unlike Istio's default policy, an explicit ``retryOn`` holds exactly the conditions it lists."""
    codes: dict[int, None] = {}
    grpc: dict[int, None] = {}
    connect = refused = False
    for raw in value.split(","):
        part = raw.strip()
        if not part:
            continue
        if part.isdigit():
            status = int(part)
            if MIN_RETRY_STATUS <= status <= MAX_RETRY_STATUS:
                codes[status] = None
            else:
                warnings.append(f"{what}: retryOn status {part} is not in 100..599; left out")
            continue
        connect = connect or part in _RETRY_ON_CONNECT
        refused = refused or part in _RETRY_ON_REFUSED
        codes.update(dict.fromkeys(_RETRY_ON_CODES.get(part, ())))
        if part in _RETRY_ON_GRPC:
            grpc[_RETRY_ON_GRPC[part]] = None
        elif part == "reset":
            warnings.append(
                f"{what}: retryOn reset retries connect failures and refused streams only "
                "(ambit does not retry a request the upstream reset after it was sent)"
            )
        elif part not in _RETRY_ON_CONNECT | _RETRY_ON_REFUSED | set(_RETRY_ON_CODES) | {
            "retriable-status-codes"
        }:
            warnings.append(f"{what}: retryOn {part!r} is not supported; it is ignored")
    return RetryPolicy(
        attempts=attempts,
        codes=tuple(sorted(codes)),
        retry_on_connect_failure=connect,
        retry_on_refused_stream=refused,
        retriable_grpc_statuses=tuple(sorted(grpc)),
    )


def retries(http: JSON, what: str, warnings: list[str]) -> tuple[RetryPolicy | None, float | None]:
    """(the retry policy, None for the mesh default; the per-try timeout)."""
    spec = http.get("retries")
    if not isinstance(spec, dict):
        return None, None
    rwhat = f"{what} retries"
    attempts = integer(spec.get("attempts", 0))  # unset is 0 (proto3), which disables retries
    if attempts is None or attempts < 0:
        warnings.append(f"{rwhat}: attempts {spec.get('attempts')!r} is not a count; retries are disabled")
        attempts = 0
    if attempts == 0:
        return RetryPolicy(attempts=0), None  # istio/api HTTPRetry.attempts: "If 0, retries will be disabled"
    if "retryRemoteLocalities" in spec:
        warnings.append(f"{rwhat}: retryRemoteLocalities is not supported; it is ignored")
    if spec.get("retryIgnorePreviousHosts") is False:
        warnings.append(
            f"{rwhat}: retryIgnorePreviousHosts false is not supported (ambit always prefers a new host)"
        )
    raw = spec.get("retryOn")
    policy = (
        retry_on(attempts, raw, rwhat, warnings)
        if isinstance(raw, str) and raw.strip()
        else RetryPolicy(attempts=attempts)  # Istio's default conditions with these attempts
    )
    backoff = duration_field(spec, "backoff", rwhat, warnings)
    per_try = duration_field(spec, "perTryTimeout", rwhat, warnings)
    return replace(policy, backoff=backoff or None), per_try or None


# --- fault ----------------------------------------------------------------------------------------


def percentage(spec: JSON, what: str, warnings: list[str], *, legacy: bool) -> float:
    """The percentage of requests (``percentage.value``, else the integer ``percent`` when ``legacy``);
    0 when unset (with a warning), or out of range (with a warning)."""
    if "percentage" in spec:
        value = number(mapping(spec, "percentage").get("value"))
    elif legacy and "percent" in spec:
        value = number(spec.get("percent"))
    else:
        warnings.append(f"{what}: no percentage, so no request gets it (as Istio); set percentage.value")
        return 0.0
    if value is None or not 0.0 <= value <= 100.0:
        warnings.append(f"{what}: the percentage is not a number in 0..100; no request gets it")
        return 0.0
    return value


def fault(http: JSON, what: str, warnings: list[str]) -> FaultPolicy | None:
    spec = http.get("fault")
    if not isinstance(spec, dict):
        return None
    delay: float | None = None
    delay_percent = 0.0
    if isinstance(spec.get("delay"), dict):
        dspec, dwhat = spec["delay"], f"{what} fault.delay"
        if "exponentialDelay" in dspec:
            warnings.append(f"{dwhat}: exponentialDelay is not supported (nor by Istio); it is ignored")
        fixed = duration_field(dspec, "fixedDelay", dwhat, warnings)
        if fixed:
            delay = fixed
            delay_percent = percentage(dspec, dwhat, warnings, legacy=True)
        else:
            warnings.append(f"{dwhat}: no fixedDelay above zero; no delay")
    status: int | None = None
    grpc_status: int | None = None
    abort_percent = 0.0
    if isinstance(spec.get("abort"), dict):
        aspec, awhat = spec["abort"], f"{what} fault.abort"
        if "http2Error" in aspec:
            warnings.append(f"{awhat}: http2Error is not supported (nor by Istio); it is ignored")
        if "httpStatus" in aspec:
            status = integer(aspec.get("httpStatus"))
            if status is None or not MIN_ABORT_STATUS <= status <= MAX_ABORT_STATUS:
                warnings.append(
                    f"{awhat}: httpStatus {aspec.get('httpStatus')!r} is not in 200..599; no abort"
                )
                status = None
            elif "grpcStatus" in aspec:
                warnings.append(f"{awhat}: both httpStatus and grpcStatus are set; httpStatus is used")
        elif "grpcStatus" in aspec:
            name = aspec.get("grpcStatus")
            grpc_status = GRPC_STATUS_CODES.get(name) if isinstance(name, str) else None
            if grpc_status is None:
                warnings.append(
                    f"{awhat}: grpcStatus {name!r} is not a gRPC status name (like UNAVAILABLE); no abort"
                )
        if status is not None or grpc_status is not None:
            abort_percent = percentage(aspec, awhat, warnings, legacy=False)
        elif "httpStatus" not in aspec and "grpcStatus" not in aspec:
            warnings.append(f"{awhat}: neither httpStatus nor grpcStatus; no abort")
    if delay is None and status is None and grpc_status is None:
        return None
    return FaultPolicy(
        delay=delay,
        delay_percent=delay_percent,
        abort_status=status,
        abort_grpc_status=grpc_status,
        abort_percent=abort_percent,
    )


# --- rules and routes -----------------------------------------------------------------------------
