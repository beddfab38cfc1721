"""The `ambit` command: the root group, global options, and registration of the subcommand groups.

Each subcommand group lives in its own module of this package and is added here; this module owns
only what every command shares (``--cluster``, logging, the version).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import click

from ambit import __version__

DEFAULT_CLUSTER = "ambit"


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """What every subcommand may read from the root group."""

    cluster: str


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ambit")
@click.option(
    "--cluster",
    default=lambda: os.environ.get("AMBIT_CLUSTER", DEFAULT_CLUSTER),
    show_default="$AMBIT_CLUSTER or 'ambit'",
    help="Which local cluster the command acts on.",
)
@click.pass_context
def cli(ctx: click.Context, cluster: str) -> None:
    """ambit: an ambient-mode service mesh (ztunnel, HBONE, waypoints, control plane)."""
    ctx.obj = GlobalOptions(cluster=cluster)


def _register() -> None:
    from ambit.cli.apps import app
    from ambit.cli.bench import bench
    from ambit.cli.ca import ca
    from ambit.cli.controlplane import controlplane
    from ambit.cli.demo import demo
    from ambit.cli.runtime import register as register_runtime
    from ambit.cli.store import register as register_store
    from ambit.cli.waypoint import waypoint
    from ambit.cli.ztunnel import ztunnel
    from ambit.cli.ztunnel_config import ztunnel_config

    cli.add_command(ca)
    cli.add_command(app)
    cli.add_command(bench)
    cli.add_command(controlplane)
    cli.add_command(demo)
    register_store(cli)
    register_runtime(cli)
    cli.add_command(waypoint)
    cli.add_command(ztunnel)
    cli.add_command(ztunnel_config)


_register()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="ambit")
