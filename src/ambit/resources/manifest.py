"""Reading manifests: YAML/JSON text → validated, normalized objects, or one clear ``ManifestError``.

``parse_manifests`` reads a multi-document YAML stream (or JSON: one object or a list of objects),
skips empty documents, flattens ``kind: List`` (and ``kind: <Kind>List``) items, and validates every
object with ``validate``. The YAML is read as Kubernetes reads it: timestamps stay strings (no
``datetime``), ``=`` is a string, non-string mapping keys (``8080:`` under ``portLevelMtls``) become
strings, so every object is plain JSON data. Aliases are expanded within a budget and cycles are
rejected, so hostile input cannot blow up memory or recursion.

``validate`` checks one object: the common envelope (``apiVersion``, ``kind``, ``metadata.name``),
the kind's ``apiVersion``, its schema (``ambit.resources.schemas``), its name rule and its
cross-field rules (``ambit.resources.rules``). It returns a normalized deep copy with Kubernetes'
defaults applied (``ambit.resources.defaults``). Objects of unknown kinds are returned unchanged (a deep
copy) after the envelope check; the caller decides whether to warn.

Errors read ``<source>: <Kind>/<namespace>/<name>: <field.path>: <message>``; parts that are not
known are left out, and a document that has no usable name is named by its position
(``document 3``, 1-based, counting every document of the stream). Pure: no I/O.
"""

from __future__ import annotations

import base64
import datetime
import json
import re
from collections.abc import Iterator
from typing import Any, ClassVar

import yaml
from pydantic import ValidationError

from ambit.resources import checks
from ambit.resources.defaults import normalize
from ambit.resources.kinds import KINDS, NameRule
from ambit.resources.rules import RULES
from ambit.resources.schemas import SCHEMAS

JSON = dict[str, Any]
Loc = tuple[str | int, ...]

MAX_NODES = 1_000_000  # values per document after alias expansion
MAX_DEPTH = 200  # nesting of mappings and lists
MAX_ERRORS_SHOWN = 5

_NAME_CHECKS = {
    NameRule.DNS1123_SUBDOMAIN: checks.check_dns1123_subdomain,
    NameRule.DNS1123_LABEL: checks.check_dns1123_label,
    NameRule.DNS1035_LABEL: checks.check_dns1035_label,
}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ManifestError(ValueError):
    """A manifest that cannot be read or is invalid. ``str(e)`` is the full, one-line message.

    Attributes: ``source``, ``kind``, ``namespace``, ``name``, ``document`` (e.g. ``"document 3"``),
    ``line`` (1-based, YAML/JSON syntax errors only), ``path`` and ``message`` (the first problem),
    ``problems`` (every ``(path, message)`` found, path as ``spec.ports[0].port``).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        path: str = "",
        kind: str = "",
        namespace: str = "",
        name: str = "",
        document: str = "",
        line: int | None = None,
        column: int | None = None,
        problems: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.source = source
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.document = document
        self.line = line
        self.column = column
        self.path = path
        self.message = message
        self.problems = problems or ((path, message),)
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.source]
        if self.name:
            ident = [self.kind] if self.kind else []
            if self.namespace:
                ident.append(self.namespace)
            ident.append(self.name)
            parts.append("/".join(ident))
        elif self.document:
            parts.append(f"{self.document} ({self.kind})" if self.kind else self.document)
        elif self.kind:
            parts.append(self.kind)
        if self.line is not None:
            parts.append(f"line {self.line}" + (f", column {self.column}" if self.column is not None else ""))
        first = f"{self.path}: {self.message}" if self.path else self.message
        parts.append(first)
        text = ": ".join(parts)
        more = self.problems[1:]
        if more:
            shown = "; ".join(f"{p}: {m}" if p else m for p, m in more[: MAX_ERRORS_SHOWN - 1])
            extra = len(more) - (MAX_ERRORS_SHOWN - 1)
            text += f"; {shown}" + (f"; and {extra} more" if extra > 0 else "")
        return text


# --- paths and messages -------------------------------------------------------------------------


def format_path(loc: Loc) -> str:
    """``('spec', 'ports', 0, 'port')`` → ``spec.ports[0].port``; odd keys are quoted: ``labels["a/b"]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        elif _IDENTIFIER.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _pydantic_message(err: Any) -> str:
    kind = err.get("type", "")
    value = err.get("input")
    got = checks.describe(value)
    if kind == "missing":
        return "required field is missing"
    if kind == "int_type":
        return f"expected an integer, got {got}"
    if kind == "string_type":
        return f"expected a string, got {got}"
    if kind == "bool_type":
        return f"expected a boolean (true or false), got {got}"
    if kind == "list_type":
        return f"expected a list, got {got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected an object (a mapping), got {got}"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"must be {expected}, got {got}"
    return str(err.get("msg", kind))


