"""`ambit.chaos.report_md`: report.md shows the verdict, the matrices and the evidence."""

from __future__ import annotations

from dataclasses import replace

from chaos_runs import ztunnel_kill

from ambit.chaos import report_md
from ambit.reliability.flows import FlowKey


def test_report_md_shows_the_verdict_the_matrices_and_the_evidence() -> None:
    md = report_md.markdown([ztunnel_kill(unexpected=True)])
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
    run = replace(run, verdict=replace(run.verdict, unobserved=unobserved))
    md = report_md.markdown([run])
    assert "node1→echo-node2 (keepalive), node3→spread (new)" in md
    assert "10.00–∞ (ztunnel on node2 down) | node2→spread (new)" in md
