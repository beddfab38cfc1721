"""One registry of experiments: the CLI's names, the catalog and the suite agree."""

from __future__ import annotations


def test_the_cli_names_every_experiment_of_the_catalog_and_the_suite() -> None:
    from ambit.chaos.catalog import EXPERIMENTS
    from ambit.chaos.suite import SUITE
    from ambit.cli.chaos import EXPERIMENT_NAMES

    assert set(EXPERIMENT_NAMES) == set(EXPERIMENTS) == set(SUITE)
