"""Rules for every tier: in CI, a skipped e2e, chaos, interop or bench test is an error, not a silent pass.

CI (``CI=true``) sets the machine up with `make setup` (``scripts/sysdeps.sh`` installs every tool) and
runs as root, so a skip in those tiers means a claim that was not checked. There, a test that skips
fails (an error at set-up, or a failure) with the skip's reason, unless the test declares the skip
legitimate with ``@pytest.mark.allowed_skip("why this skip is fine even in CI")``. Every allowed skip
that happened is listed, with both reasons, in an "allowed skips" section at the end of the run.

- Only skips become errors: an expected failure (xfail) stays what it is.
- A whole module skipped at collection in those tiers is a collection error in CI (a module-level skip
  cannot carry the marker: skip the tests one by one instead).
- The unit and integration tiers keep pytest's skips (``-ra`` lists them with their reasons).
- Outside CI nothing changes: a laptop without root or Node.js skips as before.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]  # tests/unit/test_ci_skips.py runs small suites under these rules

TESTS = Path(__file__).parent
GUARDED_TIERS = frozenset({"e2e", "chaos", "interop", "bench"})
ALLOWED_SKIP = "allowed_skip"

AllowedSkip = tuple[str, str, str]  # (test id, why it may skip, the skip's own reason)
_ALLOWED = pytest.StashKey[list[AllowedSkip]]()


def in_ci() -> bool:
    """Whether this run is CI's (``CI`` set to true, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def tier(path: Path) -> str | None:
    """The tier a test file belongs to: ``tests/<tier>/...`` -> ``<tier>``."""
    try:
        parts = path.relative_to(TESTS).parts
    except ValueError:
        return None
    return parts[0] if len(parts) > 1 else None


def _guarded(path: Path) -> bool:
    return tier(path) in GUARDED_TIERS


def _allowed_reason(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker(ALLOWED_SKIP)
    if marker is None:
        return None
    reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
    return reason if isinstance(reason, str) else None


def _skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _refusal(reason: str) -> str:
    return (
        f"skipped in CI (CI=true): {reason} [a skipped e2e/chaos/interop/bench test is an error in CI: "
        f'install what it needs (make setup) or declare it with @pytest.mark.{ALLOWED_SKIP}("why")]'
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_ALLOWED] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker(ALLOWED_SKIP)
        if marker is not None and not (_allowed_reason(item) or "").strip():
            raise pytest.UsageError(f'{item.nodeid}: @pytest.mark.{ALLOWED_SKIP}("...") needs its reason')


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if not report.skipped or hasattr(report, "wasxfail"):
        return report
    allowed = _allowed_reason(item)
    if allowed is not None:
        item.config.stash[_ALLOWED].append((item.nodeid, allowed, _skip_reason(report)))
    elif in_ci() and _guarded(item.path):
        report.outcome = "failed"
        report.longrepr = _refusal(_skip_reason(report))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped and in_ci() and _guarded(collector.path):
        report.outcome = "failed"
        report.longrepr = _refusal(_skip_reason(report))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    allowed = config.stash.get(_ALLOWED, [])
    if not allowed:
        return
    terminalreporter.section("allowed skips")
    for nodeid, why, skipped in allowed:
        terminalreporter.line(f"{nodeid}: {why} (skipped: {skipped})")
