"""Number formatting for the ``ambit bench mesh`` tables (``mesh_report``): milliseconds, rates, MB, ratios.

Pure; ``-`` stands for a value that is missing (NaN) and ``dropped`` for one that counts a dropped request.
"""

from __future__ import annotations

import math

from ambit.bench.mesh import ConfigResult


def fmt_ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if math.isinf(seconds):
        return "dropped"
    return f"{seconds * 1000:.2f}"


def fmt_added_ms(value: float, base: float) -> str:
    if math.isnan(value) or math.isnan(base) or math.isinf(base):
        return "-"
    if math.isinf(value):
        return "dropped"
    return f"{(value - base) * 1000:+.2f}"


def fmt_rate(n: float) -> str:
    return f"{n:,.0f}"


def fmt_gbit(n: float) -> str:
    return f"{n:.2f}"


def fmt_mb(kib: float) -> str:
    return f"{kib * 1024 / 1e6:,.1f}"


def ratio_of(value: float, base: float) -> float:
    return value / base if base and not math.isinf(value) and not math.isinf(base) else math.nan


def fmt_x(ratio: float) -> str:
    return "-" if math.isnan(ratio) else f"{ratio:.2f}×"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def vcpu_of(c: ConfigResult, cpu_seconds: float) -> float:
    return c.fixed.vcpu_per_1000(cpu_seconds)


def cost_total(c: ConfigResult) -> tuple[float, int]:
    cpu = sum(p.cpu_seconds for p in c.fixed.cost.values())
    pss = sum(p.pss_kib for p in c.fixed.cost.values())
    return cpu, pss
