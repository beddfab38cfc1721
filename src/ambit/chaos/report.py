"""The reports of `ambit chaos`: ``report.json`` (every run, with its evidence, readable back into a
`ChaosRun`), ``report.md`` (for a person, with the images of `ambit.chaos.images`), a compact terminal
rendering, and the summary of a suite.

Only formatting here: every number comes from a run's records (the verdict's matrix, the prediction's
windows, the events). Times are shown in seconds since the run's ``origin`` (the load began).

JSON: a float that is not finite (a window open to infinity) is written as the string ``"inf"``,
``"-inf"`` or ``"nan"`` and read back as that float; a dict keyed by a tuple is written as a list of
objects; observations as a header and one list per request.

This module and `ambit.chaos.images` import matplotlib only when an image is drawn (`write_report`),
never at import: starting ``ambit`` must not pay for it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich import box
from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from ambit.chaos.run import ChaosRun, LoadParameters
from ambit.reliability.flows import (
    CONN_KINDS,
    Destination,
    FaultEvents,
    FlowKey,
    Observation,
    PairCell,
    Prediction,
    Timing,
    Topology,
    Verdict,
    WaypointPlacement,
    Window,
)

FORMAT = "ambit-chaos-report/1"
SUMMARY_FORMAT = "ambit-chaos-summary/1"
OBSERVATION_FIELDS = (
    "source",
    "destination",
    "kind",
    "start",
    "end",
    "ok",
    "outcome",
    "error",
    "served_node",
)
MAX_LISTED = 20  # observations listed one by one in report.md (unexpected failures, bypasses)

Expectation = Literal["must", "may", "never"]
EXPECTATION_SYMBOL: dict[Expectation, str] = {"must": "●", "may": "○", "never": "·"}
UNBOUNDED = 10_000  # a console width no table reaches, to measure a table's natural width
SIDE_BY_SIDE_GAP = 3  # columns between the observed and the predicted matrix in the terminal


# --- what the report shows, derived from the records -----------------------------------------------


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
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.{digits}f}"


def passed(runs: Sequence[ChaosRun]) -> bool:
    """An experiment passes when it ran and every run passed."""
    return bool(runs) and all(r.verdict.passed for r in runs)


def _verdict_word(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _node_count(run: ChaosRun) -> int:
    return len(run.topology.nodes)


def _pairs(run: ChaosRun) -> str:
    """Node pairs touched out of N², beside the node-scoped bound (2N−1)/N² and the predicted count."""
    n = _node_count(run)
    square = n * n
    v = run.verdict
    touched = v.pairs_touched / square if square else 0.0
    bound_pairs = round(v.pair_bound * square)
    return (
        f"{v.pairs_touched}/{square} = {touched:.2f} "
        f"(bound (2N−1)/N² = {bound_pairs}/{square} = {v.pair_bound:.2f}; predicted {v.pairs_predicted})"
    )


def _recovery(run: ChaosRun) -> str:
    r = run.verdict.recovery_seconds
    return "nothing failed" if r is None else f"{seconds(r)} s after the fault began"


def _crossed_columns(run: ChaosRun) -> tuple[str, ...]:
    extra = sorted({served for _, served in run.verdict.crossed} - set(run.topology.nodes))
    return (*run.topology.nodes, *extra)


# --- JSON ---------------------------------------------------------------------------------------------


def _num(value: float) -> float | str:
    """A float as JSON can hold it: non-finite values as strings."""
    return value if math.isfinite(value) else str(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _observation_row(o: Observation) -> list[Any]:
    return [
        o.source,
        o.destination,
        o.kind,
        _num(o.start),
        _num(o.end),
        o.ok,
        o.outcome,
        o.error,
        o.served_node,
    ]


def _observation(row: Sequence[Any]) -> Observation:
    source, destination, kind, start, end, ok, outcome, error, served_node = row
    return Observation(
        source=source,
        destination=destination,
        kind=kind,
        start=_float(start),
        end=_float(end),
        ok=bool(ok),
        outcome=outcome,
        error=error,
        served_node=served_node,
    )


def _observations_json(observations: Iterable[Observation]) -> dict[str, Any]:
    return {"fields": list(OBSERVATION_FIELDS), "rows": [_observation_row(o) for o in observations]}


def _observations(data: Mapping[str, Any]) -> tuple[Observation, ...]:
    fields = tuple(data["fields"])
    if fields != OBSERVATION_FIELDS:
        raise ValueError(f"observation fields {fields} are not {OBSERVATION_FIELDS}")
    return tuple(_observation(row) for row in data["rows"])


def _window_json(w: Window) -> dict[str, Any]:
    return {"start": _num(w.start), "end": _num(w.end), "must_fail": w.must_fail, "reason": w.reason}


def _window(data: Mapping[str, Any]) -> Window:
    return Window(_float(data["start"]), _float(data["end"]), bool(data["must_fail"]), data["reason"])


def _events_json(e: FaultEvents) -> dict[str, Any]:
    return {
        "experiment": e.experiment,
        "target": e.target,
        "target_node": e.target_node,
        "start": _num(e.start),
        "end": _num(e.end),
        "episodes": [[_num(a), _num(b)] for a, b in e.episodes],
        "marks": [[name, _num(t)] for name, t in e.marks],
        "measures": [[name, _num(v)] for name, v in e.measures],
    }


def _events(data: Mapping[str, Any]) -> FaultEvents:
    return FaultEvents(
        experiment=data["experiment"],
        target=data["target"],
        target_node=data["target_node"],
        start=_float(data["start"]),
        end=_float(data["end"]),
        episodes=tuple((_float(a), _float(b)) for a, b in data["episodes"]),
        marks=tuple((name, _float(t)) for name, t in data["marks"]),
        measures=tuple((name, _float(v)) for name, v in data.get("measures", [])),
    )


def _topology_json(t: Topology) -> dict[str, Any]:
    return {
        "nodes": list(t.nodes),
        "sources": list(t.sources),
        "controlplane_nodes": list(t.controlplane_nodes),
        "destinations": [
            {
                "name": d.name,
                "kind": d.kind,
                "endpoint_nodes": list(d.endpoint_nodes),
                "waypoint": None
                if d.waypoint is None
                else {"name": d.waypoint.name, "replica_nodes": list(d.waypoint.replica_nodes)},
            }
            for d in t.destinations
        ],
    }


def _topology(data: Mapping[str, Any]) -> Topology:
    destinations = tuple(
        Destination(
            name=d["name"],
            kind=d["kind"],
            endpoint_nodes=tuple(d["endpoint_nodes"]),
            waypoint=None
            if d["waypoint"] is None
            else WaypointPlacement(d["waypoint"]["name"], tuple(d["waypoint"]["replica_nodes"])),
        )
        for d in data["destinations"]
    )
    return Topology(
        nodes=tuple(data["nodes"]),
        sources=tuple(data["sources"]),
        destinations=destinations,
        controlplane_nodes=tuple(data["controlplane_nodes"]),
    )


def _prediction_json(p: Prediction) -> dict[str, Any]:
    return {
        "rules": list(p.rules),
        "windows": [
            {
                "source": key.source,
                "destination": key.destination,
                "kind": key.kind,
                "windows": [_window_json(w) for w in windows],
            }
            for key, windows in sorted(p.windows.items())
        ],
    }


def _prediction(data: Mapping[str, Any], events: FaultEvents) -> Prediction:
    windows = {
        FlowKey(f["source"], f["destination"], f["kind"]): tuple(_window(w) for w in f["windows"])
        for f in data["windows"]
    }
    return Prediction(fault=events, windows=windows, rules=tuple(data["rules"]))


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "passed": v.passed,
        "reasons": list(v.reasons),
        "columns": list(v.columns),
        "matrix": [
            {
                "source": s,
                "column": c,
                "total": cell.total,
                "failed": cell.failed,
                "predicted": cell.predicted,
            }
            for (s, c), cell in v.matrix.items()
        ],
        "crossed": [{"source": s, "served": n, "answered": count} for (s, n), count in v.crossed.items()],
        "unexpected": _observations_json(v.unexpected),
        "bypassed": _observations_json(v.bypassed),
        "unobserved": [[k.source, k.destination, k.kind] for k in v.unobserved],
        "pairs_touched": v.pairs_touched,
        "pairs_predicted": v.pairs_predicted,
        "pair_bound": _num(v.pair_bound),
        "recovery_seconds": None if v.recovery_seconds is None else _num(v.recovery_seconds),
        "total": v.total,
        "failed": v.failed,
    }


def _verdict(data: Mapping[str, Any]) -> Verdict:
    recovery = data["recovery_seconds"]
    return Verdict(
        passed=bool(data["passed"]),
        reasons=tuple(data["reasons"]),
        columns=tuple(data["columns"]),
        matrix={
            (c["source"], c["column"]): PairCell(int(c["total"]), int(c["failed"]), bool(c["predicted"]))
            for c in data["matrix"]
        },
        crossed={(c["source"], c["served"]): int(c["answered"]) for c in data["crossed"]},
        unexpected=_observations(data["unexpected"]),
        bypassed=_observations(data["bypassed"]),
        unobserved=tuple(FlowKey(s, d, k) for s, d, k in data["unobserved"]),
        pairs_touched=int(data["pairs_touched"]),
        pairs_predicted=int(data["pairs_predicted"]),
        pair_bound=_float(data["pair_bound"]),
        recovery_seconds=None if recovery is None else _float(recovery),
        total=int(data["total"]),
        failed=int(data["failed"]),
    )


def _floats_json(values: Mapping[str, float]) -> dict[str, float | str]:
    return {name: _num(value) for name, value in values.items()}


def run_to_json(run: ChaosRun) -> dict[str, Any]:
    """One run as JSON values (see the module docstring for non-finite floats and tuple keys).

    ``context`` (seed, commit, machine...), ``placement`` and ``load`` are what repeating the run needs;
    ``observations`` are the evidence the verdict was reached on."""
    t, load = run.timing, run.load
    return {
        "experiment": run.experiment,
        "index": run.index,
        "passed": run.verdict.passed,
        "origin": _num(run.origin),
        "context": dict(run.context),
        "placement": dict(run.placement),
        "load": _floats_json(
            {
                "rate": load.rate,
                "timeout": load.timeout,
                "duration": load.duration,
                "keepalive_max_age": load.keepalive_max_age,
            }
        ),
        "timing": _floats_json(
            {
                "request_timeout": t.request_timeout,
                "node_grace": t.node_grace,
                "push_delay": t.push_delay,
                "hbone_connect_timeout": t.hbone_connect_timeout,
                "dead_peer_timeout": t.dead_peer_timeout,
                "keepalive_max_age": t.keepalive_max_age,
                "drain_deadline": t.drain_deadline,
                "recovery_slack": t.recovery_slack,
            }
        ),
        "topology": _topology_json(run.topology),
        "events": _events_json(run.events),
        "prediction": _prediction_json(run.prediction),
        "verdict": _verdict_json(run.verdict),
        "observations": _observations_json(run.observations),
    }


def run_from_json(data: Mapping[str, Any]) -> ChaosRun:
    """The reverse of `run_to_json`."""
    events = _events(data["events"])
    load = data["load"]
    return ChaosRun(
        experiment=data["experiment"],
        index=int(data["index"]),
        topology=_topology(data["topology"]),
        timing=Timing(**{name: _float(value) for name, value in data["timing"].items()}),
        load=LoadParameters(
            rate=_float(load["rate"]),
            timeout=_float(load["timeout"]),
            duration=_float(load["duration"]),
            keepalive_max_age=_float(load["keepalive_max_age"]),
        ),
        events=events,
        prediction=_prediction(data["prediction"], events),
        verdict=_verdict(data["verdict"]),
        observations=_observations(data["observations"]),
        origin=_float(data["origin"]),
        placement=dict(data["placement"]),
        context=dict(data["context"]),
    )


def report_json(runs: Sequence[ChaosRun]) -> dict[str, Any]:
    """``report.json`` of one experiment's runs."""
    return {
        "format": FORMAT,
        "experiment": _experiment(runs),
        "passed": passed(runs),
        "runs": [run_to_json(r) for r in runs],
    }


