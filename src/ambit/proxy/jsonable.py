"""Model values as plain JSON values (what the admin port serves as /config_dump)."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from typing import Any


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
    return str(value)
