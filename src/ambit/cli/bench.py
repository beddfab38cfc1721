"""``ambit bench``: run ambit's benchmarks and report them (the measuring lives in ``ambit.bench``).

``ambit bench hbone`` measures one HBONE hop side by side with a plain TCP and a plain TLS relay
in one run, prints absolute numbers and ratios, and with ``--out`` writes its section of a
markdown file (BENCHMARKS.md). ``ambit bench controlplane`` measures one control-plane replica
serving a synthetic cluster to many xDS clients (propagation time of one pod change, bytes pushed,
replica memory) and writes its own section the same way. ``ambit bench mesh`` builds a 2-node
cluster and measures no mesh, ambit L4, a stunnel L4 peer, ambit L7 (through a waypoint) and an nginx L7
peer side by side with nginx, wrk and iperf3.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click
from click.decorators import FC
from rich.console import Console
from rich.table import Table

from ambit.bench import controlplane as cp
from ambit.bench import cp_report, mesh, mesh_report
from ambit.bench.cp_objects import Shape
from ambit.bench.cp_results import Plan
from ambit.bench.hbone import Budget, run
from ambit.bench.mesh_cluster import BenchError, tool_versions
from ambit.bench.procs import ChildError
from ambit.bench.report import environment, load_average, markdown, rich_tables, update_markdown

T = TypeVar("T")


@click.group()
def bench() -> None:
    """Measure ambit's data path side by side with plain baselines, and its control plane at scale."""


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


def _quick_option(help_text: str) -> Callable[[FC], FC]:
    """``--quick``: a smaller run, as ``help_text`` says."""
    return click.option("--quick", is_flag=True, help=help_text)


def _out_option(section: str) -> Callable[[FC], FC]:
    """``--out FILE``: write the results into the ``## <section>`` section of a markdown file."""
    return click.option(
        "--out",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Write the results into the '## {section}' section of this markdown file.",
    )


def _measure(
    measure: Callable[[Callable[[str], None]], T], errors: tuple[type[Exception], ...]
) -> tuple[T, dict[str, str]]:
    """``measure(progress)`` under a status line on stderr, and the machine it ran on (with the load
    average before it); ``errors`` become a click error."""
    err = Console(stderr=True)
    load_before = load_average()
    try:
        with err.status("starting") as status:
            result = measure(status.update)
    except errors as exc:
        raise click.ClickException(str(exc)) from exc
    return result, environment(load_before)


@bench.command("hbone")
@_quick_option("A small budget (64 MiB bulk, 1 s request/response, 2 repetitions).")
@_out_option("HBONE hop")
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
    results, env = _measure(lambda progress: run(budget, progress=progress), (ChildError,))
    machine = (
        f"{env['nproc']} CPUs ({env['cpu']}), {env['kernel']}, {env['python']}, {env['openssl']}, "
        f"h2 {env['h2']}, uvloop {env['uvloop']}; load average before the run {env['load']}"
    )
    _show(console, rich_tables(results), machine, command)
    _write_section(
        console, out, "HBONE hop", lambda path: update_markdown(path, markdown(results, budget, env, command))
    )


def _show(console: Console, tables: list[Table], machine: str, command: str) -> None:
    for table in tables:
        console.print(table)
    console.print(machine)
    console.print(f"command: {command}")


def _write_section(console: Console, out: Path | None, section: str, write: Callable[[Path], None]) -> None:
    """With ``--out``: ``write`` the benchmark's section into that file, and say so."""
    if out is not None:
        write(out)
        console.print(f"wrote the {section} section of {out}")


