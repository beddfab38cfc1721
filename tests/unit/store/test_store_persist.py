"""The store on disk: log replay, compaction, crashes in between, torn writes, locking, modes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ambit.store.core import ObjectStore
from ambit.store.persist import LOG, SNAPSHOT, Persistence, PersistError
from ambit.store.types import Obj, Op


def svc(name: str, port: int = 80) -> Obj:
    return {
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": port}]},
    }


def commit(store: ObjectStore, persist: Persistence, *ops: Op) -> None:
    """What the server does: prepare, log durably, then commit."""
    prepared = store.prepare(list(ops))
    persist.append(prepared.events)
    store.commit(prepared)


def reopen(directory: Path) -> tuple[ObjectStore, Persistence]:
    persist = Persistence(directory, fsync=False)
    loaded = persist.open()
    store = ObjectStore()
    store.load(loaded.revision, loaded.objects, loaded.events)
    return store, persist


def test_log_replay_restores_everything(tmp_path: Path) -> None:
    store, persist = reopen(tmp_path / "data")
    commit(store, persist, Op("create", svc("a")), Op("create", svc("b")))
    commit(store, persist, Op("apply", svc("a", 81)))
    commit(store, persist, Op("delete", svc("b")))
    persist.close()
    again, persist = reopen(tmp_path / "data")
    assert again.revision == 4
    assert dict(again.objects) == dict(store.objects)
    assert persist.records == 3
    # the log tail seeds the watch history: a watcher at revision 1 can resume after a restart
    assert [e.revision for e in again.events_since(1)] == [2, 3, 4]
    persist.close()


def test_files_and_modes(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    store, persist = reopen(directory)
    commit(store, persist, Op("create", svc("a")))
    persist.compact(store.revision, store.objects.values())
    commit(store, persist, Op("create", svc("b")))
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in (SNAPSHOT, LOG, "lock"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    persist.close()


def test_compaction_folds_the_log_into_the_snapshot(tmp_path: Path) -> None:
    store, persist = reopen(tmp_path)
    for i in range(5):
        commit(store, persist, Op("create", svc(f"s{i}")))
    persist.compact(store.revision, store.objects.values())
    assert persist.records == 0
    assert (tmp_path / LOG).read_bytes() == b""
    snap = json.loads((tmp_path / SNAPSHOT).read_text())
    assert snap["revision"] == 5
    assert len(snap["objects"]) == 5
    commit(store, persist, Op("delete", svc("s0")))
    persist.close()
    again, persist = reopen(tmp_path)
    assert again.revision == 6
    assert dict(again.objects) == dict(store.objects)
    assert again.history_floor == 5
    persist.close()


def test_crash_after_the_snapshot_before_the_log_truncation(tmp_path: Path) -> None:
    store, persist = reopen(tmp_path)
    for i in range(3):
        commit(store, persist, Op("create", svc(f"s{i}")))
    persist.write_snapshot(store.revision, store.objects.values())  # ...and the process dies here
    persist.close()
    again, persist = reopen(tmp_path)
    assert again.revision == 3
    assert dict(again.objects) == dict(store.objects)
    commit(again, persist, Op("apply", svc("s1", 99)))
    persist.close()
    third, persist = reopen(tmp_path)
    assert third.revision == 4
    assert third.get(("Service", "default", "s1"))["spec"]["ports"][0]["port"] == 99  # type: ignore[index]
    persist.close()


def test_crash_between_log_write_and_snapshot(tmp_path: Path) -> None:
    """Transactions logged after the last snapshot are replayed on top of it; a half-written snapshot
    (the temporary file) is ignored."""
    store, persist = reopen(tmp_path)
    commit(store, persist, Op("create", svc("a")))
    persist.compact(store.revision, store.objects.values())
    commit(store, persist, Op("create", svc("b")))
    commit(store, persist, Op("apply", svc("a", 81)))
    (tmp_path / (SNAPSHOT + ".tmp")).write_text(
        '{"format": 1, "revision": 99, "obj'
    )  # interrupted compaction
    persist.close()
    again, persist = reopen(tmp_path)
    assert again.revision == 3
    assert dict(again.objects) == dict(store.objects)
    assert not (tmp_path / (SNAPSHOT + ".tmp")).exists()
    persist.close()


def test_a_torn_last_line_is_cut_off(tmp_path: Path) -> None:
    store, persist = reopen(tmp_path)
    commit(store, persist, Op("create", svc("a")))
    persist.close()
    with open(tmp_path / LOG, "ab") as f:
        f.write(b'{"revision": 2, "events": [{"type": "ADD')  # the crash happened mid-append
    again, persist = reopen(tmp_path)
    assert again.revision == 1
    commit(again, persist, Op("create", svc("b")))
    persist.close()
    third, persist = reopen(tmp_path)
    assert third.revision == 2
    assert len(third) == 2
    persist.close()


def test_damage_in_the_middle_of_the_log_stops_the_load(tmp_path: Path) -> None:
    store, persist = reopen(tmp_path)
    commit(store, persist, Op("create", svc("a")))
    commit(store, persist, Op("create", svc("b")))
    persist.close()
    lines = (tmp_path / LOG).read_bytes().split(b"\n")
    lines[0] = b"garbage"
    (tmp_path / LOG).write_bytes(b"\n".join(lines))
    with pytest.raises(PersistError, match="line 1"):
        Persistence(tmp_path, fsync=False).open()


def test_a_failed_append_leaves_the_log_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, persist = reopen(tmp_path)
    commit(store, persist, Op("create", svc("a")))
    before = (tmp_path / LOG).read_bytes()
    import ambit.store.persist as persist_mod

    def broken_write(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(persist_mod, "_write_all", broken_write)
    prepared = store.prepare([Op("create", svc("b"))])
    with pytest.raises(OSError, match="No space"):
        persist.append(prepared.events)
    assert (tmp_path / LOG).read_bytes() == before
    persist.close()


def test_one_server_per_directory(tmp_path: Path) -> None:
    first = Persistence(tmp_path, fsync=False)
    first.open()
    with pytest.raises(PersistError, match="in use"):
        Persistence(tmp_path, fsync=False).open()
    first.close()
    second = Persistence(tmp_path, fsync=False)
    second.open()
    second.close()


def test_fsync_path_works(tmp_path: Path) -> None:
    persist = Persistence(tmp_path)
    loaded = persist.open()
    store = ObjectStore()
    store.load(loaded.revision, loaded.objects)
    commit(store, persist, Op("create", svc("a")))
    persist.compact(store.revision, store.objects.values())
    persist.close()


def test_an_append_that_cannot_be_rolled_back_stops_further_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, persist = reopen(tmp_path)
    import ambit.store.persist as persist_mod

    def broken_write(fd: int, data: bytes) -> None:
        os.write(fd, data[:10])
        raise OSError(5, "Input/output error")

    def broken_truncate(fd: int, length: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(persist_mod, "_write_all", broken_write)
    monkeypatch.setattr(os, "ftruncate", broken_truncate)
    with pytest.raises(OSError):
        persist.append(store.prepare([Op("create", svc("a"))]).events)
    assert persist.damaged is not None
    monkeypatch.undo()
    with pytest.raises(PersistError, match="could not be rolled back"):
        persist.append(store.prepare([Op("create", svc("b"))]).events)
    persist.close()
