"""Values shared by the store server and its clients: object keys, operations, events, and the errors.

Objects are plain JSON dicts in Kubernetes form (``apiVersion``, ``kind``, ``metadata``, ``spec``,
``status``). An object is identified by ``(kind, namespace, name)``, with ``""`` as the namespace of a
cluster-scoped object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

Obj = dict[str, Any]
Key = tuple[str, str, str]

OpKind = Literal["apply", "create", "update", "delete"]
OP_KINDS: Final = ("apply", "create", "update", "delete")

ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"
BOOKMARK: Final = "BOOKMARK"
ERROR: Final = "ERROR"


def object_key(obj: Mapping[str, Any]) -> Key:
    """``(kind, namespace or "", name)`` of a stored (normalized) object."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


def resource_version(obj: Mapping[str, Any]) -> int:
    """The revision of an object's last write, 0 when it has none."""
    meta = obj.get("metadata") or {}
    try:
        return int(meta.get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def describe(key: Key) -> str:
    """``Service/default/productpage`` or ``Namespace/demo``."""
    kind, namespace, name = key
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction.

    ``apply`` creates or replaces without a precondition (last writer wins, as ``kubectl apply``);
    ``create`` fails if the object exists; ``update`` is compare-and-swap on
    ``metadata.resourceVersion``; ``delete`` needs only kind/namespace/name (and honours a
    ``resourceVersion`` precondition). With `missing_ok`, deleting an absent object is not an error.
    """

    op: OpKind
    object: Obj
    missing_ok: bool = False

    def to_json(self) -> Obj:
        body: Obj = {"op": self.op, "object": self.object}
        if self.missing_ok:
            body["missingOk"] = True
        return body


@dataclass(frozen=True, slots=True)
class OpResult:
    """What one operation did.

    `result` is ``created``, ``configured``, ``unchanged``, ``updated``, ``deleted`` or ``notfound``.

    `object` is the stored object after the write (for deletes: the object as it was deleted), or
    None for ``notfound``.
    """

    op: str
    result: str
    object: Obj | None

    def to_json(self) -> Obj:
        return {"op": self.op, "result": self.result, "object": self.object}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OpResult:
        obj = data.get("object")
        return cls(op=str(data.get("op")), result=str(data.get("result")), object=obj)


@dataclass(frozen=True, slots=True)
class TransactionResult:
    resource_version: str
    results: list[OpResult]


@dataclass(frozen=True, slots=True)
class ListResult:
    """A LIST: the items and the store's revision at the time of the list (watch from it)."""

    items: list[Obj]
    resource_version: str


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """``ADDED``, ``MODIFIED``, ``DELETED`` (the object as deleted) or ``BOOKMARK`` (only a revision)."""

    type: str
    object: Obj

    @property
    def resource_version(self) -> str:
        return str((self.object.get("metadata") or {}).get("resourceVersion", ""))

    @property
    def revision(self) -> int:
        return resource_version(self.object)

    def to_json(self) -> Obj:
        return {"type": self.type, "object": self.object}


class StoreError(Exception):
    """A refused or failed store request. `status` is the HTTP status; `index` the failing operation."""

    status: int = 500
    reason: str = "InternalError"

    def __init__(self, message: str, *, status: int | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.index = index

    def to_json(self) -> Obj:
        body: Obj = {"kind": "Status", "status": self.status, "reason": self.reason, "message": self.message}
        if self.index is not None:
            body["index"] = self.index
        return body


class BadRequest(StoreError):
    status = 400
    reason = "BadRequest"


class Forbidden(StoreError):
    status = 403
    reason = "Forbidden"


class NotFound(StoreError):
    status = 404
    reason = "NotFound"


class Conflict(StoreError):
    """409: the stored object changed since it was read (CAS failure), or it already exists."""

    status = 409
    reason = "Conflict"


class AlreadyExists(Conflict):
    reason = "AlreadyExists"


class Gone(StoreError):
    """410: the requested revision is older than the store's event history; relist."""

    status = 410
    reason = "Expired"


class Invalid(StoreError):
    """422: the object failed validation; nothing was stored."""

    status = 422
    reason = "Invalid"


class Unavailable(StoreError):
    """The store could not be reached (no socket, refused, connection lost) or cannot accept writes."""

    status = 503
    reason = "ServiceUnavailable"


_BY_STATUS: Final[dict[int, type[StoreError]]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    503: Unavailable,
}


def error_from_json(status: int, body: Mapping[str, Any] | None) -> StoreError:
    """Rebuild the error a server answered with."""
    body = body or {}
    message = str(body.get("message") or f"store answered HTTP {status}")
    index = body.get("index")
    cls: type[StoreError] = _BY_STATUS.get(status, StoreError)
    if status == 409 and body.get("reason") == AlreadyExists.reason:
        cls = AlreadyExists
    return cls(message, status=status, index=index if isinstance(index, int) else None)
