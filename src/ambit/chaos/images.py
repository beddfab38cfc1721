"""The images of a chaos report: the failure matrix as two heatmaps (observed, predicted) and the
failures over time around the fault.

matplotlib is imported inside the functions (about 0.4 s and 30 MB), so importing this module costs
nothing; it draws with the Agg backend, never a display. The format follows the path's suffix (SVG for
the report). Output is deterministic: the same run gives the same bytes (fixed SVG id salt, no date in
the metadata, text kept as text in one bundled font).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ambit.chaos.report_common import column_of, expectations, matrix_rows, relative
from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import CONN_KINDS, Observation

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

    Grid = npt.NDArray[np.float64]
    Row = tuple[str, str]  # (source node, column)

EXPECTATION_LEVEL = {"never": 0, "may": 1, "must": 2}
PREDICTED_COLOURS = ("#f2f2f2", "#fdb863", "#d7301f")  # never, may fail, must fail
NO_TRAFFIC = "#d9d9d9"
UNEXPECTED_EDGE = "#2b5fd9"
RATE_GAMMA = 0.4  # a few failed requests in a cell must show: 1% is already a visible pink
RATE_TICKS = (0.0, 0.01, 0.05, 0.2, 0.5, 1.0)
KIND_OFFSET = {"new": -0.17, "keepalive": 0.17}
KIND_MARKER = {"new": "o", "keepalive": "s"}
OUTCOME_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
RC: dict[RcKeyType, Any] = {
    "svg.hashsalt": "ambit-chaos",
    "svg.fonttype": "none",  # text stays text: searchable, smaller files
    "font.family": "DejaVu Sans",  # shipped with matplotlib: the same metrics on every machine
    "font.size": 9,
    "axes.titlesize": 10,
    "figure.dpi": 100,
}


@contextmanager
def _canvas() -> Iterator[None]:
    import matplotlib

    matplotlib.use("Agg")
    with matplotlib.rc_context(RC):
        yield


def _save(figure: Figure, path: Path, title: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix.lstrip(".").lower() or "svg"
    metadata: dict[str, Any]
    if fmt == "svg":
        metadata = {"Date": None, "Title": title}
    elif fmt == "pdf":
        metadata = {"CreationDate": None, "Title": title}
    elif fmt == "png":
        metadata = {"Title": title}
    else:
        metadata = {}
    figure.savefig(path, format=fmt, metadata=metadata or None, bbox_inches="tight")


def _verdict(run: ChaosRun) -> str:
    return "PASS" if run.verdict.passed else "FAIL"


def _title(run: ChaosRun, what: str) -> str:
    return f"{run.experiment} on {run.events.target}, run {run.index}: {_verdict(run)} — {what}"


def heatmap(run: ChaosRun, path: Path) -> None:
    """The observed failure rate per (source node, column) beside the predicted one, cells annotated."""
    from matplotlib.figure import Figure

    sources = matrix_rows(run)
    columns = run.verdict.columns
    title = _title(run, "failure matrix")
    with _canvas():
        width = max(8.0, 2 * (len(columns) + 1.6))
        fig = Figure(figsize=(width, 2.4 + 0.55 * len(sources)), layout="constrained")
        observed_ax, predicted_ax = fig.subplots(1, 2, sharey=True)
        fig.suptitle(title, fontweight="bold")
        _observed(fig, observed_ax, run, sources)
        _predicted(fig, predicted_ax, run, sources)
        for ax in (observed_ax, predicted_ax):
            _cells(ax, sources, columns)
        observed_ax.set_ylabel("from node")
        _save(fig, path, title)


def _observed(fig: Figure, ax: Axes, run: ChaosRun, sources: Sequence[str]) -> None:
    import numpy as np
    from matplotlib.colors import ListedColormap, PowerNorm
    from matplotlib.patches import Rectangle

    v = run.verdict
    rate: Grid = np.full((len(sources), len(v.columns)), np.nan)
    for i, s in enumerate(sources):
        for j, c in enumerate(v.columns):
            cell = v.matrix.get((s, c))
            if cell is not None and cell.total:
                rate[i, j] = cell.failed / cell.total
    reds = ListedColormap(_reds(256), name="failure-rate").with_extremes(bad=NO_TRAFFIC)
    norm = PowerNorm(RATE_GAMMA, vmin=0.0, vmax=1.0)
    image = ax.imshow(np.ma.masked_invalid(rate), cmap=reds, norm=norm, aspect="auto")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, ticks=RATE_TICKS)
    bar.ax.set_yticklabels([f"{t:.0%}" for t in RATE_TICKS])
    bar.set_label("failed / total")
    for i, s in enumerate(sources):
        for j, c in enumerate(v.columns):
            cell = v.matrix.get((s, c))
            label = "no traffic" if cell is None or not cell.total else f"{cell.failed}/{cell.total}"
            dark = not math.isnan(rate[i, j]) and rate[i, j] > 0.3
            ax.text(j, i, label, ha="center", va="center", color="white" if dark else "black")
            if cell is not None and cell.failed and not cell.predicted:
                frame = Rectangle(
                    (j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=UNEXPECTED_EDGE, linewidth=2.5
                )
                ax.add_patch(frame)
    ax.set_title("observed failure rate (blue frame: not predicted)")


def _predicted(fig: Figure, ax: Axes, run: ChaosRun, sources: Sequence[str]) -> None:
    import numpy as np
    from matplotlib.colors import BoundaryNorm, ListedColormap

    columns = run.verdict.columns
    expected = expectations(run)
    level: Grid = np.zeros((len(sources), len(columns)))
    for i, s in enumerate(sources):
        for j, c in enumerate(columns):
            level[i, j] = EXPECTATION_LEVEL[expected.get((s, c), "never")]
    cmap = ListedColormap(list(PREDICTED_COLOURS), name="prediction")
    image = ax.imshow(level, cmap=cmap, norm=BoundaryNorm([-0.5, 0.5, 1.5, 2.5], cmap.N), aspect="auto")
    names = ("never", "may fail", "must fail")
    for i in range(len(sources)):
        for j in range(len(columns)):
            ax.text(j, i, names[int(level[i, j])], ha="center", va="center")
    legend = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02, ticks=[0, 1, 2])
    legend.ax.set_yticklabels(list(names))
    ax.set_title("predicted")


def _cells(ax: Axes, sources: Sequence[str], columns: Sequence[str]) -> None:
    """Labels on both axes and a white line between cells."""
    ax.set_xticks(range(len(columns)), labels=list(columns))
    ax.set_yticks(range(len(sources)), labels=list(sources))
    ax.set_xlabel("to (node, or destination spread over nodes)")
    ax.set_xticks([x - 0.5 for x in range(1, len(columns))], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, len(sources))], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="both", length=0)


def _reds(n: int) -> list[tuple[float, float, float]]:
    """White to dark red, so a cell with no failure reads as blank."""
    (r0, g0, b0), (r1, g1, b1) = (1.0, 1.0, 1.0), (0.6, 0.0, 0.05)
    return [
        (r0 + (r1 - r0) * k / (n - 1), g0 + (g1 - g0) * k / (n - 1), b0 + (b1 - b0) * k / (n - 1))
        for k in range(n)
    ]


def _rows(run: ChaosRun) -> list[Row]:
    """(source node, column) pairs that had traffic, in the matrix's order."""
    order = {c: i for i, c in enumerate(run.verdict.columns)}
    sources = {s: i for i, s in enumerate(run.topology.sources)}
    seen = {(o.source, column_of(run.topology, o.destination)) for o in run.observations}
    return sorted(
        seen, key=lambda r: (sources.get(r[0], len(sources)), r[0], order.get(r[1], len(order)), r[1])
    )


