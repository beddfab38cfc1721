"""``ambit chaos run EXPERIMENT`` / ``ambit chaos suite`` / ``ambit chaos list``: fault experiments.

Each run deploys the probe workload (namespace ``ambit-chaos``), sends traffic across every ordered node
pair, injects the fault, and judges every request against a prediction computed from the cluster's own
state: PASS only if every failure lies inside the prediction (pair and time window) and nothing outside
failed. Reports (``report.md``, ``report.json``, images) go to ``--report DIR``. Exit status 1 on FAIL.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ambit.cli import GlobalOptions
from ambit.cli.nodes import NODE

if TYPE_CHECKING:
    from ambit.chaos.engine import RunOptions
    from ambit.runtime.handle import ClusterHandle

EXPERIMENT_NAMES = (  # chaos.catalog's, listed here so that `--help` imports no runtime
    "ztunnel-kill",
    "ztunnel-restart",
    "node-partition",
    "node-reboot",
    "controlplane-down",
    "ca-down",
    "waypoint-replica-kill",
    "waypoint-down",
    "node-drain",
    "app-rollout",
)


def _handle(ctx: click.Context) -> ClusterHandle:
    from ambit.runtime.handle import ClusterHandle

    options = ctx.find_object(GlobalOptions)
    handle = ClusterHandle(options.cluster if options is not None else "ambit")
    if not handle.daemon_alive():
        raise click.ClickException(f"cluster {handle.name} is not running (ambit up)")
    return handle


def _load_options(function: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(
        [
            click.option(
                "--rate",
                type=click.FloatRange(0.5, 200),
                default=None,
                help="Requests per second per flow and connection kind [default: 10; 5 with --short].",
            ),
            click.option(
                "--timeout",
                type=click.FloatRange(0.5, 30),
                default=3.0,
                show_default=True,
                help="Per-request timeout (seconds); the probe never retries.",
            ),
            click.option(
                "--runs",
                type=click.IntRange(1, 100),
                default=1,
                show_default=True,
                help="Repeat; PASS needs every run to pass.",
            ),
            click.option(
                "--seed",
                type=int,
                default=0,
                show_default=True,
                help="Chooses the target node when none is given (run i uses seed+i-1).",
            ),
            click.option(
                "--report",
                "report",
                type=click.Path(file_okay=False, path_type=Path),
                default=Path("ambit-chaos-report"),
                show_default=True,
                help="Directory for report.md, report.json, the images and the probe records.",
            ),
        ]
    ):
        function = option(function)
    return function


@click.group("chaos")
def chaos() -> None:
    """Fault experiments: which node pairs failed, beside a computed prediction."""


@chaos.command("list")
def list_() -> None:
    """The experiments, one a line."""
    from ambit.chaos.catalog import EXPERIMENTS

    for name in EXPERIMENTS:
        click.echo(name)


@chaos.command("run")
@click.argument("experiment", type=click.Choice(EXPERIMENT_NAMES))
@click.option(
    "--target", type=NODE, default=None, help="The node the fault is on (default: drawn by --seed)."
)
@click.option(
    "--duration",
    type=click.FloatRange(1, 3600),
    default=None,
    help="How long a held fault lasts (partition, outages), seconds.",
)
@click.option("--restarts", type=click.IntRange(1, 100), default=None, help="ztunnel-restart: how many.")
@_load_options
@click.pass_context
def run(
    ctx: click.Context,
    experiment: str,
    target: str | None,
    duration: float | None,
    restarts: int | None,
    rate: float | None,
    timeout: float,
    runs: int,
    seed: int,
    report: Path,
) -> None:
    """Run one EXPERIMENT on the running cluster and print its verdict."""
    from dataclasses import replace

    from ambit.chaos.engine import RunOptions
    from ambit.chaos.suite import options_for

    handle = _handle(ctx)
    options = options_for(experiment, "full", RunOptions(experiment, target, timeout=timeout, seed=seed))
    if rate is not None:
        options = replace(options, rate=rate)
    if duration is not None:
        options = replace(options, duration=duration)
    if restarts is not None:
        options = replace(options, restarts=restarts)
    _finish({experiment: _run(handle, options, runs, report)}, report, single=True)


@chaos.command("suite")
@click.option("--short", is_flag=True, help="Shortened faults (the reduced suite `make test` runs).")
@click.option("--only", "only", multiple=True, type=click.Choice(EXPERIMENT_NAMES), help="Only these.")
@_load_options
@click.pass_context
def suite(
    ctx: click.Context,
    short: bool,
    only: tuple[str, ...],
    rate: float | None,
    timeout: float,
    runs: int,
    seed: int,
    report: Path,
) -> None:
    """Run every experiment and write one summary; one that cannot run is reported and the rest go on."""
    from ambit.chaos.engine import RunOptions
    from ambit.chaos.suite import SUITE, options_for

    handle = _handle(ctx)
    from dataclasses import replace

    base = RunOptions("", None, timeout=timeout, seed=seed)
    results = {}
    errors: list[str] = []
    for experiment in only or tuple(SUITE):
        options = options_for(experiment, "short" if short else "full", base)
        if rate is not None:  # the user's rate wins over the profile's
            options = replace(options, rate=rate)
        try:
            results[experiment] = _run(handle, options, runs, report)
        except click.ClickException as exc:  # the experiment could not run: the others still do
            click.echo(f"Error: {exc.message}", err=True)
            results[experiment] = []
            errors.append(exc.message)
    _finish(results, report, single=False)
    if errors:
        raise SystemExit(1)


def _run(handle: ClusterHandle, options: RunOptions, runs: int, report: Path) -> list:  # type: ignore[type-arg]
    from rich.console import Console

    from ambit.chaos.engine import ChaosError
    from ambit.chaos.experiments import ExperimentError
    from ambit.chaos.report_terminal import render_terminal
    from ambit.chaos.suite import run_many
    from ambit.runtime.control import ControlError
    from ambit.runtime.handle import HandleError

    console = Console()
    click.echo(f"chaos: {options.experiment}, {runs} run(s), report in {report / options.experiment}")
    try:
        return run_many(
            handle, options, runs, report, on_run=lambda r: render_terminal([r], console, of=runs)
        )
    except (ChaosError, ExperimentError, ControlError, HandleError) as exc:
        raise click.ClickException(f"{options.experiment}: {exc}") from exc


def _finish(results: dict, report: Path, *, single: bool) -> None:  # type: ignore[type-arg]
    from ambit.chaos.report_suite import summary_lines, write_suite_summary

    if not single:
        path = write_suite_summary(results, report)
        click.echo(f"summary: {path}")
    for line in summary_lines(results):
        click.echo(line)
    if not all(runs and all(run.verdict.passed for run in runs) for runs in results.values()):
        raise SystemExit(1)  # a FAIL, or an experiment that could not run (no runs)
