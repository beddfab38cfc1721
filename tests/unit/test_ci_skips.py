"""The CI skip rule of tests/conftest.py, shown on small suites laid out as ours (tests/<tier>/...).

With ``CI=true`` a skip in the e2e, interop or bench tier fails the run; one declared with
``@pytest.mark.allowed_skip("why")`` passes and is listed; other tiers skip as usual; without CI
nothing changes.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFTEST = ROOT / "tests" / "conftest.py"

SKIPS = """
import pytest

def test_a_tool_is_missing():
    pytest.skip("needs sometool on PATH")

@pytest.mark.skipif(True, reason="Node.js (`node`) is not installed")
def test_skipif_marker():
    pass

@pytest.fixture
def cluster():
    pytest.skip("the samples are not there")

def test_skip_in_a_fixture(cluster):
    pass

def test_passes():
    pass
"""

ALLOWED = """
import pytest

@pytest.mark.allowed_skip("the kernel of this CI image has no SCTP")
def test_declared_skip():
    pytest.skip("no SCTP module")

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_failure():
    assert False
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """Our conftest and pytest markers, in a tree laid out as ours."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    markers = "".join(f"    {m}\n" for m in options["markers"])
    plugins = "-p no:cacheprovider -p no:hypothesispytest -p no:asyncio -p no:timeout"  # a fast inner run
    pytester.makeini(f"[pytest]\naddopts = --strict-markers {plugins}\nmarkers =\n{markers}")
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(CONFTEST.read_text())
    return pytester


def put(pytester: pytest.Pytester, relpath: str, text: str) -> None:
    path = pytester.path / "tests" / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("tier", ["e2e", "interop", "bench"])
def test_in_ci_a_skip_in_a_guarded_tier_fails_the_run(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tier: str
) -> None:
    monkeypatch.setenv("CI", "true")
    put(suite, f"{tier}/test_{tier}_skips.py", SKIPS)
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, failed=1, errors=2, skipped=0)  # skips at set-up: errors
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true): needs sometool on PATH*"])
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true): Node.js (`node`) is not installed*"])
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true): the samples are not there*"])


def test_in_ci_a_declared_skip_passes_and_is_listed(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    put(suite, "e2e/test_allowed.py", ALLOWED)
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*= allowed skips =*",
            "tests/e2e/test_allowed.py::test_declared_skip: the kernel of this CI image has no SCTP "
            "(skipped: no SCTP module)",
        ]
    )


def test_in_ci_other_tiers_skip_as_before(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    put(suite, "unit/test_unit_skips.py", SKIPS)
    put(suite, "integration/test_integration_skips.py", SKIPS)
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=2, skipped=6)


def test_outside_ci_nothing_changes(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    put(suite, "e2e/test_skips.py", SKIPS)
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=3)


def test_in_ci_a_module_skipped_at_collection_is_an_error(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    put(suite, "bench/test_module.py", 'import pytest\npytest.skip("no wrk", allow_module_level=True)\n')
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*skipped in CI (CI=true): no wrk*"])


def test_an_allowed_skip_needs_its_reason(suite: pytest.Pytester) -> None:
    put(suite, "e2e/test_bare.py", "import pytest\n\n@pytest.mark.allowed_skip\ndef test_x():\n    pass\n")
    result = suite.runpytest("tests")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(['*allowed_skip("...") needs its reason*'])
