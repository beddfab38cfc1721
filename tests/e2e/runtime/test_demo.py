"""`make demo`'s own success criteria, on a real cluster: the demo's logic (:meth:`Demo.collect`, not
its printed text) run on a cluster named by the fixture, then every promise asserted: each pair of
bookinfo calls talked (answered, the marker received, an mTLS connection in the destination ztunnel's
metrics), only the runtime's declared ``FABRIC_PORTS`` crossed the fabric (HBONE among them), and the
marker was never found in the captured bytes. The check itself is shown able to fail by the unit tests
of :func:`ambit.runtime.demo.problems` (tests/unit/runtime/test_demo_check.py).

Then the demo's last act, the claim (:mod:`ambit.chaos.claim`): a ztunnel-kill under all-pairs load must
PASS its verdict. All of it printed at 80 columns, as `make demo` piped with ``COLUMNS=80``: no line is
longer, and every SPIFFE id prints whole.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable

import pytest
from rich.console import Console

from ambit.chaos.claim import show_claim
from ambit.runtime.demo import CALLS, MUTUAL_TLS, Demo, problems
from ambit.runtime.handle import ClusterHandle
from ambit.runtime.layout import FABRIC_PORTS, HBONE_PORT
from ambit.testing.e2e import SAMPLES, temporary_cluster

pytestmark = pytest.mark.root


def test_demo_keeps_its_promises(
    tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]
) -> None:
    if shutil.which("tcpdump") is None:
        pytest.skip("needs tcpdump (make setup installs it)")
    if not (SAMPLES / "bookinfo.yaml").exists():
        pytest.skip(f"the Istio samples are not at {SAMPLES}")
    out = io.StringIO()
    console = Console(file=out, width=80)  # as `make demo` piped with COLUMNS=80
    with temporary_cluster(cluster_name("d"), tmp_path_factory.mktemp("run")) as name:
        result = Demo(name, SAMPLES, console).collect()
        claim = show_claim(ClusterHandle(name), console, tmp_path_factory.mktemp("chaos"))
    shown = out.getvalue()
    assert problems(result) == [], shown
    # the claim: a ztunnel killed under all-pairs load, judged against the computed prediction
    assert claim.verdict.passed, "\n".join(claim.verdict.reasons)
    assert claim.verdict.failed > 0, "the kill touched nothing: the fault missed"
    assert "PASS ztunnel-kill" in shown and "predicted" in shown
    # 80 columns: no line longer, every verified SPIFFE id printed whole
    long = [line for line in shown.splitlines() if len(line) > 80]
    assert not long, long
    for talker in result.talkers:
        assert talker.principal.startswith("spiffe://") and talker.principal in shown, talker
    # every pair talked: each call answered, with the marker, and seen as an mTLS connection
    assert [c.url for c in result.calls] == [url for _, url in CALLS]
    assert all(c.marker_seen for c in result.calls), result.calls
    mtls = {
        (t.source, t.destination) for t in result.talkers if t.security == MUTUAL_TLS and t.connections > 0
    }
    for call in result.calls:
        assert (call.source, call.answered_workload) in mtls, (call, result.talkers)
    # only the fabric ports between nodes, HBONE among them
    assert result.ports[HBONE_PORT] > 0, result.ports
    assert set(result.ports) <= FABRIC_PORTS, f"plaintext between nodes: {result.ports}"
    # the marker never crossed in plaintext
    assert result.captured_bytes > 0
    assert not result.marker_found
