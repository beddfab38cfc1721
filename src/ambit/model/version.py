"""Content versions: a resource's version is the hash of its canonical form, so equal values agree.

Every replica of the control plane derives the same version from the same value, and a proxy that
moves between replicas is sent nothing it already has. Used by translation (``TranslationResult
.versions``) and the snapshot cache (the versions it serves). Stdlib only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from enum import Enum
from typing import Any

FULL_VERSION_CHARS = 64  # a whole SHA-256 in hex


def _canonical(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Enum):
        return _canonical(value.value)
    names = getattr(type(value), "__dataclass_fields__", None)
    if names is not None:
        return {name: _canonical(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    return value


def canonical_json(value: Any) -> str:
    """The canonical serialization a version hashes: JSON, sorted keys, no whitespace, enums by value."""
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_version(value: Any, chars: int = FULL_VERSION_CHARS) -> str:
    """The first ``chars`` hex digits of the SHA-256 of ``value``'s canonical JSON."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:chars]
