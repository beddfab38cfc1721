"""The root tiers' guard, shared by ``tests/e2e`` and ``tests/chaos`` (each conftest imports its names):

- Tests marked ``root`` are skipped, with the reason, when not root or when a binary the runtime runs
  (``ambit.runtime.sysdeps.RUNTIME``) is missing. In CI such a skip is an error (tests/conftest.py).
- Every cluster a test creates must be named with the ``cluster_name`` fixture (it carries this run's id), so
  the module guard can tell our namespaces from anyone else's.
- The module guard (autouse) fails the module if any namespace of this run is left over (and deletes
  those, ours only), or if the host namespace's addresses, routes, rules, nftables or forwarding
  sysctls differ from before the module.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator

import pytest

from ambit.runtime import sysdeps

RUN_ID = "t" + secrets.token_hex(2)  # 5 chars: cluster names stay within the 12-character limit


def make_cluster_name(suffix: str = "") -> str:
    name = RUN_ID + suffix
    assert len(name) <= 12, name
    return name


@pytest.fixture(scope="session")
def cluster_name() -> Callable[[str], str]:
    """``cluster_name("b")``: a cluster name carrying this run's id."""
    return make_cluster_name


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    missing = sysdeps.missing(sysdeps.RUNTIME)
    if missing:
        return f"needs {', '.join(missing)} on PATH"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        reason = _skip_reason()
        if reason:
            pytest.skip(reason)


def _run_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


@pytest.fixture(scope="module", autouse=True)
def netns_guard() -> Iterator[None]:
    if _skip_reason() is not None:
        yield
        return
    from ambit.runtime import hostcheck

    before = hostcheck.snapshot()
    yield
    ours = [n for n in _run_netns() if n.startswith(f"ambit-{RUN_ID}")]
    for name in ours:  # left behind by a broken teardown: remove them (they carry this run's id)
        subprocess.run(["ip", "netns", "del", name], check=False)
    after = hostcheck.snapshot()
    assert not ours, f"namespaces left over after the module: {ours}"
    assert before == after, "host namespace changed:\n" + "\n".join(before.diff(after))
