"""Istio's durations: Go's ``time.ParseDuration`` syntax, as Istio's CRDs and istiod read them.

Istio's networking fields of type ``google.protobuf.Duration`` (``interval``, ``baseEjectionTime``,
``connectTimeout``, ...) are written like ``10s``, ``1m``, ``500ms``, ``1h30m`` or ``1.5s``: the CRDs check
them with CEL's ``duration(self) >= duration('1ms')`` (Go syntax) and istiod's webhook
(``pkg/config/validation/agent.ValidateDuration``) adds "only durations to ms precision are
supported". This is wider than the Gateway API's GEP-2257 durations
(``ambit.control.translate_routes.parse_duration``: integers only, no ``us``/``ns``), so it is its own
parser. Pure: stdlib only.
"""

from __future__ import annotations

import re
from fractions import Fraction

NANOSECOND = 1
MILLISECOND = 1_000_000
SECOND = 1_000_000_000
_MAX_NANOS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µs, U+00B5 MICRO SIGN
    "\u03bcs": 1_000,  # μs, U+03BC GREEK SMALL LETTER MU
    "ms": MILLISECOND,
    "s": SECOND,
    "m": 60 * SECOND,
    "h": 3600 * SECOND,
}
_PART = r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION = re.compile(rf"[-+]?(?:0|(?:{_PART})+)")
_PARTS = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_nanos(value: str) -> int:
    """A Go duration (``time.ParseDuration``) in nanoseconds; ValueError unless it is one."""
    if not _DURATION.fullmatch(value):
        raise ValueError(f"{value!r} is not a duration (like '10s', '1m', '500ms', '1h30m', '1.5s')")
    total = sum(Fraction(number) * _UNITS[unit] for number, unit in _PARTS.findall(value))
    nanos = int(total)  # Go drops fractions of a nanosecond
    if nanos > _MAX_NANOS:
        raise ValueError(f"{value!r} is too long a duration")
    return -nanos if value.startswith("-") else nanos


def parse_go_duration(value: str) -> float:
    """A Go duration in seconds; ValueError unless it is one."""
    return parse_go_nanos(value) / SECOND


def check_istio_duration(value: str) -> str | None:
    """None for a duration Istio accepts (at least 1 ms, whole milliseconds), else why not."""
    try:
        nanos = parse_go_nanos(value)
    except ValueError as exc:
        return str(exc)
    if nanos < MILLISECOND:
        return f"duration {value!r} must be at least 1ms"
    if nanos % MILLISECOND:
        return f"duration {value!r}: only durations to ms precision are supported"
    return None
