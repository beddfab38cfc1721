"""`ambit.chaos.report_terminal`: the terminal rendering fits the console; abbreviations."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from chaos_runs import NODES, ztunnel_kill
from rich.console import Console

from ambit.chaos import report_terminal
from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import Destination, WaypointPlacement


def _terminal(runs: list[ChaosRun], width: int = 80) -> str:
    console = Console(width=width, record=True, file=io.StringIO())
    report_terminal.render_terminal(runs, console)
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
    assert report_terminal.abbreviations(names) == {
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
    short = report_terminal.abbreviations(names)
    assert short["sp"] == "sp" and short["n1"] == "n1" and short["x"] == "x"
    assert short["spread"] not in names and short["node1"] not in names
    assert len(set(short.values())) == len(names)
