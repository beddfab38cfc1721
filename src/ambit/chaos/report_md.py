"""``report.md``, for a person: the experiment's verdict, then per run why it failed (the requests no
prediction covers), the observed failure matrix beside the predicted one, the images embedded by name,
recovery and node pairs touched, the crossing proof, the fault timeline, the prediction's rules and
windows, and what repeating the run needs. Also `md_table`, the markdown table every report uses.

Only formatting: every number comes from a run's records. Times are shown in seconds since the run's
``origin`` (the load began).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ambit.chaos.report_common import (
    expectations,
    experiment_of,
    matrix_rows,
    node_count,
    passed,
    relative,
    seconds,
    verdict_word,
)
from ambit.chaos.run import ChaosRun
from ambit.reliability.flows import CONN_KINDS, FlowKey, Observation, PairCell, Window

MAX_LISTED = 20  # observations listed one by one in report.md (unexpected failures, bypasses)


def _pairs(run: ChaosRun) -> str:
    """Node pairs touched out of N², beside the node-scoped bound (2N−1)/N² and the predicted count."""
    n = node_count(run)
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
        f"## Run {run.index}: {verdict_word(v.passed)}",
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
    experiment = experiment_of(runs)
    ok = passed(runs)
    failing = [r.index for r in runs if not r.verdict.passed]
    lines = [
        f"# ambit chaos: {experiment}",
        "",
        f"**Verdict: {verdict_word(ok)}**"
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
                    verdict_word(r.verdict.passed),
                    f"{r.verdict.failed}/{r.verdict.total}",
                    f"{r.verdict.pairs_touched}/{node_count(r) ** 2}",
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
