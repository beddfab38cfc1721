"""The summary of a chaos suite, one entry per experiment (verdict, runs passed, failures, the most node
pairs any run touched against the bound, the longest recovery): ``summary.json`` and ``summary.md``,
each experiment linked to its report (`write_suite_summary`), and one line per experiment for the
terminal (`summary_lines`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ambit.chaos.report_common import node_count, passed, seconds, verdict_word
from ambit.chaos.report_json import dump_json, json_number
from ambit.chaos.report_md import md_table
from ambit.chaos.run import ChaosRun

SUMMARY_FORMAT = "ambit-chaos-summary/1"


def _suite_entry(experiment: str, runs: Sequence[ChaosRun]) -> dict[str, Any]:
    recoveries = [r.verdict.recovery_seconds for r in runs if r.verdict.recovery_seconds is not None]
    n = max((node_count(r) for r in runs), default=0)
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
            f"{verdict_word(s['passed'])} {experiment:<{width}} "
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
                "pair_bound": json_number(e["pair_bound"]),
                "recovery_seconds": None
                if e["recovery_seconds"] is None
                else json_number(e["recovery_seconds"]),
            }
            for e in entries
        ],
    }
    (directory / "summary.json").write_text(dump_json(summary), encoding="utf-8")
    rows = []
    for e in entries:
        square = e["nodes"] ** 2
        rows.append(
            [
                f"[{e['experiment']}]({e['report']})",
                verdict_word(e["passed"]),
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
            f"**Verdict: {verdict_word(ok)}** — {sum(e['passed'] for e in entries)} of {len(entries)} "
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
