"""Open-loop load from inside a pod, for the e2e tests that claim "0 failed": `ambit app load` started
in a pod's network namespace (so its traffic is captured like the app's), every request recorded, and
the assertion that nothing failed and nothing was hidden by a client retry."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ambit.apps.load import LoadResult
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import AMBIT


@dataclass
class RunningLoad:
    proc: subprocess.Popen[str]
    out: Path
    rate: int
    duration: float

    def finish(self) -> LoadResult:
        stdout, stderr = self.proc.communicate(timeout=self.duration + 60)
        assert self.out.exists(), f"the load client wrote no records:\n{stdout}\n{stderr}"
        return LoadResult.from_json(self.out.read_text())

    def stop(self) -> None:
        """Kill the client (a test that failed early); only this process, by its pid."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=10)


def start_load(
    cluster: str,
    pod: str,
    namespace: str,
    url: str,
    out: Path,
    *,
    rate: int = 100,
    duration: float = 12.0,
    connections: int = 8,
    mode: str = "mixed",
) -> RunningLoad:
    args = [AMBIT, "app", "load", url, "--rate", str(rate), "--duration", str(duration), "--mode", mode]
    args += ["--connections", str(connections), "--timeout", "5", "--json", str(out)]
    proc = ClusterHandle(cluster).popen(
        args, pod=pod, namespace=namespace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return RunningLoad(proc, out, rate, duration)


def assert_no_failures(result: LoadResult, rate: int, duration: float) -> None:
    """≥ 95 % of the requests scheduled, none failed, new and kept-alive connections both used, and no
    request retried on a new connection (a retry would hide a dropped connection)."""
    assert result.total >= rate * duration * 0.95, f"only {result.total} requests scheduled"
    failures = [(round(r.scheduled, 2), r.outcome, r.detail) for r in result.failures][:10]
    assert result.failed == 0, f"{result.failed} of {result.total} failed: {failures}"
    kinds = result.connections()
    assert kinds.get("new", 0) > 0 and kinds.get("reused", 0) > 0, kinds
    retried = [(r.index, round(r.scheduled, 2), r.outcome) for r in result.records if r.retried][:10]
    assert result.retried == 0, f"{result.retried} requests retried on a new connection: {retried}"
