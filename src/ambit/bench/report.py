"""Rendering of ``ambit bench hbone`` results: the machine, a rich table, and the BENCHMARKS.md section.

Numbers are only formatted here, never computed beyond ratios: every value comes from a `Result`.
`update_markdown` replaces the ``## HBONE hop (ambit bench hbone)`` section of a markdown file (or
appends it), leaving every other section alone. Inside the section, only the text between the
``GENERATED_BEGIN`` / ``GENERATED_END`` markers is regenerated when they exist, so hand-written
analysis around the numbers survives a re-run.
"""

from __future__ import annotations

import os
import platform
import ssl
from datetime import UTC, datetime
from pathlib import Path

from rich.table import Table

from ambit.bench.hbone import Budget, Result
from ambit.bench.markdown import package_version, replace_generated, table

SECTION_TITLE = "## HBONE hop (ambit bench hbone)"
GENERATED_BEGIN = "<!-- ambit bench hbone: generated, begin -->"
GENERATED_END = "<!-- ambit bench hbone: generated, end -->"
_COMPARE = (("hbone", "tls-relay"), ("hbone", "tcp-relay"), ("tls-relay", "tcp-relay"))


def load_average() -> float:
    """The 1-minute load average: other work on the machine shows up here."""
    return os.getloadavg()[0]


def environment(load_before: float | None = None) -> dict[str, str]:
    """The machine and software versions; `load_before` is the load average when the run started."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": model,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "openssl": ssl.OPENSSL_VERSION,
        "h2": package_version("h2"),
        "uvloop": package_version("uvloop"),
        "ambit": package_version("ambit"),
        "load": f"{load_before if load_before is not None else load_average():.2f}",
    }


def _ratio(value: float, base: float) -> float:
    return value / base if base else 0.0


def rows(results: list[Result]) -> list[list[str]]:
    """The main table: absolute numbers and ratios to ``direct``."""
    by_name = {r.configuration.name: r for r in results}
    direct = by_name.get("direct")
    out = []
    for r in results:
        bulk, rr = r.bulk, r.rr
        d_bulk = direct.bulk.gbit_per_s if direct else 0.0
        d_rps = direct.rr.per_second if direct else 0.0
        d_p50 = direct.rr.p50_us if direct else 0.0
        proxied = r.configuration.hop != "direct"
        out.append(
            [
                r.configuration.name,
                f"{bulk.gbit_per_s:.2f}",
                f"{_ratio(bulk.gbit_per_s, d_bulk):.3f}",
                f"{rr.per_second:,.0f}",
                f"{_ratio(rr.per_second, d_rps):.3f}",
                f"{rr.p50_us:,.0f}",
                f"{rr.p99_us:,.0f}",
                f"{_ratio(rr.p50_us, d_p50):.1f}",
                f"{bulk.proxy_cpu_s_per_gib:.2f}" if proxied else "-",
                f"{rr.proxy_cpu_us_per_request:.0f}" if proxied else "-",
            ]
        )
    return out


HEADERS = [
    "configuration",
    "bulk Gbit/s",
    "bulk ×direct",
    "rr req/s",
    "rr ×direct",
    "p50 µs",
    "p99 µs",
    "p50 ×direct",
    "A+B CPU s/GiB",
    "A+B CPU µs/req",
]


def comparisons(results: list[Result]) -> list[list[str]]:
    """Ratios between configurations: hbone against the relays, and each frame size against hbone."""
    by_name = {r.configuration.name: r for r in results}
    pairs = [p for p in _COMPARE if p[0] in by_name and p[1] in by_name]
    pairs += [(n, "hbone") for n in by_name if n.startswith("hbone frame=") and "hbone" in by_name]
    out = []
    for top, bottom in pairs:
        a, b = by_name[top], by_name[bottom]
        out.append(
            [
                f"{top} / {bottom}",
                f"{_ratio(a.bulk.gbit_per_s, b.bulk.gbit_per_s):.3f}",
                f"{_ratio(a.rr.per_second, b.rr.per_second):.3f}",
                f"{_ratio(a.rr.p50_us, b.rr.p50_us):.2f}",
                f"{_ratio(a.rr.p99_us, b.rr.p99_us):.2f}",
                f"{_ratio(a.bulk.proxy_cpu_s_per_gib, b.bulk.proxy_cpu_s_per_gib):.2f}",
                f"{_ratio(a.rr.proxy_cpu_us_per_request, b.rr.proxy_cpu_us_per_request):.2f}",
            ]
        )
    return out


COMPARISON_HEADERS = ["ratio", "bulk Gbit/s", "rr req/s", "p50", "p99", "CPU/GiB", "CPU/req"]


def repetition_rows(results: list[Result]) -> list[list[str]]:
    """Every repetition, with each process's CPU share (% of one core) during the window."""

    def shares(cpu: dict[str, float], seconds: float) -> str:
        order = [k for k in ("A", "B", "load", "target") if k in cpu]
        return " ".join(f"{k} {100 * cpu[k] / seconds:.0f}" for k in order)

    out = []
    for r in results:
        for i, (bulk, rr) in enumerate(zip(r.bulk_samples, r.rr_samples, strict=True)):
            out.append(
                [
                    r.configuration.name,
                    str(i + 1),
                    f"{bulk.gbit_per_s:.2f}",
                    shares(bulk.cpu, bulk.seconds),
                    f"{rr.per_second:,.0f}",
                    f"{rr.p50_us:,.0f}",
                    f"{rr.p99_us:,.0f}",
                    shares(rr.cpu, rr.seconds),
                ]
            )
    return out