def read_report(path: Path) -> list[ChaosRun]:
    """The runs of a ``report.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return [run_from_json(r) for r in data["runs"]]


def _dump(data: Any) -> str:
    """JSON, indented, with each list of plain values on one line (one line per observation)."""
    return _pretty(data, 0) + "\n"


def _pretty(value: Any, depth: int) -> str:
    pad, end = " " * (depth + 1), " " * depth
    if isinstance(value, dict) and value:
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_pretty(v, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        return "[\n" + ",\n".join(pad + _pretty(v, depth + 1) for v in value) + "\n" + end + "]"
    return json.dumps(value, allow_nan=False, ensure_ascii=False)


def _experiment(runs: Sequence[ChaosRun]) -> str:
    names = {r.experiment for r in runs}
    if len(names) != 1:
        raise ValueError(f"a report is of one experiment's runs, not {sorted(names) or 'none'}")
    return next(iter(names))


# --- report.md ----------------------------------------------------------------------------------------


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "|" + "|".join("---" for _ in headers) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _observed_cell_md(cell: PairCell | None) -> str:
    if cell is None or cell.total == 0:
        return "–"
    text = f"{cell.failed}/{cell.total}"
    if cell.predicted:
        text += " ◆"
    if cell.failed and not cell.predicted:
        text = f"**{text}**"
    return text


def _matrices_md(run: ChaosRun) -> str:
    """The observed matrix beside the predicted one (an HTML table of two markdown tables: side by side
    where markdown is rendered, one after the other in plain text)."""
    v = run.verdict
    expected = expectations(run)
    observed = md_table(
        ["source \\ to", *v.columns],
        [[s, *(_observed_cell_md(v.matrix.get((s, c))) for c in v.columns)] for s in matrix_rows(run)],
    )
    predicted = md_table(
        ["source \\ to", *v.columns],
        [[s, *(expected[s, c] for c in v.columns)] for s in matrix_rows(run)],
    )
    return (
        "<table><tr><th>observed: failed/total</th><th>predicted</th></tr><tr><td>\n\n"
        f"{observed}\n\n</td><td>\n\n{predicted}\n\n</td></tr></table>\n\n"
        "◆: the prediction lets this cell fail; **bold**: failures no prediction covers; "
        "–: no traffic. Predicted: must (every request in the window must fail), may, never."
    )


def _observation_md(run: ChaosRun, o: Observation) -> list[str]:
    return [
        f"{o.source} → {o.destination} ({o.kind})",
        seconds(relative(run, o.start)),
        seconds(relative(run, o.end)),
        o.outcome,
        o.error or o.served_node,
    ]


def _observations_md(run: ChaosRun, title: str, observations: Sequence[Observation]) -> list[str]:
    if not observations:
        return []
    shown = observations[:MAX_LISTED]
    more = len(observations) - len(shown)
    table = md_table(
        ["flow", "start", "end", "outcome", "error / served by"], (_observation_md(run, o) for o in shown)
    )
    return [f"**{title}** ({len(observations)}):", "", table, *([f"\n… and {more} more"] if more else []), ""]


def _timeline_md(run: ChaosRun) -> str:
    e = run.events
    rows = [["fault injected (start)", seconds(relative(run, e.start))]]
    rows.append(["fault over (end)", seconds(relative(run, e.end))])
    if len(e.episodes) > 1:
        for i, (a, b) in enumerate(e.episodes, 1):
            rows.append([f"episode {i}", f"{seconds(relative(run, a))} – {seconds(relative(run, b))}"])
    rows += [[name, seconds(relative(run, t))] for name, t in e.marks]
    last = max((o.end for o in run.observations), default=run.origin)
    rows.append(["load ends (last request)", seconds(relative(run, last))])
    table = md_table(["event", "seconds since the load began"], rows)
    if e.measures:
        table += "\n\n" + md_table(
            ["measured", "value"], [[name, f"{value:g}"] for name, value in e.measures]
        )
    return table


def flow_list(keys: Iterable[FlowKey]) -> str:
    """Flows as "source→destination", with the connection kind only when not every kind is there."""
    kinds: dict[tuple[str, str], list[str]] = {}
    for k in sorted(keys):
        kinds.setdefault((k.source, k.destination), []).append(k.kind)
    return ", ".join(
        f"{s}→{d}" + ("" if set(found) >= set(CONN_KINDS) else f" ({', '.join(found)})")
        for (s, d), found in kinds.items()
    )


def _window_md(run: ChaosRun, w: Window) -> str:
    text = f"{seconds(relative(run, w.start))}–{seconds(relative(run, w.end))}"
    return text + (" must fail" if w.must_fail else "") + (f" ({w.reason})" if w.reason else "")


def _windows_md(run: ChaosRun) -> str:
    """The predicted windows, flows with identical windows on one line."""
    grouped: dict[tuple[Window, ...], list[FlowKey]] = {}
    for key, windows in sorted(run.prediction.windows.items()):
        if windows:
            grouped.setdefault(windows, []).append(key)
    rows = []
    for windows, keys in grouped.items():
        flows = flow_list(keys)
        spans = "; ".join(_window_md(run, w) for w in windows)
        rows.append([spans, flows])
    return md_table(["windows (s since the load began)", "flows"], rows) if rows else "No flow may fail."


def _crossed_md(run: ChaosRun) -> str:
    served = _crossed_columns(run)
    rows = [[s, *(str(run.verdict.crossed.get((s, n), 0)) for n in served)] for s in matrix_rows(run)]
    return md_table(["source \\ answered by", *served], rows)


def _context_md(run: ChaosRun) -> str:
    rows = [[k, json.dumps(v) if not isinstance(v, str) else v] for k, v in sorted(run.context.items())]
    load = run.load
    rows.append(
        [
            "load",
            f"{load.rate:g} req/s per flow and kind, timeout {load.timeout:g} s, {load.duration:g} s, "
            f"kept-alive connections retired after {load.keepalive_max_age:g} s",
        ]
    )
    if run.placement:
        rows.append(["placement", ", ".join(f"{pod}@{node}" for pod, node in sorted(run.placement.items()))])
    return md_table(["", ""], rows)


def _run_md(run: ChaosRun, images: Sequence[Path]) -> list[str]:
    v = run.verdict
    e = run.events
    lines = [
        f"## Run {run.index}: {_verdict_word(v.passed)}",
        "",
        f"Fault: {e.experiment} on {e.target}"
        + (f" (node {e.target_node})" if e.target_node and e.target_node != e.target else "")
        + f"; {v.failed} of {v.total} requests failed.",
        "",
    ]
    if not v.passed:
        lines += ["### Why it failed", "", *(f"- {r}" for r in v.reasons), ""]
        lines += _observations_md(run, "failures no prediction covers", v.unexpected)
        lines += _observations_md(run, "successes inside a must-fail window", v.bypassed)
    lines += ["### Failure matrix", "", _matrices_md(run), ""]
    for image in images:
        lines += [f"![{image.stem}]({image.name})", ""]
    lines += [
        f"- Time to recovery: {_recovery(run)}.",
        f"- Node pairs touched: {_pairs(run)}.",
        "",
        "### Predicted to possibly fail, did not fail",
        "",
    ]
    lines += [flow_list(v.unobserved) if v.unobserved else "None."]
    lines += [
        "",
        "### Proof of crossing: answered requests by the node that answered",
        "",
        _crossed_md(run),
        "",
    ]
    lines += ["### Fault timeline", "", _timeline_md(run), ""]
    lines += ["### Prediction", "", *(f"- {rule}" for rule in run.prediction.rules), ""]
    lines += [_windows_md(run), ""]
    lines += ["### To repeat this run", "", _context_md(run), ""]
    return lines


def markdown(runs: Sequence[ChaosRun], images: Mapping[int, Sequence[Path]] | None = None) -> str:
    """``report.md``: the experiment's verdict, then each run (``images``: per run index, the files
    embedded by name, relative to the report)."""
    experiment = _experiment(runs)
    ok = passed(runs)
    failing = [r.index for r in runs if not r.verdict.passed]
    lines = [
        f"# ambit chaos: {experiment}",
        "",
        f"**Verdict: {_verdict_word(ok)}**"
        + (
            f" — {len(runs)} of {len(runs)} runs passed."
            if ok
            else f" — runs failing: {failing or 'no runs'}."
        ),
        "",
        md_table(
            ["run", "verdict", "failed / total", "pairs touched", "recovery (s)"],
            [
                [
                    str(r.index),
                    _verdict_word(r.verdict.passed),
                    f"{r.verdict.failed}/{r.verdict.total}",
                    f"{r.verdict.pairs_touched}/{_node_count(r) ** 2}",
                    seconds(r.verdict.recovery_seconds),
                ]
                for r in runs
            ],
        ),
        "",
    ]
    for run in runs:
        lines += _run_md(run, (images or {}).get(run.index, ()))
    return "\n".join(lines).rstrip("\n") + "\n"


def image_names(run: ChaosRun) -> tuple[str, str]:
    """The file names of a run's heatmap and timeline."""
    return f"heatmap-run{run.index}.svg", f"timeline-run{run.index}.svg"


