"""The terminal rendering of chaos runs (`render_terminal`), within the console's width: each run's
verdict, the observed failure matrix beside the predicted one, laid out to fit (full names, else
abbreviated ones with a legend, else tighter, else failure counts only, else one under the other), the
node pairs touched and the recovery.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ambit.chaos.report_common import (
    Expectation,
    expectations,
    matrix_rows,
    node_count,
    passed,
    seconds,
    verdict_word,
)
from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import PairCell

EXPECTATION_SYMBOL: dict[Expectation, str] = {"must": "●", "may": "○", "never": "·"}
UNBOUNDED = 10_000  # a console width no table reaches, to measure a table's natural width
SIDE_BY_SIDE_GAP = 3  # columns between the observed and the predicted matrix in the terminal


def abbreviations(names: Sequence[str]) -> dict[str, str]:
    """Short, distinct names: ``node1`` -> ``n1``, ``pod-spread`` -> ``ps``, ``spread`` -> ``sp``,
    ``waypointed`` -> ``wp``; a name no longer than its abbreviation stays itself."""
    out: dict[str, str] = {}
    used = set(names)  # no abbreviation may read as another name
    for name in names:
        candidate = next((c for c in _candidates(name) if c not in used and len(c) < len(name)), name)
        out[name] = candidate
        used.add(candidate)
    return out


def _candidates(name: str) -> Iterable[str]:
    numbered = re.fullmatch(r"([A-Za-z]+)[-_]?(\d+)", name)
    if numbered:
        yield numbered[1][0] + numbered[2]
    parts = [p for p in re.split(r"[-_.]", name) if p]
    if len(parts) > 1:
        yield "".join(p[0] for p in parts)
    consonants = [c for c in name[1:] if c.isalnum() and c.lower() not in "aeiouy"]
    if consonants:
        yield name[0] + consonants[0]
    for n in range(2, len(name)):
        yield name[:n]


def _observed_cell_text(cell: PairCell | None, counts_only: bool) -> Text:
    if cell is None or cell.total == 0:
        return Text("–", style="dim")
    text = str(cell.failed) if counts_only else f"{cell.failed}/{cell.total}"
    if cell.failed and not cell.predicted:
        return Text(text, style="bold red")
    if cell.failed:
        return Text(text, style="yellow")
    return Text(text, style="dim" if not cell.predicted else "")


def _matrix_table(title: str, short: Mapping[str, str], columns: Sequence[str], compact: bool) -> Table:
    table = Table(
        title=title,
        box=box.SIMPLE_HEAD,
        padding=(0, 0, 0, 1) if compact else (0, 1),
        pad_edge=False,
        show_edge=False,
        title_justify="left",
    )
    table.add_column("", justify="left", no_wrap=True)
    for c in columns:
        table.add_column(short[c], justify="right", no_wrap=True)
    return table


@dataclass(frozen=True, slots=True)
class _Layout:
    """How the two matrices are shown in the terminal."""

    tables: list[RenderableType]
    abbreviated: dict[str, str]  # name -> abbreviation, for those shown abbreviated
    counts_only: bool  # observed cells show failures only, not failed/total


def _terminal_matrices(run: ChaosRun, console: Console) -> _Layout:
    """The observed and predicted tables, side by side if they fit (with full names, else abbreviated
    ones, else closer together, else counting failures only), else one under the other."""
    v = run.verdict
    sources, columns = matrix_rows(run), v.columns
    expected = expectations(run)
    names = list(dict.fromkeys([*sources, *columns]))
    full = {n: n for n in names}
    short = abbreviations(names)
    stacked: list[tuple[int, _Layout]] = []
    for mapping, compact, counts_only in (
        (full, False, False),
        (short, False, False),
        (short, True, False),
        (short, True, True),
    ):
        observed = _matrix_table("observed", mapping, columns, compact)
        predicted = _matrix_table("predicted", mapping, columns, compact)
        for s in sources:
            observed.add_row(
                mapping[s], *(_observed_cell_text(v.matrix.get((s, c)), counts_only) for c in columns)
            )
            predicted.add_row(mapping[s], *(EXPECTATION_SYMBOL[expected[s, c]] for c in columns))
        unbounded = console.options.update_width(UNBOUNDED)  # Measurement.get clamps to the options' width
        widths = [Measurement.get(console, unbounded, t).maximum for t in (observed, predicted)]
        abbreviated = {name: a for name, a in mapping.items() if a != name}
        if sum(widths) + SIDE_BY_SIDE_GAP <= console.width:
            grid = Table.grid(padding=(0, SIDE_BY_SIDE_GAP))
            grid.add_column(no_wrap=True)
            grid.add_column(no_wrap=True)
            grid.add_row(observed, predicted)
            return _Layout([grid], abbreviated, counts_only)
        stacked.append((max(widths), _Layout([observed, predicted], abbreviated, counts_only)))
    return next((layout for width, layout in stacked if width <= console.width), stacked[-1][1])


def _legend(layout: _Layout) -> Text:
    text = Text(style="dim")
    if layout.abbreviated:
        text.append("  ".join(f"{short}={name}" for name, short in layout.abbreviated.items()))
        text.append("\n")
    text.append("observed: failed (totals in report.md)" if layout.counts_only else "observed: failed/total")
    text.append("  ")
    text.append("red", style="bold red")
    text.append(": not predicted  –: no traffic\npredicted: ● must fail  ○ may fail  · never")
    return text


def _verdict_text(run: ChaosRun, total_runs: int) -> Text:
    v, e = run.verdict, run.events
    text = Text()
    text.append(verdict_word(v.passed), style="bold green" if v.passed else "bold red")
    text.append(f" {run.experiment} run {run.index}/{total_runs} on {e.target}: ")
    text.append(f"{v.failed} of {v.total} requests failed")
    return text


def render_terminal(runs: Sequence[ChaosRun], console: Console, *, of: int | None = None) -> None:
    """A compact rendering of each run: its verdict, the observed failure matrix beside the predicted
    one (names abbreviated, with a legend, when the full ones do not fit the console), the node pairs
    touched and the recovery. No table is wider than the console. ``of``: how many runs there are in
    all (when runs are shown one at a time as they finish)."""
    if not runs:
        console.print(Text("FAIL: no runs", style="bold red"))
        return
    for run in runs:
        v = run.verdict
        console.print(_verdict_text(run, of or len(runs)))
        for reason in v.reasons:
            console.print(Padding(Text(f"- {reason}", style="red"), (0, 0, 0, 2)))
        layout = _terminal_matrices(run, console)
        for t in layout.tables:
            console.print(t)
        console.print(_legend(layout))
        n = node_count(run)
        console.print(
            Text(
                f"node pairs touched {v.pairs_touched}/{n * n} = {v.pairs_touched / (n * n or 1):.2f} "
                f"(bound {v.pair_bound:.2f});  recovery "
                + ("none needed" if v.recovery_seconds is None else f"{seconds(v.recovery_seconds)} s")
            )
        )
        for name, value in run.events.measures:
            console.print(Text(f"{name}: {value:g}"))
        console.print()
    if len(runs) > 1:
        ok = passed(runs)
        line = Text(verdict_word(ok), style="bold green" if ok else "bold red")
        line.append(
            f" {runs[0].experiment}: {sum(r.verdict.passed for r in runs)} of {len(runs)} runs passed"
        )
        console.print(line)
