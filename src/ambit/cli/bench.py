"""``ambit bench``: run ambit's benchmarks and report them (the measuring lives in ``ambit.bench``).

``ambit bench hbone`` measures one HBONE hop side by side with a plain TCP and a plain TLS relay
in one run, prints absolute numbers and ratios, and with ``--out`` writes its section of a
markdown file (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path

import click
from rich.console import Console

from ambit.bench.hbone import Budget, run
from ambit.bench.procs import ChildError
from ambit.bench.report import environment, load_average, markdown, rich_tables, update_markdown


@click.group()
def bench() -> None:
    """Measure ambit's data path side by side with plain baselines."""


def _budget(budget: Budget, overrides: dict[str, float | None]) -> Budget:
    seconds, bulk_mib = overrides.get("seconds"), overrides.get("bulk_mib")
    repetitions, concurrency = overrides.get("repetitions"), overrides.get("concurrency")
    if seconds is not None:
        budget = dataclasses.replace(
            budget, rr_seconds=seconds, warmup_seconds=min(budget.warmup_seconds, seconds)
        )
    if bulk_mib is not None:
        budget = dataclasses.replace(budget, bulk_bytes=int(bulk_mib) * 1024 * 1024)
    if repetitions is not None:
        budget = dataclasses.replace(budget, repetitions=int(repetitions))
    if concurrency is not None:
        budget = dataclasses.replace(budget, concurrency=int(concurrency))
    return budget


def _command_line(ctx: click.Context) -> str:
    """The command as typed, rebuilt from the options that were given on the command line."""
    words = ["ambit", "bench", ctx.info_name or "hbone"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name is None:
            continue
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        flag = param.opts[0]
        if param.is_flag:
            words.append(flag)
        else:
            words += [flag, str(value)]
    return shlex.join(words)


@bench.command("hbone")
@click.option(
    "--quick", is_flag=True, help="A small budget (64 MiB bulk, 1 s request/response, 2 repetitions)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results into the '## HBONE hop' section of this markdown file.",
)
@click.option("--seconds", type=click.FloatRange(min=0.05), help="Measured request/response time per run.")
@click.option("--bulk-mib", type=click.IntRange(min=1), help="MiB pushed by the bulk workload.")
@click.option("--repetitions", type=click.IntRange(min=1), help="Runs of every configuration.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Request/response connections.  [default: 8]")
@click.pass_context
def hbone(ctx: click.Context, /, quick: bool, out: Path | None, **overrides: float | None) -> None:
    """One HBONE hop against direct, a plain TCP relay and a plain TLS relay, each box its own process.

    Configurations: direct, tcp-relay, tls-relay, hbone (ambit's default settings) and hbone with
    forced send frame sizes of 16, 64 and 256 KiB. Full run: 512 MiB bulk, 4 s request/response,
    3 repetitions after a warm-up pass (about 3 minutes); --quick takes about 30 s.
    """
    budget = _budget(Budget.quick() if quick else Budget.full(), overrides)
    command = _command_line(ctx)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # no wrapping in logs
    err = Console(stderr=True)
    load_before = load_average()
    try:
        with err.status("starting") as status:
            results = run(budget, progress=status.update)
    except ChildError as exc:
        raise click.ClickException(str(exc)) from exc
    for table in rich_tables(results):
        console.print(table)
    env = environment(load_before)
    console.print(
        f"{env['nproc']} CPUs ({env['cpu']}), {env['kernel']}, {env['python']}, {env['openssl']}, "
        f"h2 {env['h2']}, uvloop {env['uvloop']}; load average before the run {env['load']}"
    )
    console.print(f"command: {command}")
    if out is not None:
        update_markdown(out, markdown(results, budget, env, command))
        console.print(f"wrote the HBONE hop section of {out}")