def write_report(runs: Sequence[ChaosRun], directory: Path) -> list[Path]:
    """Write ``report.json``, the images and ``report.md`` of one experiment's runs into ``directory``;
    return the files written."""
    from ambit.chaos import images  # imports matplotlib when it draws, not before

    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.json"
    report.write_text(_dump(report_json(runs)), encoding="utf-8")
    written = [report]
    drawn: dict[int, list[Path]] = {}
    for run in runs:
        heatmap_name, timeline_name = image_names(run)
        heatmap, timeline = directory / heatmap_name, directory / timeline_name
        images.heatmap(run, heatmap)
        images.timeline(run, timeline)
        drawn[run.index] = [heatmap, timeline]
        written += [heatmap, timeline]
    md = directory / "report.md"
    md.write_text(markdown(runs, drawn), encoding="utf-8")
    return [report, md, *written[1:]]


# --- the terminal -------------------------------------------------------------------------------------


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
    text.append(_verdict_word(v.passed), style="bold green" if v.passed else "bold red")
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
        n = _node_count(run)
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
        line = Text(_verdict_word(ok), style="bold green" if ok else "bold red")
        line.append(
            f" {runs[0].experiment}: {sum(r.verdict.passed for r in runs)} of {len(runs)} runs passed"
        )
        console.print(line)


