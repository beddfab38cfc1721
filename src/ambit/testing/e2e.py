"""Helpers for the root e2e tests that drive real clusters.

A running cluster is read and driven through :class:`ambit.runtime.handle.ClusterHandle` (pods,
objects, apply/label/delete, exec, stop/start/kill/restart, status); :func:`ambit` runs the CLI where
the CLI itself is under test (its output: `get` tables, `logs`, `ztunnel-config`, `status` text) or
where it is the way in (`ambit up` detaches the daemon and waits for ready pods).
:func:`temporary_cluster` takes the cluster down in-process; :func:`wait_meshed` waits until pods are
captured and served by their ztunnels (the namespace label alone says neither)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ambit.runtime.handle import ClusterHandle

AMBIT = str(Path(sys.executable).parent / "ambit")
# Istio's samples, beside the repository (../shared/samples/istio), as CI lays them out.
SAMPLES = Path(__file__).resolve().parents[3].parent / "shared" / "samples" / "istio"


def ambit(
    cluster: str, *args: str, check: bool = True, timeout: float = 180.0, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ambit --cluster CLUSTER ARGS...`; with `check`, a non-zero exit fails with its output."""
    proc = subprocess.run(
        [AMBIT, "--cluster", cluster, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        input=stdin,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"ambit {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@contextlib.contextmanager
def temporary_cluster(name: str, run_dir: Path) -> Iterator[str]:
    """Point ``AMBIT_RUN_DIR`` at ``run_dir`` for the block; afterwards (even after a failure) take the
    cluster down (``ClusterHandle.down``, as `ambit down`) and restore the variable. The
    block brings the cluster up."""
    old = os.environ.get("AMBIT_RUN_DIR")
    os.environ["AMBIT_RUN_DIR"] = str(run_dir)
    try:
        yield name
    finally:
        try:
            ClusterHandle(name).down()
        except Exception as exc:  # the module's netns guard reports anything left behind
            print(f"taking {name} down: {exc}")
        if old is None:
            os.environ.pop("AMBIT_RUN_DIR", None)
        else:
            os.environ["AMBIT_RUN_DIR"] = old


def wait_for(predicate: Callable[[], bool], what: str, within: float = 60.0, interval: float = 0.3) -> None:
    """Poll `predicate` (a cluster has no event for arbitrary conditions) until true or `within` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def meshed(cluster: str, namespace: str, enrolled: bool = True, count: int | None = None) -> bool:
    """Whether every pod of ``namespace`` (``count`` of them, if given) shows ``enrolled`` both in the
    status (the namespace label, seen at once) and in the data plane (:meth:`ClusterHandle.meshed`:
    captured and served by its node's ztunnel, or neither). Only the second says traffic may start."""
    handle = ClusterHandle(cluster)
    labelled = handle.status().ambient(namespace)
    if not labelled or not all(on is enrolled for on in labelled.values()):
        return False
    state = handle.meshed(namespace)
    return (count is None or len(state) == count) and all(v is enrolled for v in state.values())


def wait_meshed(
    cluster: str, namespace: str, enrolled: bool = True, count: int | None = None, within: float = 30.0
) -> None:
    """Until :func:`meshed` (each pod captured and served, or with ``enrolled`` False, neither)."""
    what = f"the pods of {namespace} {'in' if enrolled else 'out of'} the mesh (captured and served)"
    wait_for(lambda: meshed(cluster, namespace, enrolled, count), what, within)


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ambient_namespace(name: str) -> str:
    """The manifest of a Namespace enrolled in the ambient mesh (Istio's label)."""
    return (
        f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n"
        "    istio.io/dataplane-mode: ambient\n"
    )