def _allowed(run: ChaosRun, rows: Sequence[Row]) -> dict[Row, list[tuple[float, float, bool]]]:
    """Per row, the prediction's windows of its flows (relative start, end, must fail)."""
    out: dict[Row, list[tuple[float, float, bool]]] = {row: [] for row in rows}
    for key, windows in sorted(run.prediction.windows.items()):
        row = (key.source, column_of(run.topology, key.destination))
        if row in out:
            out[row] += [(relative(run, w.start), relative(run, w.end), w.must_fail) for w in windows]
    return out


def _merged(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping intervals as one (so overlapping windows of a row draw one band, not a darker one)."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _span(run: ChaosRun) -> tuple[float, float]:
    times = [relative(run, t) for o in run.observations for t in (o.start, o.end)]
    e = run.events
    times += [relative(run, t) for t in (e.start, e.end, *(t for _, t in e.marks))]
    finite = [t for t in times if math.isfinite(t)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    low, high = min(0.0, low), max(high, low + 1.0)
    return low, high + 0.02 * (high - low)


def _event_names(ax: Axes, run: ChaosRun) -> None:
    """The name of each vertical line, at the top of the axes."""
    e = run.events
    named = [("fault", e.start), ("end", e.end), *e.marks]
    if len(e.episodes) > 1:
        named += [(f"#{k}", a) for k, (a, _) in enumerate(e.episodes, 1)]
    at: dict[float, list[str]] = {}
    for name, t in named:
        at.setdefault(round(relative(run, t), 3), []).append(name)
    for t, names in sorted(at.items()):
        ax.annotate(
            ", ".join(names),
            xy=(t, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(2, 2),
            textcoords="offset points",
            rotation=45,
            fontsize=7,
            color="#444444",
        )


def _events(ax: Axes, run: ChaosRun, labels: bool) -> None:
    e = run.events
    ax.axvline(
        relative(run, e.start), color="#d62728", linewidth=1.4, label="fault start" if labels else None
    )
    ax.axvline(relative(run, e.end), color="#2ca02c", linewidth=1.4, label="fault end" if labels else None)
    if len(e.episodes) > 1:
        for k, (a, b) in enumerate(e.episodes):
            for t in (a, b):
                ax.axvline(
                    relative(run, t),
                    color="#555555",
                    linestyle="--",
                    linewidth=0.8,
                    label="episode" if labels and k == 0 and t == a else None,
                )
    for k, (_, t) in enumerate(e.marks):
        ax.axvline(
            relative(run, t),
            color="#6a3d9a",
            linestyle=":",
            linewidth=1.0,
            label="mark" if labels and k == 0 else None,
        )


def timeline(run: ChaosRun, path: Path) -> None:
    """Failed requests over time, one row per (source node → column) with traffic, against the windows
    the prediction allowed; below, failures per second."""
    from matplotlib.figure import Figure

    rows = _rows(run)
    span = _span(run)
    title = _title(run, "failures over time")
    with _canvas():
        fig = Figure(figsize=(11.0, 3.2 + 0.32 * max(len(rows), 3)), layout="constrained")
        flows_ax, rate_ax = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [0.32 * max(len(rows), 3), 1.3]}
        )
        fig.suptitle(title, fontweight="bold")
        _bands(flows_ax, run, rows, span)
        outcomes = _failures(flows_ax, run, rows)
        _events(flows_ax, run, labels=True)
        _event_names(flows_ax, run)
        flows_ax.set_yticks(range(len(rows)), labels=[f"{s} → {c}" for s, c in rows])
        flows_ax.set_ylim(len(rows) - 0.5, -0.5)
        flows_ax.set_ylabel("flow (from node → to)")
        flows_ax.grid(axis="x", color="#eeeeee")
        _legend(flows_ax, outcomes)
        _per_second(rate_ax, run, span)
        _save(fig, path, title)


def _bands(ax: Axes, run: ChaosRun, rows: Sequence[Row], span: tuple[float, float]) -> None:
    """Per row, a faint band where the prediction lets a flow of it fail (darker where it must)."""
    low, high = span
    index = {row: i for i, row in enumerate(rows)}
    for row, windows in _allowed(run, rows).items():
        for must in (False, True):
            spans = _merged([(max(a, low), min(b, high)) for a, b, m in windows if m == must and b > a])
            if spans:
                ax.broken_barh(
                    [(a, b - a) for a, b in spans],
                    (index[row] - 0.42, 0.84),
                    facecolors=PREDICTED_COLOURS[2 if must else 1],
                    alpha=0.3,
                )


def _failures(ax: Axes, run: ChaosRun, rows: Sequence[Row]) -> list[str]:
    """A dot per failed request at its start (colour: outcome; shape: connection kind; new connections
    just above the row's middle, kept-alive ones just below), a ring around those no window covers;
    return the outcomes drawn, in the order of their colours."""
    index = {row: i for i, row in enumerate(rows)}

    def point(o: Observation) -> tuple[float, float] | None:
        row = (o.source, column_of(run.topology, o.destination))
        return None if row not in index else (relative(run, o.start), index[row] + KIND_OFFSET[o.kind])

    failures = [o for o in run.observations if not o.ok]
    outcomes = sorted({o.outcome for o in failures})
    groups: list[tuple[Sequence[Observation], dict[str, Any]]] = [
        (
            [o for o in failures if o.outcome == outcome and o.kind == kind],
            {
                "s": 14,
                "color": _outcome_colour(outcomes, outcome),
                "marker": KIND_MARKER[kind],
                "linewidths": 0,
            },
        )
        for outcome in outcomes
        for kind in CONN_KINDS
    ]
    ring = {"s": 70, "facecolors": "none", "linewidths": 1.2, "zorder": 4}
    groups.append(
        (run.verdict.unexpected, {**ring, "marker": "o", "edgecolors": "#000000", "label": "not predicted"})
    )
    groups.append(
        (
            run.verdict.bypassed,
            {**ring, "marker": "D", "edgecolors": UNEXPECTED_EDGE, "label": "ok, must fail"},
        )
    )
    for observations, style in groups:
        points = [p for p in map(point, observations) if p is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.scatter(xs, ys, zorder=style.pop("zorder", 3), **style)
    if not failures:
        ax.text(0.5, 0.5, "no request failed", transform=ax.transAxes, ha="center", color="#555555")
    return outcomes


def _outcome_colour(outcomes: Sequence[str], outcome: str) -> str:
    return OUTCOME_COLOURS[outcomes.index(outcome) % len(OUTCOME_COLOURS)]


def _legend(ax: Axes, outcomes: Sequence[str]) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Any] = [Patch(color=_outcome_colour(outcomes, name), label=name) for name in outcomes]
    handles += [
        Line2D([], [], linestyle="", marker=KIND_MARKER["new"], color="#444444", label="new connection"),
        Line2D([], [], linestyle="", marker=KIND_MARKER["keepalive"], color="#444444", label="kept-alive"),
        Patch(color=PREDICTED_COLOURS[1], alpha=0.3, label="predicted: may fail"),
        Patch(color=PREDICTED_COLOURS[2], alpha=0.3, label="predicted: must fail"),
    ]
    drawn, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + drawn, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def _per_second(ax: Axes, run: ChaosRun, span: tuple[float, float]) -> None:
    import numpy as np

    low, high = span
    edges = np.arange(math.floor(low), math.ceil(high) + 1.0, 1.0)
    counts, _ = np.histogram([relative(run, o.start) for o in run.observations if not o.ok], bins=edges)
    ax.bar(edges[:-1], counts, width=1.0, align="edge", color="#d62728", alpha=0.8)
    _events(ax, run, labels=False)
    ax.set_ylabel("failed / s")
    ax.set_xlabel("seconds since the load began")
    ax.set_xlim(low, high)
    ax.grid(axis="y", color="#eeeeee")
    recovery = run.verdict.recovery_seconds
    note = f"{run.verdict.failed} of {run.verdict.total} failed" + (
        "" if recovery is None else f"; recovered {recovery:.2f} s after the fault began"
    )
    ax.set_title(note, fontsize=8, loc="right")