# --- the suite ----------------------------------------------------------------------------------------


def _suite_entry(experiment: str, runs: Sequence[ChaosRun]) -> dict[str, Any]:
    recoveries = [r.verdict.recovery_seconds for r in runs if r.verdict.recovery_seconds is not None]
    n = max((_node_count(r) for r in runs), default=0)
    return {
        "experiment": experiment,
        "passed": passed(runs),
        "runs": len(runs),
        "runs_passed": sum(r.verdict.passed for r in runs),
        "failed": sum(r.verdict.failed for r in runs),
        "total": sum(r.verdict.total for r in runs),
        "nodes": n,
        "pairs_touched": max((r.verdict.pairs_touched for r in runs), default=0),
        "pair_bound": max((r.verdict.pair_bound for r in runs), default=0.0),
        "recovery_seconds": max(recoveries) if recoveries else None,
        "directory": experiment,
        "report": f"{experiment}/report.md",
    }


def summary_lines(results: Mapping[str, Sequence[ChaosRun]]) -> list[str]:
    """One line per experiment of a suite: verdict, runs passed of runs, failures, node pairs touched (the
    most of any run) against the bound (``pairs 5/9 (≤5)``), and the longest recovery (``up 1.7 s``)."""
    width = max((len(name) for name in results), default=0)
    lines = []
    for experiment, runs in results.items():
        s = _suite_entry(experiment, runs)
        square = s["nodes"] ** 2
        bound = round(s["pair_bound"] * square)
        recovery = s["recovery_seconds"]
        lines.append(  # within 80 columns for the suite's names
            f"{_verdict_word(s['passed'])} {experiment:<{width}} "
            f"{s['runs_passed']}/{s['runs']}  failed {s['failed']}/{s['total']}  "
            f"pairs {s['pairs_touched']}/{square} (≤{bound})  "
            f"up {'—' if recovery is None else seconds(recovery, 1) + ' s'}"
        )
    return lines


