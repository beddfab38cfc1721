"""`ambit.chaos.report`: a report directory (report.json read back, report.md, the images), a report is
of one experiment, and no report module imports matplotlib until an image is drawn."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from chaos_runs import ztunnel_kill

from ambit.chaos import report, report_json, report_md


def test_write_report_writes_json_markdown_and_images(tmp_path: Path) -> None:
    runs = [ztunnel_kill(), ztunnel_kill(index=2)]
    files = report.write_report(runs, tmp_path)
    names = [f.name for f in files]
    assert names[:2] == ["report.json", "report.md"]
    assert set(names[2:]) == {
        "heatmap-run1.svg",
        "timeline-run1.svg",
        "heatmap-run2.svg",
        "timeline-run2.svg",
    }
    assert all(f.exists() for f in files)

    data = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert data["experiment"] == "ztunnel-kill" and data["passed"] is True
    assert [r["context"]["seed"] for r in data["runs"]] == [7, 7]
    assert data["runs"][0]["load"] == {
        "rate": 2.0,
        "timeout": 3.0,
        "duration": 30.0,
        "keepalive_max_age": 20.0,
    }
    assert report_json.read_report(tmp_path / "report.json") == runs

    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**Verdict: PASS**" in md
    assert "![heatmap-run1](heatmap-run1.svg)" in md and "![timeline-run2](timeline-run2.svg)" in md


def test_a_report_is_of_one_experiment() -> None:
    other = ztunnel_kill()
    with pytest.raises(ValueError, match="one experiment"):
        report_md.markdown([other, replace(other, experiment="node-partition")])
    with pytest.raises(ValueError, match="one experiment"):
        report_json.report_json([])


def test_neither_the_report_nor_the_cli_imports_matplotlib_until_an_image_is_drawn(tmp_path: Path) -> None:
    probe = (
        "import json, sys; import ambit.cli, ambit.chaos.report, ambit.chaos.report_common, "
        "ambit.chaos.report_json, ambit.chaos.report_md, ambit.chaos.report_terminal, "
        "ambit.chaos.report_suite, ambit.chaos.images; "
        "before = 'matplotlib' in sys.modules; "
        "sys.path.insert(0, sys.argv[1]); from chaos_runs import ztunnel_kill; from pathlib import Path; "
        "ambit.chaos.images.heatmap(ztunnel_kill(), Path(sys.argv[2])); "
        "print(json.dumps([before, 'matplotlib' in sys.modules]))"
    )
    here = str(Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", probe, here, str(tmp_path / "h.svg")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == [False, True]
