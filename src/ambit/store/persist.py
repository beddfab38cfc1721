"""The store on disk: a snapshot plus a write-ahead log of the transactions since.

Layout of the data directory (mode 0700, files 0600)::

    snapshot.json   {"format": 1, "revision": R, "objects": [...]}   (replaced by atomic rename)
    wal.jsonl       one line per committed transaction: {"revision": R, "events": [{"type", "object"}, ...]}
    lock            flock'ed while a server owns the directory

A transaction is acknowledged only after its log line is fsync'ed. Compaction writes a new snapshot
(temporary file, fsync, rename, fsync of the directory) and then truncates the log. Loading reads the
snapshot and replays the log, skipping events the snapshot already holds, so a crash anywhere in
between (after the rename, before the truncation) loses and duplicates nothing. A torn last line (a
crash during an append, never acknowledged) is cut off; damage anywhere else stops the load.

Everything here is blocking file I/O: the server calls it from a worker thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ambit.store.types import DELETED, Key, Obj, WatchEvent, object_key

SNAPSHOT: Final = "snapshot.json"
LOG: Final = "wal.jsonl"
LOCK: Final = "lock"
FORMAT: Final = 1
_EVENT_TYPES: Final = frozenset({"ADDED", "MODIFIED", "DELETED"})


class PersistError(Exception):
    """The data directory cannot be used: locked by another server, unreadable, or damaged."""


@dataclass(slots=True)
class Loaded:
    """What a data directory holds: the latest revision, the objects, and the log's events."""

    revision: int = 0
    objects: list[Obj] = field(default_factory=list)
    #: events replayed from the log (newer than the snapshot), oldest first
    events: list[WatchEvent] = field(default_factory=list)
    snapshot_revision: int = 0
    #: a torn last log line was found and cut off
    repaired: bool = False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_event(raw: Any, where: str) -> WatchEvent:
    if not isinstance(raw, dict) or raw.get("type") not in _EVENT_TYPES:
        raise PersistError(f"{where}: malformed event")
    if not isinstance(raw.get("object"), dict):
        raise PersistError(f"{where}: malformed event")
    event = WatchEvent(str(raw["type"]), raw["object"])
    if event.revision <= 0:
        raise PersistError(f"{where}: event without a resourceVersion")
    return event


