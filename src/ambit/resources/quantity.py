"""Kubernetes resource quantities (``500m``, ``1.5``, ``128Mi``, ``2G``, ``1e3``) as numbers.

The grammar is apimachinery's ``resource.Quantity``: a signed decimal number, then an optional
binary suffix (``Ki Mi Gi Ti Pi Ei``), decimal suffix (``n u m k M G T P E``) or exponent
(``e3``, ``E-2``). A YAML integer or float is a quantity too. Pure.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?\d+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}


class QuantityError(ValueError):
    """Not a Kubernetes quantity; the message quotes the value."""


def parse_quantity(value: object) -> Decimal:
    """The quantity's value (``"500m"`` → 0.5, ``"1Ki"`` → 1024)."""
    if isinstance(value, bool):
        raise QuantityError(f"expected a quantity, got {str(value).lower()}")
    if isinstance(value, int | float):
        return Decimal(str(value))
    if not isinstance(value, str):
        raise QuantityError(f"expected a quantity, got {type(value).__name__}")
    found = _QUANTITY.fullmatch(value.strip())
    if found is None:
        raise QuantityError(f"{value!r} is not a quantity (like '500m', '1.5', '128Mi')")
    number, suffix = Decimal(found.group(1)), found.group(2) or ""
    try:
        if suffix in _BINARY:
            return number * _BINARY[suffix]
        if suffix in _DECIMAL:
            return number * _DECIMAL[suffix]
        return number * Decimal(10) ** int(suffix[1:])
    except InvalidOperation as exc:  # pragma: no cover - a huge exponent
        raise QuantityError(f"{value!r} is out of range") from exc


def format_cpu(cores: float) -> str:
    """CPU as Kubernetes prints it: whole millicores (``250m``)."""
    return f"{max(0, round(cores * 1000))}m"


def format_bytes(size: float) -> str:
    """Memory as the VPA writes it: whole bytes, or ``Ki``/``Mi``/``Gi`` when exact."""
    whole = max(0, round(size))
    for suffix, factor in (("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if whole and whole % factor == 0:
            return f"{whole // factor}{suffix}"
    return str(whole)
