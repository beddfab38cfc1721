"""`ambit.chaos.report`: report.json read back, report.md, the terminal rendering and the suite summary."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from chaos_runs import NODES, ztunnel_kill
from rich.console import Console

from ambit.chaos import report
from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import Destination, FlowKey, WaypointPlacement


def _no_constants(name: str) -> float:
    raise AssertionError(f"report.json holds {name}, which is not JSON")


def _through_json(data: object) -> object:
    return json.loads(json.dumps(data, allow_nan=False), parse_constant=_no_constants)


def test_a_run_reads_back_equal_to_itself_through_json() -> None:
    run = ztunnel_kill(unexpected=True, inf_window=True)
    data = report.run_to_json(run)
    back = report.run_from_json(_through_json(data))  # type: ignore[arg-type]
    assert back == run
    assert back.prediction.windows[FlowKey("node2", "spread", "new")][0].end == math.inf


def test_json_writes_infinity_as_a_string_and_tuple_keys_as_objects() -> None:
    data = report.run_to_json(ztunnel_kill(inf_window=True))
    flows = {(f["source"], f["destination"], f["kind"]): f["windows"] for f in data["prediction"]["windows"]}
    assert flows["node2", "spread", "new"][0]["end"] == "inf"
    assert {"source": "node1", "column": "node2", "total": 240, "failed": 10, "predicted": True} in data[
        "verdict"
    ]["matrix"]
    assert all(set(c) == {"source", "served", "answered"} for c in data["verdict"]["crossed"])
    assert data["observations"]["fields"] == list(report.OBSERVATION_FIELDS)
    assert len(data["observations"]["rows"]) == 2880


def test_a_run_without_failures_keeps_recovery_none() -> None:
    from chaos_runs import quiet

    run = quiet(ztunnel_kill())
    assert run.verdict.recovery_seconds is None
    assert report.run_from_json(_through_json(report.run_to_json(run))) == run  # type: ignore[arg-type]


def test_a_waypoint_and_the_context_survive_the_round_trip() -> None:
    run = report.run_from_json(_through_json(report.run_to_json(ztunnel_kill())))  # type: ignore[arg-type]
    assert run.topology.destination("waypointed").waypoint == WaypointPlacement("wp", ("node2",))
    assert run.context["seed"] == 7 and run.placement["load-node2"] == "node2"


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
    assert report.read_report(tmp_path / "report.json") == runs

    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "**Verdict: PASS**" in md
    assert "![heatmap-run1](heatmap-run1.svg)" in md and "![timeline-run2](timeline-run2.svg)" in md


def test_report_md_shows_the_verdict_the_matrices_and_the_evidence() -> None:
    md = report.markdown([ztunnel_kill(unexpected=True)])
    assert "**Verdict: FAIL**" in md
    assert "## Run 1: FAIL" in md
    # the observed matrix: rows source nodes, columns the verdict's, cells failed/total, predicted marked
    assert "| source \\ to | node1 | node2 | node3 | spread | waypointed |" in md
    assert "| node2 | 10/240 ◆ | 10/240 ◆ | 10/240 ◆ | 5/120 ◆ | 5/120 ◆ |" in md
    assert "| node1 | 0/240 | 10/240 ◆ | **1/240** | 5/120 ◆ | 5/120 ◆ |" in md  # failures not predicted
    # the predicted matrix beside it
    assert "| node1 | never | may | never | may | may |" in md
    # why it failed, with the request
    assert "- node1 → echo-node3 (new) failed outside every window" in md
    assert "| node1 → echo-node3 (new) | 20.00 | 20.00 | connect_error |" in md
    assert "Time to recovery: 10.00 s" in md
    assert "6/9 = 0.67 (bound (2N−1)/N² = 5/9 = 0.56" in md
    assert "| source \\ answered by | node1 | node2 | node3 |" in md
    assert "| fault injected (start) | 10.00 |" in md and "| ready | 14.00 |" in md
    assert "- ztunnel-kill: flows from or to node2 may fail" in md
    assert "| seed | 7 |" in md and "| commit | 78dda74 |" in md


def test_report_md_lists_predicted_flows_that_did_not_fail_and_open_windows() -> None:
    run = ztunnel_kill(inf_window=True)
    unobserved = (FlowKey("node1", "echo-node2", "keepalive"), FlowKey("node3", "spread", "new"))
    from dataclasses import replace

    run = replace(run, verdict=replace(run.verdict, unobserved=unobserved))
    md = report.markdown([run])
    assert "node1→echo-node2 (keepalive), node3→spread (new)" in md
    assert "10.00–∞ (ztunnel on node2 down) | node2→spread (new)" in md


def test_a_report_is_of_one_experiment() -> None:
    other = ztunnel_kill()
    from dataclasses import replace

    with pytest.raises(ValueError, match="one experiment"):
        report.markdown([other, replace(other, experiment="node-partition")])
    with pytest.raises(ValueError, match="one experiment"):
        report.report_json([])


def _terminal(runs: list[ChaosRun], width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    report.render_terminal(runs, console)
    return console.export_text()


def _assert_fits(text: str, width: int = 80) -> None:
    assert max(len(line) for line in text.splitlines()) <= width, text
    assert "…" not in text  # nothing truncated


def test_the_terminal_rendering_fits_80_columns_and_names_every_node() -> None:
    text = _terminal([ztunnel_kill(unexpected=True), ztunnel_kill(index=2)])
    _assert_fits(text)
    assert "FAIL ztunnel-kill run 1/2 on node2: 81 of 2880 requests failed" in text
    assert "PASS ztunnel-kill run 2/2" in text
    assert "FAIL ztunnel-kill: 1 of 2 runs passed" in text
    for node in NODES:
        assert node in text
    for name in ("spread", "waypointed"):
        assert name in text
    assert "observed: failed/total" in text and "predicted" in text
    assert "node pairs touched 6/9 = 0.67 (bound 0.56);  recovery 10.00 s" in text


def test_the_matrices_sit_side_by_side_with_abbreviations_and_a_legend() -> None:
    text = _terminal([ztunnel_kill()])
    header = next(line for line in text.splitlines() if "observed" in line)
    assert "predicted" in header  # beside, on one line
    assert "n1=node1" in text and "wp=waypointed" in text and "sp=spread" in text
    assert "● must fail  ○ may fail  · never" in text


@pytest.mark.parametrize("rate", [2.0, 50.0, 5000.0])
def test_three_extra_columns_and_large_counts_still_fit(rate: float) -> None:
    extra = (
        Destination("pod-spread", "pod", ("node1", "node3")),
        Destination("waypointed-2", "service", ("node1", "node3"), WaypointPlacement("wp2", ("node1",))),
    )
    run = ztunnel_kill(extra=extra)
    scale = int(rate)
    from dataclasses import replace

    matrix = {
        k: replace(c, total=c.total * scale, failed=c.failed * scale) for k, c in run.verdict.matrix.items()
    }
    run = replace(run, verdict=replace(run.verdict, matrix=matrix))
    text = _terminal([run])
    _assert_fits(text)
    assert (
        len(run.verdict.columns) == 3 + 4
    )  # spread, waypointed, pod-spread, waypointed-2: one more than needed
    for name in (*NODES, "spread", "waypointed", "pod-spread", "waypointed-2"):
        assert name in text


def test_abbreviations_are_short_and_distinct() -> None:
    names = ["node1", "node2", "node3", "spread", "waypointed", "pod-spread", "node-10"]
    assert report.abbreviations(names) == {
        "node1": "n1",
        "node2": "n2",
        "node3": "n3",
        "spread": "sp",
        "waypointed": "wp",
        "pod-spread": "ps",
        "node-10": "n10",
    }


def test_an_abbreviation_never_reads_as_another_name() -> None:
    names = ["sp", "spread", "n1", "node1", "x"]
    short = report.abbreviations(names)
    assert short["sp"] == "sp" and short["n1"] == "n1" and short["x"] == "x"
    assert short["spread"] not in names and short["node1"] not in names
    assert len(set(short.values())) == len(names)


def test_summary_lines_one_per_experiment() -> None:
    from chaos_runs import quiet

    lines = report.summary_lines(
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
    path = report.write_suite_summary({"ztunnel-kill": [ztunnel_kill()], "ca-down": []}, tmp_path)
    assert path == tmp_path / "summary.md"
    md = path.read_text(encoding="utf-8")
    assert "[ztunnel-kill](ztunnel-kill/report.md)" in md
    assert "**Verdict: FAIL** — 1 of 2 experiments passed." in md  # an experiment without runs proves nothing
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["passed"] is False
    assert [e["directory"] for e in data["experiments"]] == ["ztunnel-kill", "ca-down"]
    assert data["experiments"][0]["recovery_seconds"] == pytest.approx(3.004)


def test_neither_the_report_nor_the_cli_imports_matplotlib_until_an_image_is_drawn(tmp_path: Path) -> None:
    probe = (
        "import json, sys; import ambit.cli, ambit.chaos.report, ambit.chaos.images; "
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