class Persistence:
    """Owns one data directory while open."""

    def __init__(self, directory: Path, *, fsync: bool = True) -> None:
        self.directory = Path(directory)
        self._fsync = fsync
        self._lock_fd: int | None = None
        self._log_fd: int | None = None
        #: log records written (or replayed) since the last compaction
        self.records = 0
        #: set when a failed append could not be rolled back: the log must not be appended to again
        self.damaged: str | None = None

    @property
    def snapshot_path(self) -> Path:
        return self.directory / SNAPSHOT

    @property
    def log_path(self) -> Path:
        return self.directory / LOG

    def open(self) -> Loaded:
        """Lock the directory (creating it), load the snapshot, replay the log, open the log for appends."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        lock_fd = os.open(self.directory / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise PersistError(f"{self.directory} is in use by another store server") from None
        self._lock_fd = lock_fd
        try:
            loaded = self._load()
            self._log_fd = os.open(
                self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600
            )
            os.chmod(self.log_path, 0o600)
            if self._fsync:
                _fsync_dir(self.directory)
        except BaseException:
            self.close()
            raise
        return loaded

    def _load(self) -> Loaded:
        with contextlib.suppress(FileNotFoundError):
            (self.directory / (SNAPSHOT + ".tmp")).unlink()  # an interrupted compaction
        loaded = Loaded()
        state: dict[Key, Obj] = {}
        if self.snapshot_path.exists():
            try:
                snap = json.loads(self.snapshot_path.read_bytes())
            except (OSError, ValueError) as exc:
                raise PersistError(f"{self.snapshot_path}: cannot read the snapshot: {exc}") from exc
            if not isinstance(snap, dict) or snap.get("format") != FORMAT:
                raise PersistError(f"{self.snapshot_path}: not a format-{FORMAT} store snapshot")
            revision, objects = snap.get("revision"), snap.get("objects")
            if not isinstance(revision, int) or not isinstance(objects, list):
                raise PersistError(f"{self.snapshot_path}: malformed snapshot")
            for obj in objects:
                if not isinstance(obj, dict):
                    raise PersistError(f"{self.snapshot_path}: malformed object")
                state[object_key(obj)] = obj
            loaded.revision = loaded.snapshot_revision = revision
        if self.log_path.exists():
            self._replay(loaded, state)
        loaded.objects = list(state.values())
        return loaded

    def _replay(self, loaded: Loaded, state: dict[Key, Obj]) -> None:
        data = self.log_path.read_bytes()
        offset = 0
        line_no = 0
        while offset < len(data):
            line_no += 1
            end = data.find(b"\n", offset)
            last = end == -1 or end == len(data) - 1
            line = data[offset:] if end == -1 else data[offset:end]
            try:
                if end == -1:
                    raise ValueError("no newline")
                record = json.loads(line)
                if not isinstance(record, dict) or not isinstance(record.get("events"), list):
                    raise ValueError("not a log record")
            except ValueError as exc:
                if not last:
                    raise PersistError(f"{self.log_path}: line {line_no} is damaged ({exc})") from exc
                # a torn final append: never acknowledged, cut it off
                with open(self.log_path, "r+b") as f:
                    f.truncate(offset)
                    if self._fsync:
                        os.fsync(f.fileno())
                loaded.repaired = True
                break
            for raw in record["events"]:
                event = _parse_event(raw, f"{self.log_path}: line {line_no}")
                if event.revision <= loaded.revision:
                    continue  # already in the snapshot (crash between rename and truncation)
                if event.type == DELETED:
                    state.pop(object_key(event.object), None)
                else:
                    state[object_key(event.object)] = event.object
                loaded.revision = event.revision
                loaded.events.append(event)
            self.records += 1
            offset = len(data) if end == -1 else end + 1

    def append(self, events: Sequence[WatchEvent]) -> None:
        """Write one transaction to the log and make it durable; on failure the log is left as before."""
        if self._log_fd is None:
            raise PersistError("the store's data directory is not open")
        if self.damaged is not None:
            raise PersistError(self.damaged)
        if not events:
            return
        record = {"revision": events[-1].revision, "events": [e.to_json() for e in events]}
        data = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        start = os.lseek(self._log_fd, 0, os.SEEK_END)
        try:
            _write_all(self._log_fd, data)
            if self._fsync:
                os.fsync(self._log_fd)
        except BaseException as exc:
            try:
                os.ftruncate(self._log_fd, start)
            except OSError as undo:
                self.damaged = f"{self.log_path}: a failed append ({exc}) could not be rolled back ({undo})"
            raise
        self.records += 1

    def write_snapshot(self, revision: int, objects: Iterable[Obj]) -> None:
        """Replace the snapshot atomically (the first half of a compaction)."""
        tmp = self.directory / (SNAPSHOT + ".tmp")
        body = {"format": FORMAT, "revision": revision, "objects": list(objects)}
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.snapshot_path)
        if self._fsync:
            _fsync_dir(self.directory)

    def truncate_log(self) -> None:
        """Empty the log (the second half of a compaction; only after the snapshot holds everything)."""
        if self._log_fd is None:
            raise PersistError("the store's data directory is not open")
        os.ftruncate(self._log_fd, 0)
        if self._fsync:
            os.fsync(self._log_fd)
        self.records = 0

    def compact(self, revision: int, objects: Iterable[Obj]) -> None:
        """Fold the log into a new snapshot at `revision`."""
        self.write_snapshot(revision, objects)
        self.truncate_log()

    def close(self) -> None:
        for attr in ("_log_fd", "_lock_fd"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                with contextlib.suppress(OSError):
                    os.close(fd)
