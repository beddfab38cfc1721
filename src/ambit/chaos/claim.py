"""The demo's last act: the claim shown. A short `ztunnel-kill` under load across every node pair, the
failure matrix beside the computed prediction, and the verdict (`show_claim`), within 80 columns."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from ambit.chaos.engine import RunOptions, run_experiment
from ambit.chaos.report import write_report
from ambit.chaos.report_terminal import render_terminal
from ambit.chaos.run import ChaosRun
from ambit.chaos.suite import options_for
from ambit.runtime.handle import ClusterHandle

EXPERIMENT = "ztunnel-kill"
TARGET = "node2"


def show_claim(handle: ClusterHandle, console: Console, directory: Path) -> ChaosRun:
    """Run the experiment on ``handle``'s cluster, print it, write its report under ``directory``."""
    options = options_for(EXPERIMENT, "short", RunOptions(EXPERIMENT, TARGET))
    console.print(
        "\n[bold cyan]▶ Is ambient a single point of failure? "
        f"Kill {TARGET}'s ztunnel under load[/]\n"
        "  Every node's load pod sends to every node (a Service each, the pod IPs,\n"
        f"  a Service spread over two nodes): {options.rate:g} req/s per flow, new and\n"
        "  kept-alive connections, no retries. The prediction is computed from the\n"
        "  cluster."
    )
    run = run_experiment(handle, options, directory / EXPERIMENT / "run-1")
    write_report([run], directory / EXPERIMENT)
    render_terminal([run], console)
    verdict = run.verdict
    console.print(
        f"  Only {TARGET}'s row and column failed, for {verdict.recovery_seconds or 0:.1f} s;\n"
        "  every other pair served throughout. The report, with its images:\n"
        f"  {directory / EXPERIMENT}/report.md",
        soft_wrap=True,
    )
    return run