def write_suite_summary(results: Mapping[str, Sequence[ChaosRun]], directory: Path) -> Path:
    """Write ``summary.json`` and ``summary.md`` of a suite into ``directory``, each experiment linked
    to its report in ``directory/<experiment>/`` (where `write_report` is expected to put it); return
    the path of ``summary.md``."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = [_suite_entry(experiment, runs) for experiment, runs in results.items()]
    ok = bool(entries) and all(e["passed"] for e in entries)
    summary = {
        "format": SUMMARY_FORMAT,
        "passed": ok,
        "experiments": [
            {
                **e,
                "pair_bound": _num(e["pair_bound"]),
                "recovery_seconds": None if e["recovery_seconds"] is None else _num(e["recovery_seconds"]),
            }
            for e in entries
        ],
    }
    (directory / "summary.json").write_text(_dump(summary), encoding="utf-8")
    rows = []
    for e in entries:
        square = e["nodes"] ** 2
        rows.append(
            [
                f"[{e['experiment']}]({e['report']})",
                _verdict_word(e["passed"]),
                f"{e['runs_passed']}/{e['runs']}",
                f"{e['failed']}/{e['total']}",
                f"{e['pairs_touched']}/{square} (bound {round(e['pair_bound'] * square)}/{square})",
                seconds(e["recovery_seconds"]),
            ]
        )
    md = "\n".join(
        [
            "# ambit chaos suite",
            "",
            f"**Verdict: {_verdict_word(ok)}** — {sum(e['passed'] for e in entries)} of {len(entries)} "
            "experiments passed.",
            "",
            md_table(
                [
                    "experiment",
                    "verdict",
                    "runs passed",
                    "failed / total",
                    "node pairs touched",
                    "recovery (s)",
                ],
                rows,
            ),
            "",
        ]
    )
    path = directory / "summary.md"
    path.write_text(md, encoding="utf-8")
    return path
