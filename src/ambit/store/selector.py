"""Kubernetes label selectors in their string form: ``app=web,tier!=db,env in (a,b),!legacy,track``.

The string is parsed into a ``LabelSelector`` (every term a ``matchExpressions`` requirement:
``=``/``==`` In, ``!=`` NotIn, ``key`` Exists, ``!key`` DoesNotExist), which
``ambit.resources.objects.selector_matches`` evaluates: one set of semantics for both forms.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ambit.resources.objects import SelectorError, selector_matches

__all__ = ["Matcher", "SelectorError", "label_selector", "parse_selector"]

Matcher = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*")
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_TERM = re.compile(rf"\s*(!)?\s*({_KEY})\s*(?:(==|=|!=)\s*([-A-Za-z0-9_.]*))?\s*")


def _split(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return parts


def _requirement(key: str, operator: str, values: list[str] | None = None) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values is not None:
        req["values"] = values
    return req


def label_selector(text: str | None) -> dict[str, Any]:
    """The ``LabelSelector`` (``matchExpressions`` only) that ``text`` means; SelectorError if malformed."""
    if text is None or not text.strip():
        return {}
    requirements: list[dict[str, Any]] = []
    for raw in _split(text):
        if not raw.strip():
            raise SelectorError(f"label selector {text!r}: empty term")
        set_match = _SET.fullmatch(raw)
        if set_match:
            key, op, values_text = set_match.groups()
            values = sorted({v.strip() for v in values_text.split(",") if v.strip()})
            requirements.append(_requirement(key, "In" if op == "in" else "NotIn", values))
            continue
        term = _TERM.fullmatch(raw)
        if term is None:
            raise SelectorError(f"label selector {text!r}: cannot parse {raw.strip()!r}")
        negate, key, _, op, value = term.groups()
        if negate and op:
            raise SelectorError(f"label selector {text!r}: '!' takes a key only")
        if negate:
            requirements.append(_requirement(key, "DoesNotExist"))
        elif op in ("=", "=="):
            requirements.append(_requirement(key, "In", [value]))
        elif op == "!=":
            requirements.append(_requirement(key, "NotIn", [value]))
        else:
            requirements.append(_requirement(key, "Exists"))
    return {"matchExpressions": requirements}


def parse_selector(text: str | None) -> Matcher:
    """A function telling whether a label map matches `text` (empty: matches everything)."""
    selector = label_selector(text)
    return lambda labels: selector_matches(selector, labels)
