"""What a load request can end as: the outcome names, `RequestFailed`, and `classify` for exceptions.

See the package docstring (``ambit.apps.load``) for the meaning of each outcome.
"""

from __future__ import annotations

import asyncio
import errno

OK = "ok"
CONNECT_ERROR = "connect_error"
TIMEOUT = "timeout"
RESET = "reset"
CLOSED = "closed"
SHORT_READ = "short_read"
PROTOCOL_ERROR = "protocol_error"
MISMATCH = "mismatch"
OVERLOADED = "overloaded"
ERROR = "error"

_RESET_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED})


class RequestFailed(Exception):
    """A request ended with `outcome` (one of the outcome names); raised inside a request."""

    def __init__(self, outcome: str, detail: str = "") -> None:
        super().__init__(f"{outcome}: {detail}" if detail else outcome)
        self.outcome = outcome
        self.detail = detail


def http_outcome(status: int) -> str:
    """``ok`` for 2xx, ``http_<status>`` otherwise."""
    return OK if 200 <= status <= 299 else f"http_{status}"


def classify(exc: BaseException, phase: str) -> tuple[str, str]:
    """(outcome, detail) for an exception that ended a request in `phase` (connect/request/response)."""
    if isinstance(exc, RequestFailed):
        return exc.outcome, exc.detail
    if isinstance(exc, TimeoutError):
        return TIMEOUT, phase
    if isinstance(exc, asyncio.IncompleteReadError):
        return (SHORT_READ if exc.partial else CLOSED), f"{phase}: {len(exc.partial)} bytes then EOF"
    if isinstance(exc, asyncio.LimitOverrunError):
        return PROTOCOL_ERROR, f"{phase}: line too long"
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if phase == "connect":
            return CONNECT_ERROR, f"{name}: {exc.strerror or exc}"
        if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError) or (
            exc.errno in _RESET_ERRNOS
        ):
            return RESET, f"{phase}: {name}"
        return ERROR, f"{phase}: {name}: {exc}"
    return ERROR, f"{phase}: {type(exc).__name__}: {exc}"
