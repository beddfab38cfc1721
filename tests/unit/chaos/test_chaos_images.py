"""`ambit.chaos.images`: the heatmap and the timeline render to valid, deterministic SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from chaos_runs import quiet, ztunnel_kill

from ambit.chaos import images
from ambit.chaos.run import ChaosRun

SVG = "{http://www.w3.org/2000/svg}"
Draw = Callable[[ChaosRun, Path], None]


def _texts(path: Path) -> list[str]:
    """Every text of the SVG (it must parse as XML)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]


def test_the_heatmap_is_titled_labelled_and_annotated(tmp_path: Path) -> None:
    path = tmp_path / "heatmap.svg"
    images.heatmap(ztunnel_kill(unexpected=True), path)
    texts = _texts(path)
    assert "ztunnel-kill on node2, run 1: FAIL — failure matrix" in texts
    assert {"observed failure rate (blue frame: not predicted)", "predicted"} <= set(texts)
    assert {"node1", "node2", "node3", "spread", "waypointed", "from node"} <= set(texts)
    assert {"10/240", "1/240", "5/120", "0/240", "never", "may fail", "must fail", "failed / total"} <= set(
        texts
    )


def test_the_timeline_has_a_row_per_flow_the_events_and_the_per_second_totals(tmp_path: Path) -> None:
    path = tmp_path / "timeline.svg"
    images.timeline(ztunnel_kill(unexpected=True, inf_window=True), path)
    texts = _texts(path)
    assert "ztunnel-kill on node2, run 1: FAIL — failures over time" in texts
    rows = {t for t in texts if " → " in t and not t.startswith("flow")}
    assert len(rows) == 15  # 3 sources x (3 nodes + spread + waypointed), all with traffic
    assert {"node2 → spread", "node1 → waypointed"} <= rows
    assert {"fault", "end, ready", "healthy"} <= set(texts)  # the lines named, ready at the end
    assert {"connect_error", "reset", "http_503", "not predicted", "predicted: may fail"} <= set(texts)
    assert {"seconds since the load began", "failed / s"} <= set(texts)
    assert "81 of 2880 failed; recovered 10.00 s after the fault began" in texts


def test_a_run_without_failures_still_draws(tmp_path: Path) -> None:
    images.timeline(quiet(ztunnel_kill()), tmp_path / "t.svg")
    images.heatmap(quiet(ztunnel_kill()), tmp_path / "h.svg")
    assert "no request failed" in _texts(tmp_path / "t.svg")
    assert "0/240" in _texts(tmp_path / "h.svg")


@pytest.mark.parametrize("draw", [images.heatmap, images.timeline], ids=["heatmap", "timeline"])
def test_drawing_twice_gives_the_same_bytes(tmp_path: Path, draw: Draw) -> None:
    run = ztunnel_kill(unexpected=True)
    draw(run, tmp_path / "a.svg")
    draw(run, tmp_path / "b.svg")
    first = (tmp_path / "a.svg").read_bytes()
    assert first == (tmp_path / "b.svg").read_bytes()
    assert b"<dc:date>" not in first  # no date in the metadata


def test_another_suffix_gives_another_format(tmp_path: Path) -> None:
    images.heatmap(ztunnel_kill(), tmp_path / "h.png")
    assert (tmp_path / "h.png").read_bytes().startswith(b"\x89PNG")
