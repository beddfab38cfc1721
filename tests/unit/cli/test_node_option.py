"""`--node` accepts a node's number or its name, and refuses anything else with a usage error."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from ambit.cli.nodes import NODE


@click.command()
@click.option("--node", type=NODE)
def show(node: str) -> None:
    click.echo(node)


@pytest.mark.parametrize(("given", "expected"), [("2", "node2"), ("node2", "node2"), ("node12", "node12")])
def test_number_and_name_are_the_same_node(given: str, expected: str) -> None:
    result = CliRunner().invoke(show, ["--node", given])
    assert result.exit_code == 0 and result.output.strip() == expected


@pytest.mark.parametrize("given", ["nodeX", "0", "-1", "node", "n2", ""])
def test_anything_else_is_a_usage_error(given: str) -> None:
    result = CliRunner().invoke(show, ["--node", given])
    assert result.exit_code == 2
    assert "is not a node" in result.output
