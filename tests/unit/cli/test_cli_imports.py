"""What starting `ambit` loads: every ambit process (a ztunnel's too) imports the CLI, so what the CLI
imports at start is paid in memory by every proxy. Manifest validation (pydantic) loads only when used."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = (
    "import json, sys; import ambit.cli, ambit.cli.ztunnel, ambit.ztunnel.app; "
    "print(json.dumps(sorted(m for m in ('pydantic', 'pydantic_core') if m in sys.modules)))"
)


def test_starting_ambit_does_not_load_pydantic() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []


def test_the_probe_sees_pydantic_once_manifests_are_parsed() -> None:
    """The control case: the same probe reports pydantic once something parses a manifest."""
    probe = PROBE.replace("ambit.ztunnel.app;", "ambit.ztunnel.app, ambit.resources.manifest;")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "pydantic" in json.loads(out)
