"""`ambit demo`: bookinfo on a 3-node ambient cluster, with proof that nothing crossed nodes in plaintext."""

from __future__ import annotations

import click
from rich.console import Console

from ambit.cli import GlobalOptions
from ambit.runtime.demo import Demo, DemoError, samples_dir


@click.command("demo")
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Build a 3-node cluster, run Istio's bookinfo in ambient mode, and show what the mesh did (root)."""
    options = ctx.find_object(GlobalOptions)
    cluster = options.cluster if options is not None else "ambit"
    samples = samples_dir()
    if not (samples / "bookinfo.yaml").exists():
        raise click.ClickException(f"Istio's samples are not at {samples}")
    try:
        Demo(cluster, samples, Console()).run()
    except DemoError as exc:
        raise click.ClickException(
            f"{exc}\n(the cluster is left up to look at; stop it with: ambit --cluster {cluster} down)"
        ) from exc
