"""Model values as plain JSON values and back: one view for every debug endpoint (a proxy's /config_dump and
its readers, the control plane's /debug/config and /debug/syncz). Pure, stdlib only.

:func:`jsonable` makes frozen dataclasses, enums, tuples, datetimes (ISO 8601) and identities plain JSON
values; :func:`from_jsonable` is its inverse for a given type, driven by the dataclasses' annotations:
dataclasses (a missing key takes the field's default), enums (by value), ``X | None``, ``tuple[X, ...]``
and fixed tuples, ``Mapping[str, X]``, datetimes and the JSON scalars. A value that does not fit raises
:class:`ValueError`.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

T = TypeVar("T")


def jsonable(value: Any) -> Any:
    """Model values (frozen dataclasses, enums, tuples, identities) as plain JSON values."""
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def from_jsonable(cls: type[T], value: object) -> T:
    """The ``cls`` whose :func:`jsonable` view is ``value``; raises ValueError if it is not one."""
    return typing.cast(T, _decode(cls, value, cls.__name__))


def _decode(tp: Any, value: object, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{where}: only X | None unions are supported, not {tp!r}")
        return _decode(inner[0], value, where)
    if origin is tuple:
        args = typing.get_args(tp)
        items = _expect(list, value, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(items))
        if len(items) != len(args):
            raise ValueError(f"{where}: {len(items)} items, expected {len(args)}")
        return tuple(_decode(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, items, strict=True)))
    if origin in (dict, Mapping):
        key_type, value_type = typing.get_args(tp)
        if key_type is not str:
            raise TypeError(f"{where}: only str keys are supported, not {key_type!r}")
        entries = _expect(dict, value, where)
        return {str(k): _decode(value_type, v, f"{where}[{k!r}]") for k, v in entries.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, where)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not a {tp.__name__}") from None
    if tp is datetime:
        try:
            return datetime.fromisoformat(_expect(str, value, where))
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO 8601 time") from None
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}: {value!r} is not a number")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {value!r} is not an integer")
        return value
    if tp in (str, bool):
        return _expect(tp, value, where)
    raise TypeError(f"{where}: cannot decode {tp!r}")


def _decode_dataclass(cls: type[Any], value: object, where: str) -> Any:
    items = _expect(dict, value, where)
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.name in items:
            kwargs[f.name] = _decode(hints[f.name], items[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ValueError(f"{where}: no {f.name!r}")
    return cls(**kwargs)


def _expect(tp: type[T], value: object, where: str) -> T:
    if not isinstance(value, tp):
        raise ValueError(f"{where}: {value!r} is not a {tp.__name__}")
    return value