REPETITION_HEADERS = [
    "configuration",
    "rep",
    "bulk Gbit/s",
    "bulk CPU %",
    "rr req/s",
    "p50 µs",
    "p99 µs",
    "rr CPU %",
]


def frame_summary(results: list[Result]) -> str:
    """Which forced frame size did best in this run (data only; the decision is prose)."""
    frames = [r for r in results if r.configuration.frame is not None]
    if not frames:
        return ""
    best_bulk = max(frames, key=lambda r: r.bulk.gbit_per_s)
    best_rr = max(frames, key=lambda r: r.rr.per_second)
    parts = ", ".join(
        f"{r.configuration.frame // 1024} KiB {r.bulk.gbit_per_s:.2f} Gbit/s / {r.rr.per_second:,.0f} req/s"
        for r in frames
        if r.configuration.frame is not None
    )
    return (
        f"Frame sizes in this run (bulk / rr): {parts}. Best bulk: `{best_bulk.configuration.name}`; "
        f"best rr: `{best_rr.configuration.name}`. The `hbone` row runs ambit's default "
        "`HboneSettings` (send_frame_size 64 KiB) and is the same configuration as `hbone frame=64K`, "
        "so the gap between those two rows shows this run's noise."
    )


def methodology(budget: Budget) -> str:
    warm = budget.warm_up_pass()
    warm_text = (
        f"A discarded warm-up pass ({warm.rr_seconds:g} s request/response and "
        f"{warm.bulk_bytes // (1024 * 1024)} MiB bulk per configuration) comes first. "
        if warm is not None
        else ""
    )
    return (
        f"{warm_text}Then each configuration ran {budget.repetitions}× (alternating order; best "
        "repetition reported: highest Gbit/s for bulk; for request/response the repetition with the "
        "highest req/s, with its own p50/p99). Bulk: one connection sends "
        f"{budget.bulk_bytes // (1024 * 1024)} MiB to the sink. Request/response: {budget.concurrency} "
        f"connections, each a sequential {budget.message_size} B ping-pong, {budget.warmup_seconds:g} s "
        f"warm-up then {budget.rr_seconds:g} s measured. CPU columns: user+system time of proxies A and "
        "B from /proc/PID/stat (clock-tick granularity) over the measured window; loopback softirq work "
        "may be charged to other processes."
    )


def rich_tables(results: list[Result]) -> list[Table]:
    tables = []
    for title, headers, body in (
        ("HBONE hop, best of repetitions", HEADERS, rows(results)),
        ("Ratios", COMPARISON_HEADERS, comparisons(results)),
    ):
        rich_table = Table(title=title)
        for i, h in enumerate(headers):
            rich_table.add_column(h, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for row in body:
            rich_table.add_row(*row)
        tables.append(rich_table)
    return tables


def markdown(results: list[Result], budget: Budget, env: dict[str, str], command: str) -> str:
    """The generated part of the section (between the markers)."""
    machine = (
        f"{env['nproc']} CPUs ({env['cpu']}), {env['kernel']}; {env['python']}; {env['openssl']}; "
        f"h2 {env['h2']}; uvloop {env['uvloop']}; ambit {env['ambit']}; {env['date']}; "
        f"1-minute load average before the run {env['load']} (other work on the machine; the run "
        "itself keeps about 4 processes busy)"
    )
    return "\n\n".join(
        [
            f"Command: `{command}`",
            f"Machine: {machine}",
            methodology(budget),
            table(HEADERS, rows(results)),
            "Ratios between configurations (>1 means the first is higher):",
            table(COMPARISON_HEADERS, comparisons(results)),
            frame_summary(results),
            "<details><summary>Every repetition</summary>\n\n"
            + table(REPETITION_HEADERS, repetition_rows(results))
            + "\n\n</details>",
        ]
    )


def update_markdown(path: Path, generated: str) -> None:
    """Put `generated` into the HBONE section of `path`; see the module docstring."""
    replace_generated(path, SECTION_TITLE, GENERATED_BEGIN, GENERATED_END, generated)
