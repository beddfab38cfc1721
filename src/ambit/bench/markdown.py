"""Output shared by the benchmarks: tables (markdown and rich), the versions a report names, and
replacing one generated block in BENCHMARKS.md.

Each benchmark owns a `## ...` section and, inside it, a block between two marker comments. Only that
block is regenerated, so hand-written analysis around it and every other section survive a re-run.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable
from pathlib import Path

from rich.table import Table


def package_version(dist: str) -> str:
    """The installed version of the distribution ``dist``, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def table(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body]
    return "\n".join(lines)


def rich_tables(
    specs: Iterable[tuple[str, list[str], list[list[str]]]], left: Iterable[str] = ()
) -> list[Table]:
    """One rich table per (title, headers, rows); the first column and those named in `left` are
    left-aligned, numbers right-aligned."""
    left_names = set(left)
    tables = []
    for title, headers, body in specs:
        rich_table = Table(title=title)
        for i, h in enumerate(headers):
            rich_table.add_column(h, justify="left" if i == 0 or h in left_names else "right")
        for row in body:
            rich_table.add_row(*row)
        tables.append(rich_table)
    return tables


def replace_generated(path: Path, title: str, begin_marker: str, end_marker: str, generated: str) -> None:
    """Put `generated` between the markers of section `title` in `path` (creating what is missing)."""
    block = f"{begin_marker}\n\n{generated}\n\n{end_marker}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    start = text.find(title + "\n")
    if start < 0:
        path.write_text(text.rstrip("\n") + f"\n\n{title}\n\n{block}\n", encoding="utf-8")
        return
    body_start = start + len(title) + 1
    following = re.search(r"^## ", text[body_start:], flags=re.MULTILINE)
    end = body_start + following.start() if following else len(text)
    section = text[body_start:end]
    begin, finish = section.find(begin_marker), section.find(end_marker)
    if 0 <= begin < finish:
        section = section[:begin] + block + section[finish + len(end_marker) :]
    else:
        section = f"\n{block}\n\n"
    path.write_text(text[:body_start] + section + text[end:], encoding="utf-8")