# --- YAML -------------------------------------------------------------------------------------

_BaseLoader: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_DROPPED_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:value"}


class _Loader(_BaseLoader):  # type: ignore[misc]
    """Safe YAML as Kubernetes reads it: timestamps and '=' stay strings."""

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in _DROPPED_TAGS]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }


def _plain_key(key: Any, loc: Loc) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return str(key)
    if isinstance(key, datetime.date):
        return key.isoformat()
    raise _PlainError(loc, f"unsupported mapping key {checks.describe(key)}")


class _PlainError(Exception):
    def __init__(self, loc: Loc, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


def to_plain(value: Any) -> Any:
    """A deep copy of ``value`` as plain JSON data (str keys; dict, list, str, int, float, bool, None).

    Raises ``_PlainError`` for cycles, excessive depth or size, and values JSON cannot carry.
    """
    budget = [MAX_NODES]
    active: set[int] = set()

    def walk(node: Any, loc: Loc) -> Any:
        budget[0] -= 1
        if budget[0] < 0:
            raise _PlainError(
                (), f"document is too large (more than {MAX_NODES} values after expanding aliases)"
            )
        if node is None or isinstance(node, str | bool | int | float):
            return node
        if len(loc) >= MAX_DEPTH:
            raise _PlainError(loc, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict | list | tuple):
            if id(node) in active:
                raise _PlainError(loc, "refers to itself (recursive YAML alias)")
            active.add(id(node))
            try:
                if isinstance(node, dict):
                    out: dict[str, Any] = {}
                    for key, item in node.items():
                        skey = _plain_key(key, loc)
                        out[skey] = walk(item, (*loc, skey))
                    return out
                return [walk(item, (*loc, i)) for i, item in enumerate(node)]
            finally:
                active.discard(id(node))
        if isinstance(node, datetime.date):
            return node.isoformat()
        if isinstance(node, bytes):
            return base64.b64encode(node).decode("ascii")
        raise _PlainError(loc, f"unsupported YAML value ({type(node).__name__})")

    return walk(value, ())


def _load_documents(text: str, source: str) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            pass  # maybe YAML flow style; the YAML parser reports the error if it is not
        else:
            return data if isinstance(data, list) else [data]
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.problem, f"({exc.context})" if exc.context else None) if p)
        raise ManifestError(
            f"invalid YAML: {problem or 'syntax error'}",
            source=source,
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        ) from None
    except RecursionError:
        raise ManifestError("invalid YAML: nested too deeply", source=source) from None
    except Exception as exc:  # any other failure of the parser on untrusted text is a manifest error
        raise ManifestError(f"invalid YAML: {exc}", source=source) from None


# --- public API ---------------------------------------------------------------------------------


def parse_manifests(text: str, source: str) -> list[JSON]:
    """Every object in ``text`` (YAML stream or JSON), validated and normalized, in order."""
    if not isinstance(text, str):
        raise ManifestError(f"expected text, got {type(text).__name__}", source=source)
    out: list[JSON] = []
    for index, doc in enumerate(_load_documents(text, source), start=1):
        label = f"document {index}"
        if doc is None:
            continue
        try:
            plain = to_plain(doc)
        except _PlainError as exc:
            raise ManifestError(
                exc.message, source=source, document=label, path=format_path(exc.loc)
            ) from None
        except RecursionError:
            raise ManifestError("nested too deeply", source=source, document=label) from None
        for sublabel, obj in _flatten(plain, label, source):
            out.append(_validate(obj, source, sublabel))
    return out


