"""``ambit bench``: run ambit's benchmarks and report them (see ``ambit.bench``)."""

from __future__ import annotations

import click


@click.group()
def bench() -> None:
    """Measure ambit's data path side by side with plain baselines."""
