"""`ambit bench controlplane` smoke test: a tiny cluster end to end, every figure reported and > 0.

No thresholds: this machine is too noisy for them. It proves the store, the replica (the real
`ambit controlplane`) and the xDS client processes start, every client sees every change, the
tables render, `--out` edits only its own section, and no process is left behind.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

from click.testing import CliRunner

from ambit.bench import cp_report
from ambit.bench import report as hbone_report
from ambit.cli import cli

OTHER_SECTION = "## Something else\n\nKeep this paragraph.\n"
SMALL = ["--nodes", "5", "--pods", "50", "--services", "25", "--clients", "3"]


def _rows(text: str, first_header: str) -> list[list[str]]:
    """The body rows of the markdown table whose first header cell is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _number(cell: str, unit: str) -> float:
    match = re.search(rf"([\d,.]+) {unit}\b", cell)
    assert match is not None, (cell, unit)
    return float(match.group(1).replace(",", ""))


def _children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.add(int(entry))
    return found


def test_quick_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\n{OTHER_SECTION}")
    children_before = _children_of(os.getpid())
    args = ["bench", "controlplane", "--quick", *SMALL]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 40
    assert _children_of(os.getpid()) <= children_before  # every process was stopped

    text = out.read_text()
    assert OTHER_SECTION in text
    assert cp_report.SECTION_TITLE in text
    command = re.search(r"Command: `([^`]*)`", text)
    assert command is not None
    words = shlex.split(command.group(1))
    assert words[:3] == ["ambit", "bench", "controlplane"]
    assert sorted(words[3:]) == sorted([*args[2:], "--out", str(out)])

    latency, pushed, rss = _rows(text, "figure")[:3]
    assert "all 3 clients" in latency[0]
    assert _number(latency[2], "ms") > 0
    assert _number(pushed[2], "B") > 0
    assert "1 response(s) per client per change, at most 1 resource(s) per response" in pushed[2]
    assert _number(rss[2], "MB") > 0
    for row in (latency, pushed, rss):
        assert row[3] in ("PASS", "MISS")

    changes = _rows(text, "#")
    assert len(changes) == 2  # --quick: two changes
    headers = cp_report.CHANGE_HEADERS
    for row in changes:
        cell = dict(zip(headers, row, strict=True))
        assert cell["missed"] == "0"
        for name in ("translation", "pushed to all", "latency p50", "received max", "latency max"):
            assert _number(cell[name], "ms") > 0, (name, cell)
        assert _number(cell["bytes/client"], "B") > 0
        assert _number(cell["replica bytes/client"], "B") > 0
        assert cell["responses/client"] == cell["resources/response"] == "1"

    memory = _rows(text, "replica")
    assert [row[0] for row in memory] == ["ready, no clients", "3 clients synced", "after 2 changes"]
    for row in memory:
        assert all(_number(c, "MB") > 0 for c in row[1:]), row
    assert "Control plane scale: targets" in result.output


def test_out_replaces_only_the_generated_block(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    hbone_report.update_markdown(out, "hbone numbers")
    cp_report.update_markdown(out, "first numbers")
    text = out.read_text()
    prose = "Hand-written analysis.\n\n"
    text = text.replace(cp_report.GENERATED_END, cp_report.GENERATED_END + "\n\n" + prose)
    out.write_text(text + "\n" + OTHER_SECTION)

    cp_report.update_markdown(out, "second numbers")
    hbone_report.update_markdown(out, "hbone again")
    text = out.read_text()
    assert "second numbers" in text and "first numbers" not in text
    assert "hbone again" in text and "hbone numbers" not in text
    assert prose in text and OTHER_SECTION in text
    assert text.count(cp_report.GENERATED_BEGIN) == 1
    assert text.index(hbone_report.SECTION_TITLE) < text.index(cp_report.SECTION_TITLE)
