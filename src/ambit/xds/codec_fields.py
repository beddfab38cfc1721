"""The checked primitives every xDS codec module shares: its errors, and field-level encode and decode checks.

Encoding checks (``encode_port``, ``uint32``) raise :class:`XdsEncodeError` for a value with no wire
form; decoding checks raise :class:`XdsRejected` naming the resource and the reason, so a client can
NACK it. Each check returns the value it accepted.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from google.protobuf import message  # type: ignore[import-untyped]  # no types-protobuf

from ambit.model.identity import IdentityError, check_segment


class CodecError(ValueError):
    """A resource cannot be converted; names the resource and says why."""

    def __init__(self, resource_name: str, reason: str) -> None:
        super().__init__(f"{resource_name}: {reason}")
        self.resource_name = resource_name
        self.reason = reason


class XdsRejected(CodecError):
    """A received resource is invalid; the client NACKs it and keeps its previous version."""


class XdsEncodeError(CodecError):
    """A model value has no wire form (e.g. an address that is not an IP)."""


MAX_PORT = 65535
MAX_UINT32 = 2**32 - 1
MIN_STATUS, MAX_STATUS = 100, 599
MAX_GRPC_STATUS = 16
_E = TypeVar("_E")


def encode_port(name: str, port: int, what: str) -> int:
    if not 0 <= port <= MAX_PORT:
        raise XdsEncodeError(name, f"{what} {port} is out of range 0..{MAX_PORT}")
    return port


def uint32(name: str, value: int, what: str) -> int:
    if not 0 <= value <= MAX_UINT32:
        raise XdsEncodeError(name, f"{what} {value} is out of range 0..{MAX_UINT32}")
    return value


def checked_port(name: str, port: int, what: str, *, allow_zero: bool) -> int:
    if port > MAX_PORT or (port == 0 and not allow_zero):
        raise XdsRejected(name, f"{what} {port} is out of range {0 if allow_zero else 1}..{MAX_PORT}")
    return port


def segment(name: str, kind: str, value: str) -> str:
    try:
        return check_segment(kind, value)
    except IdentityError as exc:
        raise XdsRejected(name, str(exc)) from None


def required(name: str, what: str, value: str) -> str:
    if not value:
        raise XdsRejected(name, f"{what} is empty")
    return value


def key_of(name: str, what: str, value: str) -> str:
    namespace, slash, rest = value.partition("/")
    if not slash or not namespace or not rest:
        raise XdsRejected(name, f"{what} {value!r} is not of the form <namespace>/<name>")
    return value


def enum_value(name: str, table: Mapping[int, _E], raw: int, what: str) -> _E:
    if raw not in table:
        raise XdsRejected(name, f"unknown {what} {raw}")
    return table[raw]


def regex(name: str, what: str, pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise XdsRejected(name, f"{what} {pattern!r} is not a valid regular expression: {exc}") from None
    return pattern


def lower_name(name: str, what: str, value: str) -> str:
    required(name, what, value)
    if value != value.lower():
        raise XdsRejected(name, f"{what} {value!r} is not in lower case")
    return value


def seconds(name: str, what: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise XdsRejected(name, f"{what} {value!r} is not a positive number of seconds")
    return value


def created(name: str, value: str) -> str:
    if value:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise XdsRejected(name, f"creation time {value!r} is not an RFC 3339 timestamp") from None
    return value


def percent(name: str, what: str, value: float) -> float:
    if not (math.isfinite(value) and 0.0 <= value <= 100.0):
        raise XdsRejected(name, f"{what} {value!r} is not a percentage in 0..100")
    return value


def optional_count(name: str, what: str, pb: message.Message, field: str) -> int | None:
    """An optional limit or error threshold: unset → None, else at least 1."""
    if not pb.HasField(field):
        return None
    value: int = getattr(pb, field)
    if value < 1:
        raise XdsRejected(name, f"{what} {value} is not at least 1 (leave it unset for none)")
    return value


def int_percent(name: str, what: str, value: int) -> int:
    if value > 100:
        raise XdsRejected(name, f"{what} {value} is out of range 0..100")
    return value
