"""`ambit.chaos.report_suite`: the suite's summary lines and its summary.json and summary.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaos_runs import quiet, ztunnel_kill

from ambit.chaos import report_suite


def test_summary_lines_one_per_experiment() -> None:
    lines = report_suite.summary_lines(
        {
            "ztunnel-kill": [ztunnel_kill(), ztunnel_kill(index=2, unexpected=True)],
            "node-partition": [quiet(ztunnel_kill())],
        }
    )
    assert lines == [
        "FAIL ztunnel-kill   1/2  failed 161/5760  pairs 6/9 (≤5)  up 10.0 s",
        "PASS node-partition 1/1  failed 0/2880  pairs 0/9 (≤5)  up —",
    ]


def test_the_suite_summary_links_each_experiment(tmp_path: Path) -> None:
    path = report_suite.write_suite_summary({"ztunnel-kill": [ztunnel_kill()], "ca-down": []}, tmp_path)
    assert path == tmp_path / "summary.md"
    md = path.read_text(encoding="utf-8")
    assert "[ztunnel-kill](ztunnel-kill/report.md)" in md
    assert "**Verdict: FAIL** — 1 of 2 experiments passed." in md  # an experiment without runs proves nothing
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["passed"] is False
    assert [e["directory"] for e in data["experiments"]] == ["ztunnel-kill", "ca-down"]
    assert data["experiments"][0]["recovery_seconds"] == pytest.approx(3.004)
