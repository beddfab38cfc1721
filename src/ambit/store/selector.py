"""Kubernetes label selectors in their string form: ``app=web,tier!=db,env in (a,b),!legacy,track``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

Matcher = Callable[[Mapping[str, str]], bool]

_SET = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s+\(([^()]*)\)\s*")
_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_TERM = re.compile(rf"\s*(!)?\s*({_KEY})\s*(?:(==|=|!=)\s*([-A-Za-z0-9_.]*))?\s*")


class SelectorError(ValueError):
    pass


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


def _in(key: str, values: frozenset[str]) -> Matcher:
    return lambda labels: labels.get(key) in values


def _not_in(key: str, values: frozenset[str]) -> Matcher:
    return lambda labels: labels.get(key) not in values


def _equals(key: str, value: str) -> Matcher:
    return lambda labels: labels.get(key) == value


def _differs(key: str, value: str) -> Matcher:
    return lambda labels: labels.get(key) != value


def _exists(key: str) -> Matcher:
    return lambda labels: key in labels


def _absent(key: str) -> Matcher:
    return lambda labels: key not in labels


def parse_selector(text: str | None) -> Matcher:
    """A function telling whether a label map matches `text` (empty: matches everything)."""
    if text is None or not text.strip():
        return lambda labels: True
    tests: list[Matcher] = []
    for raw in _split(text):
        if not raw.strip():
            raise SelectorError(f"label selector {text!r}: empty term")
        set_match = _SET.fullmatch(raw)
        if set_match:
            key, op, values_text = set_match.groups()
            values = frozenset(v.strip() for v in values_text.split(",") if v.strip())
            tests.append(_in(key, values) if op == "in" else _not_in(key, values))
            continue
        term = _TERM.fullmatch(raw)
        if term is None:
            raise SelectorError(f"label selector {text!r}: cannot parse {raw.strip()!r}")
        negate, key, _, op, value = term.groups()
        if negate and op:
            raise SelectorError(f"label selector {text!r}: '!' takes a key only")
        if negate:
            tests.append(_absent(key))
        elif op in ("=", "=="):
            tests.append(_equals(key, value))
        elif op == "!=":
            tests.append(_differs(key, value))
        else:
            tests.append(_exists(key))
    return lambda labels: all(test(labels) for test in tests)
