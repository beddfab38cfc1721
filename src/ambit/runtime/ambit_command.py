"""How the runtime runs this same `ambit` for the processes it starts (daemon, control plane, ztunnels)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path


def ambit_argv() -> list[str]:
    """How to run this same `ambit` (the venv's console script, else through the interpreter)."""
    script = Path(sys.executable).parent / "ambit"
    if script.exists():
        return [str(script)]
    found = shutil.which("ambit")
    return [found] if found else [sys.executable, "-c", "from ambit.cli import main; main()", "--"]


def ztunnel_available() -> bool:
    return importlib.util.find_spec("ambit.cli.ztunnel") is not None
