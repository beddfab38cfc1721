"""`make demo`'s own success criteria, on a real cluster: the demo's logic (:meth:`Demo.collect`, not
its printed text) run on a cluster named by the fixture, then every promise asserted: each pair of
bookinfo calls talked (answered, the marker received, an mTLS connection in the destination ztunnel's
metrics), only the runtime's declared ``FABRIC_PORTS`` crossed the fabric (HBONE among them), and the
marker was never found in the captured bytes. The check itself is shown able to fail by the unit tests
of :func:`ambit.runtime.demo.problems` (tests/unit/runtime/test_demo_check.py).
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable

import pytest
from rich.console import Console

from ambit.runtime.demo import CALLS, MUTUAL_TLS, Demo, problems
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
    with temporary_cluster(cluster_name("d"), tmp_path_factory.mktemp("run")) as name:
        result = Demo(name, SAMPLES, Console(file=out, width=200)).collect()
    assert problems(result) == [], out.getvalue()
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
