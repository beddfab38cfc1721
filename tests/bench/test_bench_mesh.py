"""`ambit bench mesh` smoke test: `--quick` end to end as root, every row reported; and its parsers.

No thresholds: the targets belong to the benchmark, and this machine is too noisy for them. The root
test proves the cluster comes up, every configuration carries every workload (numbers > 0), the target
table gives a verdict for every target, `--out` edits only its own section, the run takes under two
minutes, and nothing is left behind: no namespace, no process, no change to the host's network.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ambit.bench import mesh_report
from ambit.bench.mesh_cluster import missing_tools
from ambit.bench.mesh_configs import CONFIGURATIONS
from ambit.bench.mesh_workloads import parse_iperf3, parse_wrk
from ambit.cli import cli

OTHER_SECTION = "## Something else\n\nKeep this paragraph.\n"

WRK_OUTPUT = """\
Running 2s test @ http://10.244.2.3:80/1k
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   512.33us  300.12us   9.80ms   91.00%
    Req/Sec    16.12k     1.02k   18.00k    70.00%
  Latency Distribution
     50%  431.00us
     75%  600.00us
     90%    1.20ms
     99%    3.76ms
  64480 requests in 2.00s, 81.12MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  32215.41
Transfer/sec:     40.52MB
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result.requests_per_s == 32215.41
    assert result.requests == 64480
    assert result.latency_s == pytest.approx({"p50": 431e-6, "p75": 600e-6, "p90": 1.2e-3, "p99": 3.76e-3})
    assert result.errors == 6


def test_parse_iperf3() -> None:
    output = (
        '{"start": {}, "end": {"sum_sent": {"retransmits": 7}, "sum_received": {"bits_per_second": 2.5e9}}}'
    )
    bulk = parse_iperf3(output)
    assert bulk.gbit_per_s == pytest.approx(2.5)
    assert bulk.retransmits == 7


def test_out_replaces_only_the_generated_block(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\n{OTHER_SECTION}")
    mesh_report.update_markdown(out, "first numbers")
    text = out.read_text().replace(mesh_report.GENERATED_END, mesh_report.GENERATED_END + "\n\nProse.\n")
    out.write_text(text)
    mesh_report.update_markdown(out, "second numbers")
    text = out.read_text()
    assert "second numbers" in text and "first numbers" not in text
    assert "Prose." in text and OTHER_SECTION in text
    assert text.count(mesh_report.GENERATED_BEGIN) == 1


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    missing = missing_tools() + [t for t in ("sysctl", "ss") if shutil.which(t) is None]
    if missing:
        return f"needs {', '.join(missing)} on PATH (scripts/sysdeps.sh)"
    return None


def _table(text: str, first_header: str) -> dict[str, list[str]]:
    """First cell → cells of the markdown table whose header row starts with `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows.setdefault(cells[0], []).extend(cells[1:])
    return rows


def _number(cell: str) -> float:
    match = re.fullmatch(r"[+-]?[\d,]+(\.\d+)?×?", cell)
    assert match is not None, cell
    return float(cell.rstrip("×").replace(",", ""))


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_reports_every_row(tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from ambit.runtime import hostcheck

    name = "bm" + secrets.token_hex(3)
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# Benchmarks\n\n{OTHER_SECTION}")
    before = hostcheck.snapshot()
    started = time.monotonic()
    args = ["bench", "mesh", "--quick", "--cluster-name", name, "--out", str(out)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output

    # nothing left behind
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"ambit-{name}-" not in netns
    assert before == hostcheck.snapshot(), "host namespace changed"
    assert elapsed < 120, f"--quick took {elapsed:.0f} s"

    text = out.read_text()
    assert OTHER_SECTION in text and mesh_report.SECTION_TITLE in text
    command = shlex.join(["ambit", "bench", "mesh", "--quick", "--out", str(out), "--cluster-name", name])
    assert f"Command: `{command}`" in text
    names = [config.name for config in CONFIGURATIONS]
    main = _table(text, "configuration")
    assert list(main) == names
    for config in CONFIGURATIONS:
        cells = main[config.name]
        percentiles, _dropped, rest = cells[:4], cells[4], cells[5:]
        assert all(_number(c) > 0 for c in percentiles), cells
        proxy_cells = rest[-2:]
        assert all(_number(c) > 0 for c in rest[:-2]), cells  # wrk, iperf3 x2, new connections/s
        if config.key == "none":
            assert proxy_cells == ["-", "-"]
        else:
            assert all(_number(c) > 0 for c in proxy_cells), cells

    ratios = _table(text, "ratio")
    assert set(ratios) == {
        "ambit L4 / no mesh",
        "stunnel L4 / no mesh",
        "ambit L4 / stunnel L4",
    }
    targets = _table(text, "target")
    assert len(targets) == 6
    assert all(cells[-1] in ("PASS", "FAIL") for cells in targets.values()), targets
    assert any("this run held 1,000 (--quick)" in t for t in targets)

    idle = [line for line in text.splitlines() if re.match(r"\| (ambit|stunnel) L4 \| \S+ \| 1,000 \|", line)]
    assert len(idle) == 4, idle  # two proxy processes each for ambit and stunnel, every connection held
    assert "Mesh side by side: targets" in result.output
