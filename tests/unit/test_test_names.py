"""The test tree has no __init__.py files, so pytest imports each test module by its file name: two test
files with one name in different folders break collection for the whole run. Keep them unique."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_name_is_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [name for name, n in names.items() if n > 1], sorted(n for n, c in names.items() if c > 1)
