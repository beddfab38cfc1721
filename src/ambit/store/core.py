"""The store's state machine, without I/O: objects, the global revision, transactions and event history.

``ObjectStore.prepare(ops)`` computes what a transaction would do (its events and per-operation
results) against the current state without changing it, and raises the first failure with its index;
``commit(prepared)`` then applies it. The server writes the prepared events to the write-ahead log
between the two, so nothing is visible (or acknowledged) before it is durable.

Every write takes the next revision: a transaction of N writes (cascaded deletions included) gets N
consecutive revisions, and each stored object carries the revision of its last write in
``metadata.resourceVersion``. Stored objects are never mutated in place; a write replaces the dict.
"""

from __future__ import annotations

import copy
import itertools
import re
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, cast

from ambit.store import clusterip, graceful
from ambit.store.types import (
    ADDED,
    DELETED,
    MODIFIED,
    AlreadyExists,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    Key,
    NotFound,
    Obj,
    Op,
    OpKind,
    OpResult,
    StoreError,
    WatchEvent,
    describe,
    object_key,
)

DEFAULT_HISTORY: Final = 10_000
CLUSTER_SCOPED: Final = frozenset({"Namespace", "Node"})
#: metadata the server owns: a client's values are ignored (uid, creation time) or checked (resourceVersion)
SERVER_FIELDS: Final = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")
#: namespaces the store always has (kube-apiserver keeps ``default`` the same way) and refuses to delete
SYSTEM_NAMESPACES: Final = ("default", "kube-node-lease")
#: fields that the store or a controller assigns and an ``apply`` without them keeps (as kubectl's merge does)
_KEPT_ON_APPLY: Final[dict[str, tuple[str, ...]]] = {
    "Service": ("clusterIP", "clusterIPs"),
    "Pod": ("nodeName",),
    # a manifest without replicas leaves the live count (an HPA's, `ambit scale`'s), as kubectl apply does
    # when the field was never in the manifest
    "Deployment": ("replicas",),
    "ReplicaSet": ("replicas",),
}
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]{0,62}")
_MAX_NAME = 253

Validator = Callable[[Obj], Obj]
ScopeFn = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class Schema:
    """How the store checks objects: `validate` returns the normalized object or raises ValueError."""

    validate: Validator
    is_namespaced: ScopeFn

    @classmethod
    def permissive(cls) -> Schema:
        """No validation; Namespace and Node are cluster-scoped (tests and tools)."""
        return cls(validate=lambda obj: obj, is_namespaced=lambda kind: kind not in CLUSTER_SCOPED)


@dataclass(slots=True)
class Prepared:
    """A computed, not yet applied transaction."""

    base_revision: int
    revision: int
    events: list[WatchEvent]
    results: list[OpResult]


@dataclass(slots=True)
class _View:
    """The state as seen part-way through a transaction: stored objects plus pending changes."""

    objects: Mapping[Key, Obj]
    overlay: dict[Key, Obj | None] = field(default_factory=dict)
    _cluster_ips: set[str] | None = None

    def cluster_ips(self) -> set[str]:
        """Service addresses in use, computed once per transaction and kept current within it."""
        if self._cluster_ips is None:
            self._cluster_ips = clusterip.used_addresses(
                o for o in self.values() if o.get("kind") == "Service"
            )
        return self._cluster_ips

    def get(self, key: Key) -> Obj | None:
        if key in self.overlay:
            return self.overlay[key]
        found: Obj | None = self.objects.get(key)
        return found

    def values(self) -> Iterator[Obj]:
        for key, obj in self.objects.items():
            if key not in self.overlay:
                yield obj
        for pending in self.overlay.values():
            if pending is not None:
                yield pending


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_name(what: str, value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{where}: metadata.{what} is required")
    if len(value) > _MAX_NAME or "/" in value or value in {".", ".."} or value.strip() != value:
        raise BadRequest(f"{where}: metadata.{what} {value!r} is not a valid name")
    return value


def _comparable(obj: Obj) -> Obj:
    """The object without server-owned metadata and empty label/annotation maps, for change detection."""
    out = {k: v for k, v in obj.items() if k != "metadata"}
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SERVER_FIELDS}
    for optional in ("labels", "annotations", "ownerReferences"):
        if not meta.get(optional):
            meta.pop(optional, None)
    out["metadata"] = meta
    return out


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in {"metadata", "status"}}


