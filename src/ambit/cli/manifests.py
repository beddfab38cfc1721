"""Reading ``-f`` manifests for a command: files, directories, stdin, and the ``-n`` namespace rule."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from ambit.cli.store_session import fail
from ambit.store.types import Obj

_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def _manifest_files(spec: str) -> list[Path]:
    path = Path(spec)
    if path.is_dir():
        found = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _MANIFEST_SUFFIXES]
        return sorted(found)
    if not path.exists():
        fail(f'error: the path "{spec}" does not exist')
    return [path]


def read_manifests(specs: Iterable[str]) -> list[tuple[str, Obj]]:
    """Every object of every ``-f`` argument, with the file it came from; the first error stops it."""
    from ambit.resources import ManifestError, parse_manifests

    out: list[tuple[str, Obj]] = []
    stdin_used = False
    for spec in specs:
        if spec == "-":
            if stdin_used:
                fail("error: '-' (stdin) can be given only once")
            stdin_used = True
            sources = [("STDIN", sys.stdin.read())]
        else:
            sources = []
            for path in _manifest_files(spec):
                try:
                    sources.append((str(path), path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError) as exc:
                    fail(f"error: cannot read {path}: {exc}")
        for source, text in sources:
            try:
                objects = parse_manifests(text, source=source)
            except ManifestError as exc:
                fail(f"error: {exc}")
            out.extend((source, obj) for obj in objects)
    return out


def in_namespace(items: list[tuple[str, Obj]], namespace: str | None) -> list[tuple[str, Obj]]:
    """``-n NS``: objects without a namespace (defaulted) go to NS; another namespace is an error."""
    if not namespace:
        return items
    from ambit.resources import is_namespaced

    out = []
    for source, obj in items:
        meta = obj.get("metadata") or {}
        current = meta.get("namespace")
        if is_namespaced(str(obj.get("kind"))) and current != namespace:
            if current not in (None, "", "default"):
                fail(
                    f'error: {source}: the namespace from the provided object "{current}" does not match '
                    f"the namespace \"{namespace}\". You must pass '--namespace={current}' to perform this "
                    "operation."
                )
            out.append((source, {**obj, "metadata": {**meta, "namespace": namespace}}))
        else:
            out.append((source, obj))
    return out
