"""What a chaos report shows, derived from a run's records, shared by every form of the report (JSON,
markdown, the terminal, the images): the failure matrix's rows and columns and what the prediction
expects of each cell, times relative to the run's origin, seconds as text, the verdict as a word.

Pure: no I/O, no formatting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import Topology

Expectation = Literal["must", "may", "never"]


def column_of(topology: Topology, destination: str) -> str:
    """The failure matrix's column of a destination: the node all its endpoints are on, else its name."""
    for d in topology.destinations:
        if d.name == destination:
            return d.home or d.name
    return destination


def expectations(run: ChaosRun) -> dict[tuple[str, str], Expectation]:
    """Per (source node, column): "must" if some flow of the cell has a must-fail window, "may" if the
    prediction lets one fail (its windows, or the verdict's cell), else "never"."""
    out: dict[tuple[str, str], Expectation] = {}
    for key, windows in run.prediction.windows.items():
        if not windows:
            continue
        cell = (key.source, column_of(run.topology, key.destination))
        if any(w.must_fail for w in windows):
            out[cell] = "must"
        else:
            out.setdefault(cell, "may")
    for cell, pair in run.verdict.matrix.items():
        if pair.predicted:
            out.setdefault(cell, "may")
    return {
        (source, column): out.get((source, column), "never")
        for source in matrix_rows(run)
        for column in run.verdict.columns
    }


def matrix_rows(run: ChaosRun) -> tuple[str, ...]:
    """The matrix's rows: the topology's sending nodes, then any other source the matrix has."""
    extra = sorted({s for s, _ in run.verdict.matrix} - set(run.topology.sources))
    return (*run.topology.sources, *extra)


def relative(run: ChaosRun, t: float) -> float:
    """``t`` in seconds since the run's origin."""
    return t - run.origin


def seconds(value: float | None, digits: int = 2) -> str:
    """Seconds as text: ``—`` for none, ``∞``/``-∞`` for an open end, else ``digits`` decimals."""
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def passed(runs: Sequence[ChaosRun]) -> bool:
    """An experiment passes when it ran and every run passed."""
    return bool(runs) and all(r.verdict.passed for r in runs)


def verdict_word(ok: bool) -> str:
    """``PASS`` or ``FAIL``."""
    return "PASS" if ok else "FAIL"


def node_count(run: ChaosRun) -> int:
    """N, the run's nodes (the matrix has N² node pairs)."""
    return len(run.topology.nodes)


def experiment_of(runs: Sequence[ChaosRun]) -> str:
    """The one experiment ``runs`` are of (a report is of one experiment); `ValueError` otherwise."""
    names = {r.experiment for r in runs}
    if len(names) != 1:
        raise ValueError(f"a report is of one experiment's runs, not {sorted(names) or 'none'}")
    return next(iter(names))