def _owner_uids(obj: Obj) -> set[str]:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return {str(ref.get("uid")) for ref in refs if isinstance(ref, dict) and ref.get("uid")}


def _with_revision(obj: Obj, revision: int) -> Obj:
    out = dict(obj)
    out["metadata"] = {**obj["metadata"], "resourceVersion": str(revision)}
    return out


class ObjectStore:
    """All objects of one cluster, the global revision, and a bounded history of recent events."""

    def __init__(
        self,
        schema: Schema | None = None,
        *,
        history: int = DEFAULT_HISTORY,
        clock: Callable[[], str] = now_rfc3339,
        new_uid: Callable[[], str] = lambda: str(uuid.uuid4()),
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one event")
        self.schema = schema or Schema.permissive()
        self.history_limit = history
        self._clock = clock
        self._new_uid = new_uid
        self._wall = wall
        self._objects: dict[Key, Obj] = {}
        self.revision = 0
        self._history: deque[WatchEvent] = deque()
        #: every event with a revision above the floor is in the history
        self.history_floor = 0

    # -- loading ---------------------------------------------------------------------------------

    def load(self, revision: int, objects: Iterable[Obj], events: Sequence[WatchEvent] = ()) -> None:
        """Install state read from disk; `events` (the replayed log tail) seed the watch history."""
        self._objects = {object_key(obj): obj for obj in objects}
        self.revision = revision
        self._history.clear()
        self.history_floor = revision
        tail = [e for e in events if e.revision > 0]
        consecutive = all(b.revision == a.revision + 1 for a, b in itertools.pairwise(tail))
        if tail and consecutive and tail[-1].revision == revision:
            self._history.extend(tail)
            self.history_floor = tail[0].revision - 1
            self._trim_history()

    # -- reads -----------------------------------------------------------------------------------

    @property
    def objects(self) -> Mapping[Key, Obj]:
        return self._objects

    def __len__(self) -> int:
        return len(self._objects)

    def key(self, kind: str, namespace: str | None, name: str) -> Key:
        """The key of an object as a client names it: the default namespace filled, scope applied."""
        if self.schema.is_namespaced(kind):
            return (kind, namespace or "default", name)
        return (kind, "", name)

    def get(self, key: Key) -> Obj | None:
        return self._objects.get(key)

    def list_objects(self, kinds: Iterable[str] | None = None, namespace: str | None = None) -> list[Obj]:
        """Objects of `kinds` (all when None), in `namespace` (all when None), sorted by key."""
        wanted = frozenset(kinds) if kinds is not None else None
        items = [
            (key, obj)
            for key, obj in self._objects.items()
            if (wanted is None or key[0] in wanted) and (namespace is None or key[1] == namespace)
        ]
        items.sort(key=lambda item: item[0])
        return [obj for _, obj in items]

    def events_since(self, revision: int, kinds: Iterable[str] | None = None) -> list[WatchEvent]:
        """Every event after `revision`, in order; Gone when the history no longer reaches back to it."""
        if revision < self.history_floor:
            raise Gone(f"too old resource version: {revision} (oldest available: {self.history_floor})")
        if revision > self.revision:
            raise Gone(f"resource version {revision} is newer than the store's ({self.revision}); relist")
        wanted = frozenset(kinds) if kinds is not None else None
        skip = revision - self.history_floor
        out: list[WatchEvent] = []
        for i, event in enumerate(self._history):
            if i < skip or event.revision <= revision:
                continue
            if wanted is None or event.object.get("kind") in wanted:
                out.append(event)
        return out

    # -- writes ----------------------------------------------------------------------------------

    def prepare(self, ops: Sequence[Op]) -> Prepared:
        """Compute a transaction against the current state without applying it.

        Raises the first failing operation's StoreError with `index` set; nothing is changed.
        """
        view = _View(self._objects)
        revision = self.revision
        events: list[WatchEvent] = []
        results: list[OpResult] = []
        for index, op in enumerate(ops):
            try:
                if op.op == "delete":
                    revision, result = self._prepare_delete(view, op, revision, events)
                else:
                    revision, result = self._prepare_write(view, op, revision, events)
            except StoreError as exc:
                exc.index = index
                raise
            results.append(result)
        return Prepared(base_revision=self.revision, revision=revision, events=events, results=results)

    def commit(self, prepared: Prepared) -> list[WatchEvent]:
        """Apply a prepared transaction; it must have been prepared against the current revision."""
        if prepared.base_revision != self.revision:
            raise RuntimeError(
                f"transaction prepared at revision {prepared.base_revision}, store is at {self.revision}"
            )
        self.apply_events(prepared.events)
        return prepared.events

    def apply_events(self, events: Iterable[WatchEvent]) -> None:
        """Apply events in order (a commit, or a replay of the write-ahead log) and record them."""
        for event in events:
            key = object_key(event.object)
            if event.type == DELETED:
                self._objects.pop(key, None)
            else:
                self._objects[key] = event.object
            self.revision = max(self.revision, event.revision)
            self._history.append(event)
        self._trim_history()

    def _trim_history(self) -> None:
        while len(self._history) > self.history_limit:
            self.history_floor = self._history.popleft().revision

    # -- operations ------------------------------------------------------------------------------

    def _identify(self, obj: object) -> tuple[Obj, Key]:
        """Check the identifying fields of an incoming object; return a normalized copy and its key."""
        if not isinstance(obj, dict):
            raise BadRequest("an object must be a JSON object")
        kind = obj.get("kind")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise BadRequest(f"kind {kind!r} is not a valid kind")
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise BadRequest(f"{kind}: metadata is required")
        name = _check_name("name", meta.get("name"), kind)
        raw_ns = meta.get("namespace")
        if raw_ns not in (None, ""):
            _check_name("namespace", raw_ns, f"{kind}/{name}")
        key = self.key(kind, raw_ns if isinstance(raw_ns, str) else None, name)
        out = copy.deepcopy(obj)
        if key[1]:
            out["metadata"]["namespace"] = key[1]
        else:
            out["metadata"].pop("namespace", None)
        return out, key

    def _validated(self, obj: Obj, key: Key) -> Obj:
        try:
            normalized = self.schema.validate(obj)
        except ValueError as exc:
            raise Invalid(str(exc)) from exc
        if not isinstance(normalized, dict) or not isinstance(normalized.get("metadata"), dict):
            raise Invalid(f"{describe(key)}: validation returned no object")
        # `obj` is already a private copy, and validation returns a copy or `obj` itself: no copy needed.
        # Validation may fill the namespace; the key decided above is what counts.
        if object_key(normalized) != key:
            normalized["metadata"] = {**normalized["metadata"], "name": key[2]}
            if key[1]:
                normalized["metadata"]["namespace"] = key[1]
            else:
                normalized["metadata"].pop("namespace", None)
        return normalized

    def _prepare_write(
        self, view: _View, op: Op, revision: int, events: list[WatchEvent]
    ) -> tuple[int, OpResult]:
        incoming, key = self._identify(op.object)
        body_rv = incoming["metadata"].get("resourceVersion")
        body_uid = incoming["metadata"].get("uid")
        obj = self._validated(incoming, key)
        meta = obj["metadata"]
        for server_field in (*SERVER_FIELDS, *graceful.DELETION_FIELDS):
            meta.pop(server_field, None)
        existing = view.get(key)
        if op.op == "create" or (op.op == "apply" and existing is None):
            if existing is not None:
                raise AlreadyExists(f"{describe(key)} already exists")
            self._assign_cluster_ip(view, key, obj, None)
            revision += 1
            meta["uid"] = self._new_uid()
            meta["creationTimestamp"] = self._clock()
            meta["generation"] = 1
            meta["resourceVersion"] = str(revision)
            view.overlay[key] = obj
            events.append(WatchEvent(ADDED, obj))
            return revision, OpResult(op.op, "created", obj)
        if existing is None:
            raise NotFound(f"{describe(key)} not found")
        if op.op == "update":
            if body_rv in (None, ""):
                raise Conflict(f"{describe(key)}: metadata.resourceVersion must be set to update an object")
            if str(body_rv) != existing["metadata"].get("resourceVersion"):
                raise Conflict(
                    f"Operation cannot be fulfilled on {describe(key)}: the object has been modified; "
                    "please apply your changes to the latest version and try again"
                )
            if body_uid and body_uid != existing["metadata"].get("uid"):
                raise Conflict(f"{describe(key)}: uid precondition failed (the object was replaced)")
        else:  # apply: keep what the manifest does not carry (status written by controllers, owners)
            if "status" not in obj and "status" in existing:
                obj["status"] = existing["status"]
            if "ownerReferences" not in meta and existing["metadata"].get("ownerReferences"):
                meta["ownerReferences"] = existing["metadata"]["ownerReferences"]
            old_spec, new_spec = existing.get("spec"), obj.get("spec")
            if isinstance(old_spec, dict) and isinstance(new_spec, dict):
                for kept_field in _KEPT_ON_APPLY.get(key[0], ()):
                    if kept_field not in new_spec and kept_field in old_spec:
                        new_spec[kept_field] = old_spec[kept_field]
        self._assign_cluster_ip(view, key, obj, existing)
        old_meta = existing["metadata"]
        for kept in ("uid", "creationTimestamp", *graceful.DELETION_FIELDS):
            if kept in old_meta:
                meta[kept] = old_meta[kept]
        if _comparable(obj) == _comparable(existing):
            return revision, OpResult(op.op, "unchanged", existing)
        generation = int(old_meta.get("generation") or 1)
        meta["generation"] = generation + 1 if _spec_part(obj) != _spec_part(existing) else generation
        revision += 1
        meta["resourceVersion"] = str(revision)
        view.overlay[key] = obj
        events.append(WatchEvent(MODIFIED, obj))
        return revision, OpResult(op.op, "configured" if op.op == "apply" else "updated", obj)

    @staticmethod
    def _assign_cluster_ip(view: _View, key: Key, obj: Obj, existing: Obj | None) -> None:
        if key[0] != "Service":
            return
        spec = obj.setdefault("spec", {})
        old_spec = existing.get("spec") if existing is not None else None
        try:
            clusterip.assign(
                spec, old_spec if isinstance(old_spec, dict) else {} if existing else None, view.cluster_ips()
            )
        except clusterip.ClusterIPError as exc:
            raise Invalid(f"{describe(key)}: {exc}") from exc

    def _prepare_delete(
        self, view: _View, op: Op, revision: int, events: list[WatchEvent]
    ) -> tuple[int, OpResult]:
        _, key = self._identify(op.object)
        if key[0] == "Namespace" and key[2] in SYSTEM_NAMESPACES:
            raise Forbidden(f'namespaces "{key[2]}" is forbidden: this namespace may not be deleted')
        meta = op.object.get("metadata") or {}
        existing = view.get(key)
        if existing is None:
            if op.missing_ok:
                return revision, OpResult("delete", "notfound", None)
            raise NotFound(f"{describe(key)} not found")
        want_rv = meta.get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != existing["metadata"].get("resourceVersion"):
            raise Conflict(
                f"Operation cannot be fulfilled on {describe(key)}: the object has been modified "
                "(resourceVersion precondition failed)"
            )
        want_uid = meta.get("uid")
        if want_uid and want_uid != existing["metadata"].get("uid"):
            raise Conflict(f"{describe(key)}: uid precondition failed (the object was replaced)")
        if key[0] == "Pod":
            grace = graceful.grace_seconds(existing, op.grace_period)
            if grace > 0:
                return self._mark_terminating(view, existing, grace, revision, events)
        revision, deleted = self._cascade(view, existing, revision, events)
        return revision, OpResult("delete", "deleted", deleted)

    def _mark_terminating(
        self, view: _View, pod: Obj, grace: int, revision: int, events: list[WatchEvent]
    ) -> tuple[int, OpResult]:
        """A graceful Pod delete: the pod stays, marked; its kubelet stops it and deletes it."""
        marked = graceful.terminating(pod, grace, self._wall())
        if marked is None:
            return revision, OpResult("delete", "deleted", pod)
        revision += 1
        marked = _with_revision(marked, revision)
        view.overlay[object_key(marked)] = marked
        events.append(WatchEvent(MODIFIED, marked))
        return revision, OpResult("delete", "deleted", marked)

    def _cascade(self, view: _View, root: Obj, revision: int, events: list[WatchEvent]) -> tuple[int, Obj]:
        """Delete `root` and, transitively, what it owns (ownerReferences; a Namespace's contents).

        Owned Pods on a node are deleted gracefully (marked; their kubelet finishes them), as
        Kubernetes' garbage collector deletes dependents; a Namespace's contents go at once."""
        owned: dict[str, list[Obj]] = {}
        in_namespace: dict[str, list[Obj]] = {}
        for other in view.values():
            for uid in _owner_uids(other):
                owned.setdefault(uid, []).append(other)
            namespace = (other.get("metadata") or {}).get("namespace")
            if namespace:
                in_namespace.setdefault(namespace, []).append(other)
        queue: deque[Obj] = deque([root])
        first: Obj | None = None
        while queue:
            obj = queue.popleft()
            key = object_key(obj)
            if view.get(key) is None:
                continue  # reached twice (two owners)
            if first is not None and key[0] == "Pod" and root.get("kind") != "Namespace":
                grace = graceful.grace_seconds(obj, None)
                if grace > 0:
                    revision, _ = self._mark_terminating(view, obj, grace, revision, events)
                    continue
            revision += 1
            gone = _with_revision(obj, revision)
            view.overlay[key] = None
            events.append(WatchEvent(DELETED, gone))
            if first is None:
                first = gone
            queue.extend(owned.get(str(obj["metadata"].get("uid")), ()))
            if key[0] == "Namespace":
                queue.extend(in_namespace.get(key[2], ()))
        assert first is not None
        return revision, first


def parse_ops(body: Any) -> list[Op]:
    """``{"operations": [{"op": ..., "object": {...}, "missingOk": bool}, ...]}`` → operations."""
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        raise BadRequest('a transaction is {"operations": [{"op": ..., "object": {...}}, ...]}')
    ops: list[Op] = []
    for index, raw in enumerate(body["operations"]):
        if not isinstance(raw, dict):
            raise BadRequest(f"operation {index} is not an object", index=index)
        kind = raw.get("op")
        if kind not in ("apply", "create", "update", "delete"):
            message = f"operation {index}: op {kind!r} is not apply, create, update or delete"
            raise BadRequest(message, index=index)
        obj = raw.get("object")
        if not isinstance(obj, dict):
            raise BadRequest(f"operation {index}: object is required", index=index)
        grace = raw.get("gracePeriodSeconds")
        if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 0):
            raise BadRequest(f"operation {index}: gracePeriodSeconds must be an integer >= 0", index=index)
        ops.append(
            Op(cast(OpKind, kind), obj, missing_ok=bool(raw.get("missingOk", False)), grace_period=grace)
        )
    return ops
