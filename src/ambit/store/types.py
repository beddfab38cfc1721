"""Values shared by the store server and its clients: object keys, operations, events, and the errors.

Events, list results and the errors are every object source's vocabulary and live in
``ambit.resources.source``; they are re-exported here, where the store's code has always found them.

Objects are plain JSON dicts in Kubernetes form (``apiVersion``, ``kind``, ``metadata``, ``spec``,
``status``). An object is identified by ``(kind, namespace, name)``, with ``""`` as the namespace of a
cluster-scoped object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from ambit.resources.source import (
    ADDED,
    BOOKMARK,
    DELETED,
    ERROR,
    MODIFIED,
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Key,
    ListResult,
    NotFound,
    Obj,
    StoreError,
    TooManyRequests,
    Unavailable,
    WatchEvent,
    resource_version,
)

__all__ = [
    "ADDED",
    "BOOKMARK",
    "DELETED",
    "ERROR",
    "MODIFIED",
    "OP_KINDS",
    "AlreadyExists",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "Key",
    "ListResult",
    "NotFound",
    "Obj",
    "Op",
    "OpKind",
    "OpResult",
    "StoreError",
    "TooManyRequests",
    "TransactionResult",
    "Unavailable",
    "WatchEvent",
    "describe",
    "error_from_json",
    "object_key",
    "resource_version",
]

OpKind = Literal["apply", "create", "update", "delete"]
OP_KINDS: Final = ("apply", "create", "update", "delete")


def object_key(obj: Mapping[str, Any]) -> Key:
    """``(kind, namespace or "", name)`` of a stored (normalized) object."""
    meta = obj.get("metadata") or {}
    return (str(obj.get("kind", "")), str(meta.get("namespace") or ""), str(meta.get("name", "")))


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
    Deleting a Pod bound to a node is graceful (:mod:`ambit.store.graceful`).
    """

    op: OpKind
    object: Obj
    missing_ok: bool = False
    #: a delete's grace period for a Pod (None: the pod's terminationGracePeriodSeconds; 0: at once)
    grace_period: int | None = None

    def to_json(self) -> Obj:
        body: Obj = {"op": self.op, "object": self.object}
        if self.missing_ok:
            body["missingOk"] = True
        if self.grace_period is not None:
            body["gracePeriodSeconds"] = self.grace_period
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


_BY_STATUS: Final[dict[int, type[StoreError]]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    429: TooManyRequests,
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
    details = body.get("details")
    return cls(
        message,
        status=status,
        index=index if isinstance(index, int) else None,
        details=details if isinstance(details, dict) else None,
    )
