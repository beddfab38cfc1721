"""The report of one experiment's runs, written to a directory (`write_report`): ``report.json``
(`ambit.chaos.report_json`), a heatmap and a timeline per run (`ambit.chaos.images`) and ``report.md``
embedding them (`ambit.chaos.report_md`).

The other forms of a report: the terminal rendering (`ambit.chaos.report_terminal`) and the summary of
a suite (`ambit.chaos.report_suite`); what they all show is derived in `ambit.chaos.report_common`.

matplotlib is imported only when an image is drawn (inside `write_report`), never at import: starting
``ambit`` must not pay for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ambit.chaos.report_json import dump_json, report_json
from ambit.chaos.report_md import markdown
from ambit.chaos.run import ChaosRun


def image_names(run: ChaosRun) -> tuple[str, str]:
    """The file names of a run's heatmap and timeline."""
    return f"heatmap-run{run.index}.svg", f"timeline-run{run.index}.svg"


def write_report(runs: Sequence[ChaosRun], directory: Path) -> list[Path]:
    """Write ``report.json``, the images and ``report.md`` of one experiment's runs into ``directory``;
    return the files written."""
    from ambit.chaos import images  # imports matplotlib when it draws, not before

    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.json"
    report.write_text(dump_json(report_json(runs)), encoding="utf-8")
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