@bench.command("controlplane")
@_quick_option(
    "A small cluster (5 nodes, 5 namespaces, 50 pods, 25 services, 3 clients, 2 changes); about 10 s."
)
@_out_option("Control plane scale")
@click.option("--nodes", type=click.IntRange(min=1), help="Nodes in the synthetic cluster.  [default: 100]")
@click.option("--pods", type=click.IntRange(min=1), help="Pods.  [default: 2000]")
@click.option("--services", type=click.IntRange(min=1), help="Services.  [default: 1000]")
@click.option(
    "--namespaces",
    type=click.IntRange(min=1),
    help="Ambient namespaces the services are spread over.  [default: 10]",
)
@click.option("--clients", type=click.IntRange(min=1), help="xDS client processes.  [default: 100]")
@click.option(
    "--changes", type=click.IntRange(min=1), help="Pod changes measured, one at a time.  [default: 5]"
)
@click.option("--batch", type=click.IntRange(min=1), help="Clients started together.  [default: 10]")
@click.option(
    "--client-nice",
    type=click.IntRange(min=0, max=19),
    help="Nice increment of the client processes (0: same priority as the replica).  [default: 19]",
)
@click.pass_context
def controlplane(ctx: click.Context, /, quick: bool, out: Path | None, **overrides: int | None) -> None:
    """One control-plane replica serving a synthetic cluster to many xDS clients, each its own process.

    Writes the cluster into a store, starts `ambit controlplane`, connects the clients (real
    XdsClients over gRPC + mTLS, each with its own node credential), then changes one pod at a time
    and measures how long until every client has it, the bytes pushed for it, and the replica's
    memory. Full run: 100 nodes, 2,000 pods, 1,000 services in 10 namespaces, 100 clients, 5 changes.
    """
    plan = Plan.quick() if quick else Plan.full()
    services = overrides.get("services") or plan.shape.services
    nice = overrides.get("client_nice")
    try:
        shape = Shape(
            nodes=overrides.get("nodes") or plan.shape.nodes,
            pods=overrides.get("pods") or plan.shape.pods,
            services=services,
            # unless given, never more namespaces than services
            namespaces=overrides.get("namespaces") or min(plan.shape.namespaces, services),
        )
        plan = dataclasses.replace(
            plan,
            shape=shape,
            clients=overrides.get("clients") or plan.clients,
            changes=overrides.get("changes") or plan.changes,
            batch=overrides.get("batch") or plan.batch,
            client_nice=plan.client_nice if nice is None else nice,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    command = _command_line(ctx)
    console = Console() if sys.stdout.isatty() else Console(width=200)  # no wrapping in logs
    result, env = _measure(lambda progress: cp.run(plan, progress=progress), (ChildError,))
    _show(console, cp_report.rich_tables(result), cp_report.machine(env), command)
    _write_section(
        console,
        out,
        "control plane scale",
        lambda path: cp_report.update_markdown(path, cp_report.markdown(result, env, command)),
    )


@bench.command("mesh")
@_quick_option(
    "Short runs (3 s fixed rate, 2 s per other point) and 1,000 idle connections; under 2 minutes."
)
@_out_option("Mesh side by side")
@click.option(
    "--cluster-name",
    default=mesh.DEFAULT_CLUSTER,
    show_default=True,
    help="Name of the temporary cluster the bench builds (and removes).",
)
@click.pass_context
def mesh_command(ctx: click.Context, /, quick: bool, out: Path | None, cluster_name: str) -> None:
    """No mesh, ambit L4, stunnel L4, ambit L7 and nginx L7, side by side on one 2-node cluster (root).

    Client pod on node 1, nginx and iperf3 in the server pod on node 2. Per configuration: open-loop
    1000 req/s of 1 KiB over 4 kept-alive connections (p50-p99.9, proxy CPU and PSS) and wrk's max rate
    at 16 connections; the L4 rows (to the pod's IP) also iperf3 with 1 and 4 streams, new
    connections/s and 10,000 idle tunnelled connections. The L7 rows (to the Service's IP): ambit
    through one waypoint replica on node 2, and stunnel → nginx (TLS in and out) → stunnel, each
    proven on the path by its proxy's request count. Full run: about 5 minutes.
    """
    plan = mesh.Plan.quick_plan() if quick else mesh.Plan.full()
    command = _command_line(ctx)
    console = Console() if sys.stdout.isatty() else Console(width=200)  # no wrapping in logs
    result, env = _measure(
        lambda progress: mesh.run(plan, cluster_name=cluster_name, progress=progress), (BenchError,)
    )
    tools = tool_versions()
    _show(console, mesh_report.rich_tables(result), mesh_report.machine(env, tools), command)
    _write_section(
        console,
        out,
        "mesh side by side",
        lambda path: mesh_report.update_markdown(path, mesh_report.markdown(result, env, tools, command)),
    )