def _flatten(doc: Any, label: str, source: str) -> Iterator[tuple[str, Any]]:
    if not isinstance(doc, dict):
        raise ManifestError(
            f"expected an object (a mapping with apiVersion, kind and metadata), got {checks.describe(doc)}",
            source=source,
            document=label,
        )
    kind = doc.get("kind")
    if isinstance(kind, str) and (kind == "List" or kind.endswith("List")) and "items" in doc:
        items = doc.get("items")
        if items is None:
            return
        if not isinstance(items, list):
            raise ManifestError(
                f"expected a list, got {checks.describe(items)}", source=source, document=label, path="items"
            )
        for i, item in enumerate(items):
            sub = f"{label}, items[{i}]"
            if not isinstance(item, dict):
                raise ManifestError(
                    f"expected an object, got {checks.describe(item)}", source=source, document=sub
                )
            yield sub, item
        return
    yield label, doc


def validate(obj: JSON, source: str = "<input>") -> JSON:
    """A normalized deep copy of ``obj`` if it is valid; raises ``ManifestError`` otherwise.

    Unknown kinds are returned unchanged (deep copy) once ``apiVersion``, ``kind`` and
    ``metadata.name`` are present.
    """
    return _validate(obj, source, "")


def _validate(obj: Any, source: str, document: str) -> JSON:
    if not isinstance(obj, dict):
        raise ManifestError(
            f"expected an object, got {checks.describe(obj)}", source=source, document=document
        )
    try:
        data: JSON = to_plain(obj)
    except _PlainError as exc:
        raise ManifestError(
            exc.message, source=source, document=document, path=format_path(exc.loc)
        ) from None

    kind = data.get("kind")
    kind_text = kind if isinstance(kind, str) else ""
    meta = data.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    name_text = name if isinstance(name, str) else ""
    info = KINDS.get(kind_text)
    namespace = ""
    if isinstance(meta, dict) and (info is None or info.namespaced):
        ns = meta.get("namespace")
        namespace = ns if isinstance(ns, str) and ns else ("default" if info is not None else "")

    def fail(problems: list[tuple[Loc, str]]) -> ManifestError:
        shown = tuple((format_path(loc), msg) for loc, msg in problems)
        return ManifestError(
            shown[0][1],
            path=shown[0][0],
            source=source,
            kind=kind_text,
            namespace=namespace,
            name=name_text,
            document=document,
            problems=shown,
        )

    envelope = _envelope_problems(data)
    if envelope:
        raise fail(envelope)
    if info is None:
        return data
    api_version = data["apiVersion"]
    if api_version not in info.api_versions:
        served = " or ".join(info.api_versions)
        raise fail([(("apiVersion",), f"{info.kind} is served as {served}, not {api_version!r}")])

    try:
        SCHEMAS[info.kind].model_validate(data)
    except ValidationError as exc:
        raise fail([(tuple(err["loc"]), _pydantic_message(err)) for err in exc.errors()]) from None
    except RecursionError:
        raise fail([((), "nested too deeply")]) from None

    problems: list[tuple[Loc, str]] = []
    name_problem = _NAME_CHECKS[info.name_rule](name_text)
    if name_problem is not None:
        problems.append((("metadata", "name"), name_problem))
    rule = RULES.get(info.kind)
    if rule is not None:
        problems.extend(rule(data))
    if problems:
        raise fail(problems)
    normalize(info, data)
    return data


def _envelope_problems(data: JSON) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for field in ("apiVersion", "kind"):
        value = data.get(field)
        if value is None:
            problems.append(((field,), "required field is missing"))
        elif not isinstance(value, str):
            problems.append(((field,), f"expected a string, got {checks.describe(value)}"))
        elif not value:
            problems.append(((field,), "must not be empty"))
    meta = data.get("metadata")
    if meta is None:
        problems.append((("metadata",), "required field is missing"))
    elif not isinstance(meta, dict):
        problems.append((("metadata",), f"expected an object (a mapping), got {checks.describe(meta)}"))
    else:
        name = meta.get("name")
        if name is None:
            problems.append((("metadata", "name"), "required field is missing"))
        elif not isinstance(name, str):
            problems.append((("metadata", "name"), f"expected a string, got {checks.describe(name)}"))
        elif not name:
            problems.append((("metadata", "name"), "must not be empty"))
    return problems
