"""`scripts/sysdeps.sh` installs every binary ambit and its tests run (declared once, in
`ambit.runtime.sysdeps`); in CI each is on PATH."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ambit.bench.mesh_cluster import REQUIRED_TOOLS
from ambit.runtime import sysdeps

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "sysdeps.sh"

# Where code names a binary it runs: shutil.which("X"); `ambit exec ... -- X`; an argv ["X", "-o", ...];
# a subprocess call whose argv list opens with "X".
_NAMED = (
    re.compile(r'which\(\s*"([\w.+-]+)"\s*\)'),
    re.compile(r'"--",\s*"([\w.+-]+)"'),
    re.compile(r'\[\s*"([a-z][\w.+-]*)",\s*"-'),
    re.compile(r'(?:subprocess\.\w+|run_cmd|popen|\brun|run_in)\(\s*(?:[\w.()]+,\s*)?\[\s*"([\w.+-]+)"'),
)
# What those patterns also find that is no host binary: ambit itself (pip installs it) and the
# subcommands of `ambit ...` invoked through click's CliRunner.
_NOT_BINARIES = {"ambit", "app", "init", "issue"}


def want_table() -> dict[str, str]:
    """sysdeps.sh's ``WANT`` table: command -> Debian package."""
    text = SCRIPT.read_text()
    body = re.search(r"^declare -A WANT=\($(.*?)^\)$", text, re.MULTILINE | re.DOTALL)
    assert body is not None, "no WANT table in sysdeps.sh"
    return dict(re.findall(r"^\s*\[([\w.+-]+)\]=([\w.+-]+)\s*$", body.group(1), re.MULTILINE))


def named_in_code() -> dict[str, set[str]]:
    """Binary -> the files under src/ and tests/ that run it (as far as the patterns above see)."""
    named: dict[str, set[str]] = {}
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if "pb" in path.relative_to(ROOT).parts or path == Path(__file__).resolve():
            continue
        text = path.read_text()
        for pattern in _NAMED:
            for match in pattern.finditer(text):
                named.setdefault(match.group(1), set()).add(str(path.relative_to(ROOT)))
    return {name: files for name, files in named.items() if name not in _NOT_BINARIES}


def test_the_script_installs_exactly_the_declared_binaries() -> None:
    table = want_table()
    assert set(table) == sysdeps.REQUIRED, {
        "declared, not installed": sorted(sysdeps.REQUIRED - set(table)),
        "installed, not declared": sorted(set(table) - sysdeps.REQUIRED),
    }
    assert table["sysctl"] == "procps"


def test_every_binary_the_code_runs_is_declared() -> None:
    named = named_in_code()
    assert {"ip", "nft", "sysctl", "tcpdump", "curl", "node", "openssl"} <= set(named)  # the scan sees them
    undeclared = {name: sorted(files) for name, files in named.items() if name not in sysdeps.REQUIRED}
    assert not undeclared, f"add these to ambit.runtime.sysdeps and scripts/sysdeps.sh: {undeclared}"


def test_the_benchmarks_tool_list_is_declared() -> None:
    assert set(REQUIRED_TOOLS) <= set(sysdeps.BENCH) | set(sysdeps.RUNTIME)


def test_in_ci_every_declared_binary_is_on_path() -> None:
    missing = sysdeps.missing(sorted(sysdeps.REQUIRED))
    if os.environ.get("CI", "").strip().lower() not in {"1", "true", "yes"}:
        if missing:
            pytest.skip(f"not CI; missing {', '.join(missing)} (scripts/sysdeps.sh installs them)")
        return
    assert not missing, f"scripts/sysdeps.sh did not install {missing}"
