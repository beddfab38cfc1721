"""`ambit bench hbone` smoke test: a tiny budget end to end, every row reported with numbers > 0.

No thresholds: this machine is too noisy for them. It proves the processes start, every
configuration carries traffic through ambit's relays, the tables render and `--out` edits only
its own section.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

from click.testing import CliRunner

from ambit.bench.hbone import CONFIGURATIONS
from ambit.bench.report import GENERATED_BEGIN, GENERATED_END, SECTION_TITLE, update_markdown
from ambit.cli import cli

OTHER_SECTION = "## Something else\n\nKeep this paragraph.\n"


def _table_row(text: str, name: str) -> list[str]:
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no table row for {name!r}")


def test_quick_run_reports_every_configuration(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\n{OTHER_SECTION}")
    args = ["bench", "hbone", "--quick", "--seconds", "0.3", "--bulk-mib", "8", "--repetitions", "1"]
    started = time.monotonic()
    result = CliRunner().invoke(cli, [*args, "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 30

    text = out.read_text()
    assert OTHER_SECTION in text
    assert SECTION_TITLE in text
    command = re.search(r"Command: `([^`]*)`", text)
    assert command is not None
    words = shlex.split(command.group(1))
    assert words[:3] == ["ambit", "bench", "hbone"]
    assert sorted(words[3:]) == sorted([*args[2:], "--out", str(out)])  # options in declaration order
    for configuration in CONFIGURATIONS:
        cells = _table_row(text.split("Ratios between")[0], configuration.name)
        numbers = [float(c.replace(",", "")) for c in cells[1:] if re.fullmatch(r"[\d,.]+", c)]
        expected = 10 if configuration.hop != "direct" else 8  # direct has no proxy CPU
        assert len(numbers) == expected - 1, cells
        # Throughput, rates and latencies must be positive. The CPU columns (the last two) come from
        # clock ticks (10 ms) over a 0.3 s window: a cheap relay can honestly read 0 there.
        assert all(n > 0 for n in numbers[:7]), cells
        assert all(n >= 0 for n in numbers[7:]), cells
        assert configuration.name in result.output


def test_out_replaces_only_the_generated_block(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    update_markdown(out, "first numbers")
    text = out.read_text()
    prose = "Hand-written analysis.\n\n"
    text = text.replace(GENERATED_END, GENERATED_END + "\n\n" + prose)
    out.write_text(text + "\n" + OTHER_SECTION)

    update_markdown(out, "second numbers")
    text = out.read_text()
    assert "second numbers" in text and "first numbers" not in text
    assert prose in text and OTHER_SECTION in text
    assert text.count(GENERATED_BEGIN) == 1
