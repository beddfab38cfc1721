"""`ambit demo`: bookinfo on a 3-node ambient cluster, with proof that nothing crossed nodes in plaintext,
ending with the claim shown: a ztunnel killed under all-pairs load, the failures beside the prediction."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from ambit.chaos.claim import show_claim
from ambit.chaos.engine import ChaosError
from ambit.chaos.experiments import ExperimentError
from ambit.cli import GlobalOptions
from ambit.runtime.demo import Demo, DemoError, problems, samples_dir
from ambit.runtime.handle import ClusterHandle


@click.command("demo")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Build a 3-node cluster, run Istio's bookinfo in ambient mode, and show what the mesh did (root)."""
    options = ctx.find_object(GlobalOptions)
    cluster = options.cluster if options is not None else "ambit"
    samples = samples_dir()
    if not (samples / "bookinfo.yaml").exists():
        raise click.ClickException(f"Istio's samples are not at {samples}")
    console = Console()
    shown = Demo(cluster, samples, console)
    try:
        result = shown.collect()
        found = problems(result)
        if found:
            raise DemoError("\n".join(found))
        claim = show_claim(ClusterHandle(cluster), console, Path("ambit-chaos-report"))
        if not claim.verdict.passed:
            raise DemoError("the chaos verdict is FAIL:\n" + "\n".join(claim.verdict.reasons))
        shown.farewell()
    except (DemoError, ChaosError, ExperimentError) as exc:
        raise click.ClickException(
            f"{exc}\n(the cluster is left up to look at; stop it with: ambit --cluster {cluster} down)"
        ) from exc
