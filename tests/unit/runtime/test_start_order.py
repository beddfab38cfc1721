"""The fail-closed rule of a pod start (:mod:`ambit.runtime.start_order`): an enrolled pod's app after
its capture and after its ztunnel's ACK, the capture first; and the record's file format, read back by
the handle. Each rule is shown failing on a record that breaks it (the control for the e2e test's
check)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ambit.runtime.handle import ClusterHandle
from ambit.runtime.start_order import (
    StartRecord,
    last_boot,
    line,
    of_boot,
    parse,
    records_path,
    violation,
    violations,
)

GOOD = StartRecord(
    node="node2",
    namespace="ns",
    name="app",
    uid="u1",
    ip="10.244.2.3",
    enrolled=True,
    capture=10.0,
    ack=10.5,
    app=10.6,
    boot=9.0,
    rank=0,
)


def test_an_app_after_its_capture_and_its_ack_keeps_the_rule() -> None:
    assert violation(GOOD) is None
    assert violation(dataclasses.replace(GOOD, app=10.5)) is None  # the same instant is not before
    assert violations([GOOD], ["ns/app"]) == []


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"app": 9.9}, "before its capture"),  # the app first: it could have sent plaintext
        ({"app": 10.4}, "before the ztunnel's ACK"),  # captured, but no ztunnel took the pod yet
        ({"capture": None}, "no capture installed"),
        ({"ack": None}, "no ACK"),
        ({"ack": 9.5}, "before the capture"),
    ],
)
def test_a_start_that_breaks_the_rule_is_named(change: dict[str, object], says: str) -> None:
    broken = dataclasses.replace(GOOD, **change)  # type: ignore[arg-type]
    why = violation(broken)
    assert why is not None and says in why and "ns/app" in why
    assert violations([broken]) == [why]


def test_a_pod_outside_the_mesh_has_no_rule_unless_it_must_be_enrolled() -> None:
    plain = dataclasses.replace(GOOD, enrolled=False, capture=None, ack=None, app=1.0)
    assert violation(plain) is None
    assert violations([plain]) == []
    assert violations([plain], ["ns/app"]) == ["ns/app: started outside the mesh (not enrolled)"]
    assert violations([], ["ns/app"]) == ["ns/app: no start recorded"]


def test_records_round_trip_through_their_lines_and_a_torn_line_is_skipped() -> None:
    other = dataclasses.replace(GOOD, name="b", uid="u2", boot=None, rank=None, capture=None, ack=None)
    text = line(GOOD) + line(other) + '{"node": "node2", "name"'
    assert parse(text) == [GOOD, other]


def test_the_starts_of_one_boot_in_the_order_the_apps_started() -> None:
    first = dataclasses.replace(GOOD, name="late", app=12.0, rank=0)
    second = dataclasses.replace(GOOD, name="early", app=11.0, rank=1)
    later_boot = dataclasses.replace(GOOD, name="next", boot=20.0, app=21.0)
    outside = dataclasses.replace(GOOD, name="plain", boot=None)
    records = [first, second, later_boot, outside]
    assert last_boot(records) == 20.0
    assert of_boot(records, 9.0) == [second, first]
    assert last_boot([outside]) is None


def test_the_handle_reads_one_boots_starts_back_the_latest_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AMBIT_RUN_DIR", str(tmp_path))
    handle = ClusterHandle("c1")
    assert handle.pod_start_order("node2") == []  # never started a pod: no file
    at_up = dataclasses.replace(GOOD, name="up", boot=None, rank=None, app=1.0)
    first = dataclasses.replace(GOOD, name="a", boot=9.0, app=11.0)
    second = dataclasses.replace(GOOD, name="a", boot=20.0, app=22.0)
    path = records_path(handle.layout, "node2")
    path.parent.mkdir(parents=True)
    path.write_text(line(at_up) + line(first) + line(second))
    assert handle.pod_start_order("node2") == [second]
    assert handle.pod_start_order("node2", 9.0) == [first]
    assert handle.pod_start_order("node1") == []
