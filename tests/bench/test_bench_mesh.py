"""`ambit bench mesh` smoke test: `--quick` end to end as root, every row reported; its parsers and the
rendering of the L7 rows.

No thresholds: the targets belong to the benchmark, and this machine is too noisy for them. The root
test proves the cluster comes up, every configuration carries its workloads (numbers > 0; the L7 rows only
the HTTP ones), each L7 row's proxy counted every completed request (the waypoint on node 2), the target
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
from ambit.bench.mesh import CONFIGURATIONS, ConfigResult, PathCheck, Plan, Result, _check_path
from ambit.bench.mesh_cluster import BenchError, Topology, missing_tools
from ambit.bench.mesh_configs import Configuration
from ambit.bench.mesh_nginx import parse_stub_status
from ambit.bench.mesh_waypoint import parse_requests_total
from ambit.bench.mesh_workloads import FixedRate, ProcessCost, WrkResult, parse_iperf3, parse_wrk
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


SERIES = (
    'istio_requests_total{{reporter="waypoint",source_workload="{src}",destination_service_name="server",'
)
METRICS = "\n".join(
    [
        "# HELP istio_requests_total Total requests.",
        "# TYPE istio_requests_total counter",
        SERIES.format(src="client") + 'response_code="200"} 1500.0',
        SERIES.format(src="client") + 'response_code="503"} 7.0',
        SERIES.format(src="other") + 'response_code="200"} 9.0',
        'istio_request_bytes_sum{reporter="waypoint"} 0.0',
    ]
)


def test_parse_requests_total_sums_matching_series() -> None:
    assert parse_requests_total(METRICS, source_workload="client", response_code="200") == 1500
    assert parse_requests_total(METRICS, destination_service_name="server") == 1516
    assert parse_requests_total(METRICS, source_workload="nobody") == 0
    assert parse_requests_total("") == 0


def test_parse_stub_status() -> None:
    text = (
        "Active connections: 3 \nserver accepts handled requests\n 12 12 20543 \n"
        "Reading: 0 Writing: 1 Waiting: 2 \n"
    )
    assert parse_stub_status(text) == 20543
    with pytest.raises(BenchError):
        parse_stub_status("<html>404</html>")


class _Row(Configuration):
    name = "an L7 row"

    def on_path(self) -> str:
        return "its proxy"


def test_path_check_fails_a_row_that_went_around_its_proxy() -> None:
    check = _check_path(_Row(), 100, 1_200, 1_000)
    assert check == PathCheck("its proxy", 1_000, 1_100)
    with pytest.raises(BenchError, match="counted 999 requests while the client completed 1000"):
        _check_path(_Row(), 1, 1_000, 1_000)
    with pytest.raises(BenchError):
        _check_path(_Row(), 0, 0, 0)  # nothing completed proves nothing


def _config(key: str, name: str, cost: dict[str, tuple[float, int]], rps: float, l7: bool) -> ConfigResult:
    fixed = FixedRate(
        rate=1000.0,
        achieved=1000.0,
        window_s=10.0,
        total=10_000,
        dropped=0,
        failed=0,
        latency_s=dict.fromkeys(("p50", "p90", "p99", "p99.9"), 0.002),
        latency_all_s=dict.fromkeys(("p50", "p90", "p99", "p99.9"), 0.002),
        cost={n: ProcessCost(cpu, pss) for n, (cpu, pss) in cost.items()},
    )
    wrk = WrkResult(rps, int(rps * 10), {"p99": 0.004}, 0)
    return ConfigResult(
        key=key,
        name=name,
        description="",
        proxies=tuple(cost),
        fixed=fixed,
        max_rate=wrk,
        bulk={},
        connect=None if l7 else wrk,
        idle=None,
        seconds=1.0,
        path=PathCheck("its proxy", 20_000, 20_010) if l7 else None,
    )


def test_report_renders_l7_rows_targets_and_proof() -> None:
    topo = Topology(*(f"10.0.0.{i}" for i in range(3)), *(f"ns{i}" for i in range(6)))
    result = Result(
        plan=Plan.quick_plan(),
        cluster="c",
        topology=topo,
        configs=[
            _config("none", "no mesh", {}, 20_000, l7=False),
            _config(
                "ambit-l7",
                "ambit L7 (waypoint)",
                {"waypoint": (3.0, 80_000), "ztunnel-node1": (1.0, 50_000)},
                2_000,
                l7=True,
            ),
            _config("nginx-l7", "nginx L7", {"nginx": (0.5, 10_000)}, 8_000, l7=True),
        ],
    )
    main = {row[0]: row for row in mesh_report.main_rows(result)}
    assert main["ambit L7 (waypoint)"][8:12] == ["-", "-", "-", "0.400"]  # no iperf3, no connection setup
    targets = {row[0]: row[1:] for row in mesh_report.target_rows(result)}
    waypoint = targets["waypoint ≤ 0.25 vCPU per 1000 req/s (Istio's Envoy waypoint)"]
    assert waypoint[0].startswith("0.300 at 1,000 req/s, PSS 81.9 MB (the peer's nginx: 0.050")
    assert waypoint[1] == "FAIL"
    ratio = targets["ambit L7 max request rate vs the nginx L7 peer's (no threshold)"]
    assert ratio == ["0.25× (2,000 vs 8,000 req/s)", mesh_report.STATED]
    ratios = {row[0]: row[1:] for row in mesh_report.ratio_rows(result)}
    assert ratios["ambit L7 (waypoint) / nginx L7"][0] == "0.25×"
    assert ratios["ambit L7 (waypoint) / nginx L7"][4] == "-"  # connection setup: not run
    assert mesh_report.path_rows(result) == [
        ["ambit L7 (waypoint)", "its proxy", "20,000", "20,010"],
        ["nginx L7", "its proxy", "20,000", "20,010"],
    ]
    assert "Service `server`'s cluster IP (10.0.0.2)" in mesh_report.methodology(result)


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
        assert all(_number(c) > 0 for c in rest[:2]), cells  # wrk req/s and p99
        l4_only = rest[2:5]  # iperf3 x2, new connections/s
        if config.l7:
            assert l4_only == ["-", "-", "-"], cells
        else:
            assert all(_number(c) > 0 for c in l4_only), cells
        if config.key == "none":
            assert proxy_cells == ["-", "-"]
        else:
            assert all(_number(c) > 0 for c in proxy_cells), cells

    ratios = _table(text, "ratio")
    assert set(ratios) == {
        "ambit L4 / no mesh",
        "stunnel L4 / no mesh",
        "ambit L7 (waypoint) / no mesh",
        "nginx L7 / no mesh",
        "ambit L4 / stunnel L4",
        "ambit L7 (waypoint) / nginx L7",
        "ambit L7 (waypoint) / ambit L4",
    }
    targets = _table(text, "target")
    assert len(targets) == 8
    assert all(cells[-1] in ("PASS", "FAIL", mesh_report.STATED) for cells in targets.values()), targets
    assert any("this run held 1,000 (--quick)" in t for t in targets)
    assert [t for t, cells in targets.items() if cells[-1] == mesh_report.STATED] == [
        "ambit L7 max request rate vs the nginx L7 peer's (no threshold)"
    ]

    # each L7 row's proxy counted every request the client completed; the waypoint ran on node 2
    path = _table(text, "configuration | L7 proxy asked")
    assert list(path) == ["ambit L7 (waypoint)", "nginx L7"]
    for _proxy, completed, counted in path.values():
        assert _number(counted) >= _number(completed) > 0, path
    assert "on node2" in path["ambit L7 (waypoint)"][0]
    cost = [line for line in text.splitlines() if line.startswith("| ambit L7 (waypoint) | waypoint |")]
    assert len(cost) == 1, cost
    assert all(_number(c.strip()) > 0 for c in cost[0].strip().strip("|").split("|")[2:]), cost

    idle = [line for line in text.splitlines() if re.match(r"\| (ambit|stunnel) L4 \| \S+ \| 1,000 \|", line)]
    assert len(idle) == 4, idle  # two proxy processes each for ambit and stunnel, every connection held
    assert "Mesh side by side: targets" in result.output
