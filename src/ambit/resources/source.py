"""An object source: where a control plane reads and writes Kubernetes-style objects, as a protocol.

The control plane and the waypoint controller take an :class:`ObjectSource` instead of building a
store client: list + watch (from a ``resourceVersion``; ``Gone``, HTTP 410, means "relist"; idle
streams carry ``BOOKMARK`` events that only advance the revision) and compare-and-swap writes (an
``update`` carrying a stale ``metadata.resourceVersion`` raises ``Conflict``). The embedded store's
client (``ambit.store.StoreClient``) is the first implementation; a Kubernetes API source is the next.

This module also owns the vocabulary every source speaks: objects (plain JSON dicts in Kubernetes
form, keyed ``(kind, namespace or "", name)``), :class:`ListResult`, :class:`WatchEvent` and the
errors, each with the HTTP status an API server would answer (``StoreError`` and its subclasses,
named after the store, where they were first defined; ``ambit.store.types`` re-exports them).
Pure: only typing and dataclasses.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

Obj = dict[str, Any]
Key = tuple[str, str, str]

ADDED: Final = "ADDED"
MODIFIED: Final = "MODIFIED"
DELETED: Final = "DELETED"
BOOKMARK: Final = "BOOKMARK"
ERROR: Final = "ERROR"


def resource_version(obj: Mapping[str, Any]) -> int:
    """The revision of an object's last write, 0 when it has none."""
    meta = obj.get("metadata") or {}
    try:
        return int(meta.get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


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

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        index: int | None = None,
        details: Obj | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.index = index
        self.details = details  # Kubernetes' StatusDetails (e.g. an eviction's causes), when there are any

    def to_json(self) -> Obj:
        body: Obj = {"kind": "Status", "status": self.status, "reason": self.reason, "message": self.message}
        if self.index is not None:
            body["index"] = self.index
        if self.details:
            body["details"] = self.details
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


class TooManyRequests(StoreError):
    """429: refused for now, try again later (an eviction that would break a PodDisruptionBudget)."""

    status = 429
    reason = "TooManyRequests"


class Invalid(StoreError):
    """422: the object failed validation; nothing was stored."""

    status = 422
    reason = "Invalid"


class Unavailable(StoreError):
    """The store could not be reached (no socket, refused, connection lost) or cannot accept writes."""

    status = 503
    reason = "ServiceUnavailable"


class ObjectSource(Protocol):
    """List + watch + compare-and-swap writes over Kubernetes-style objects; see the module docstring."""

    async def get(self, kind: str, name: str, namespace: str | None = None) -> Obj:
        """One object; ``NotFound`` if absent."""
        ...

    async def list(
        self,
        kinds: str | Iterable[str] | None = None,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
    ) -> ListResult:
        """The objects of ``kinds`` (all when None) and the revision to watch from."""
        ...

    def watch(
        self,
        resource_version: str | int,
        kinds: Iterable[str] | None = None,
        *,
        timeout_seconds: float | None = None,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Every change after ``resource_version``, in order, then ``BOOKMARK`` events while idle.

        Raises ``Gone`` when the history no longer reaches back (relist), ``Unavailable`` when the
        connection fails; ends when the source ends the stream."""
        ...

    async def create(self, obj: Obj) -> Obj:
        """Create; ``AlreadyExists`` (a ``Conflict``) if present. Returns the stored object."""
        ...

    async def update(self, obj: Obj) -> Obj:
        """Compare-and-swap: ``Conflict`` unless ``metadata.resourceVersion`` is the stored one."""
        ...

    async def delete(
        self,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
    ) -> Obj:
        """Delete; with ``resource_version``, only if unchanged since then (else ``Conflict``)."""
        ...

    async def close(self) -> None:
        """Release the connection(s); the source is not used afterwards."""
        ...
