"""The reduced chaos suite, in `make test`: every experiment of `ambit chaos suite --short` on one 3-node
cluster, judged by the engine against its computed prediction (:mod:`ambit.reliability.predict`).

Each test asserts the verdict (every failure inside the prediction, pair and window; nothing outside;
no bypass) **and** that the load really crossed every ordered node pair: for each (i, j), i != j, some
request from node i's load pod was answered by the server on node j (the answer names its node).
The probe never retries (a kept-alive connection closed under a request is a failure), and each flow's
request count is checked against its schedule, so nothing was hidden or dropped.

Each fault is shown to have happened where the prediction says it may (the control: a ztunnel-kill
with no failure from its node would mean the fault missed), and the experiments whose prediction is
"nothing fails" (graceful restart, control plane down, CA down, one waypoint replica killed) carry the
claim: 0 failed across every pair. The drain and the rolling restart lose no Service request (only the
pod IPs of replaced pods go). The cluster runs 60 s certificates, so the outages refuse real refreshes.
A unit test (tests/unit/reliability/test_verdict.py) shows the verdict failing a deliberately wrong
prediction.

The last test keeps the fail-closed check of the old resilience tests: a pod whose ztunnel is held
down reaches nothing, and nothing of it crosses the fabric in plaintext.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ambit.chaos import workload
from ambit.chaos.engine import RunOptions, run_experiment
from ambit.chaos.report_json import dump_json, report_json
from ambit.chaos.run import ChaosRun
from ambit.chaos.suite import SUITE, options_for
from ambit.reliability.predict import IN_FLIGHT
from ambit.runtime import pcap
from ambit.runtime.control import ControlError
from ambit.runtime.handle import ClusterHandle
from ambit.testing.e2e import ambit, temporary_cluster, wait_for

pytestmark = pytest.mark.root

NODES = ("node1", "node2", "node3")
TARGET = "node2"  # hosts a `spread` endpoint; node3 has none, so its spread traffic crosses nodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, cluster_name: Callable[[str], str]) -> Iterator[str]:
    with temporary_cluster(cluster_name("c"), tmp_path_factory.mktemp("run")) as name:
        # ca-down needs the CA's fault switch; 60 s certificates are refreshed every ~30 s, so the
        # control-plane and CA outages below exercise a refused refresh and the refresh after them.
        ambit(name, "up", "--nodes", "3", "--test-fault-endpoints", "--workload-cert-ttl", "60s")
        yield name


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos-report")


def run(cluster: str, experiment: str, reports: Path) -> ChaosRun:
    options = options_for(experiment, "short", RunOptions(experiment, TARGET))
    result = run_experiment(ClusterHandle(cluster), options, reports / experiment / "run-1")
    # report.json only (to look at a failure); the markdown and the images are the unit tests' (and they
    # cost a second or two per experiment in `make test`).
    (reports / experiment / "report.json").write_text(dump_json(report_json([result])))
    return result


def assert_crossed_every_pair(result: ChaosRun) -> None:
    crossed = result.verdict.crossed
    missing = [(i, j) for i in NODES for j in NODES if i != j and crossed.get((i, j), 0) == 0]
    assert not missing, f"no answered request for these (from, to) node pairs: {missing}; {crossed}"


def assert_every_flow_ran_its_schedule(result: ChaosRun, gap_on: str = "") -> None:
    """Every flow has (about) its rate times the run's length of requests; a flow from ``gap_on`` (its
    probe was killed by the fault) instead has requests before the fault and after it."""
    counts: dict[tuple[str, str, str], int] = {}
    for obs in result.observations:
        key = (obs.source, obs.destination, obs.kind)
        counts[key] = counts.get(key, 0) + 1
    expected = len(result.topology.sources) * len(result.topology.destinations) * 2
    assert len(counts) == expected, f"{len(counts)} flows recorded, {expected} expected"
    span = max(o.end for o in result.observations) - result.origin
    floor = int(result.load.rate * (span - result.load.timeout - 2) * 0.9)
    short = {k: n for k, n in counts.items() if n < floor and k[0] != gap_on}
    assert not short, f"flows with fewer than {floor} requests over {span:.0f} s: {short}"
    if gap_on:
        flows = {o.key for o in result.observations if o.source == gap_on}
        before = {o.key for o in result.observations if o.source == gap_on and o.end < result.events.start}
        after = {o.key for o in result.observations if o.source == gap_on and o.start > result.events.end}
        assert before == flows == after, (
            f"{gap_on}: {len(flows)} flows, {len(before)} before, {len(after)} after"
        )


def assert_passed(result: ChaosRun, gap_on: str = "") -> None:
    verdict = result.verdict
    assert verdict.passed, "\n".join(verdict.reasons)
    assert_crossed_every_pair(result)
    assert_every_flow_ran_its_schedule(result, gap_on)


def failed_from(result: ChaosRun, node: str) -> int:
    return sum(1 for o in result.observations if not o.ok and o.source == node)


def test_the_suite_is_what_the_cli_runs() -> None:
    assert list(SUITE) == [
        "ztunnel-kill",
        "ztunnel-restart",
        "node-partition",
        "node-reboot",
        "controlplane-down",
        "ca-down",
        "waypoint-replica-kill",
        "waypoint-down",
        "node-drain",
        "app-rollout",
    ]


def test_ztunnel_kill_touches_only_its_node(cluster: str, reports: Path) -> None:
    result = run(cluster, "ztunnel-kill", reports)
    assert_passed(result)
    assert failed_from(result, TARGET) > 0, "the kill touched nothing: the fault missed"
    assert result.verdict.pairs_touched <= round(result.verdict.pair_bound * 9)


def test_graceful_ztunnel_restarts_lose_nothing(cluster: str, reports: Path) -> None:
    result = run(cluster, "ztunnel-restart", reports)
    assert_passed(result)
    assert result.verdict.failed == 0
    assert len(result.events.spans) == SUITE["ztunnel-restart"]["short"]["restarts"]
    measured = dict(result.events.measures)
    assert measured["connects attempted (10 ms prober)"] > 1000, measured
    assert measured["connects refused"] == 0, measured  # a listener always took the pod's traffic
    assert measured["handover max ms"] <= 1000, measured  # the old listeners close within 1 s


def test_a_partitioned_node_touches_only_its_pairs(cluster: str, reports: Path) -> None:
    result = run(cluster, "node-partition", reports)
    assert_passed(result)
    assert failed_from(result, TARGET) > 0, "the cut touched nothing: the fault missed"
    assert ClusterHandle(cluster).cuts() == set()


def test_a_rebooted_node_fails_closed_and_touches_only_its_pairs(cluster: str, reports: Path) -> None:
    result = run(cluster, "node-reboot", reports)
    # The reboot kills node2's probe with everything else on the node; the engine starts a new one
    # once the node is back. So node2's flows have a gap: they must run before and after it.
    assert_passed(result, gap_on=TARGET)
    measured = dict(result.events.measures)
    assert measured["pods rebooted"] >= 2, measured  # the node's echo and load pods at least
    assert measured["apps started before capture+ACK"] == 0, measured  # istio#60882
    assert measured["plaintext packets from the node on the fabric"] == 0, measured
    assert measured["fabric packets from the node"] > 0, measured  # the control: the capture saw the node
    to_target = [
        o for o in result.observations if not o.ok and o.source != TARGET and TARGET in o.destination
    ]
    assert to_target, "nothing sent to node2 failed: the reboot missed"


def test_the_data_plane_serves_with_the_control_plane_down(cluster: str, reports: Path) -> None:
    result = run(cluster, "controlplane-down", reports)
    assert_passed(result)
    assert result.verdict.failed == 0
    assert any(name == "ztunnel replaced" for name, _ in result.events.marks)
    assert_refreshed_after_the_outage(result)


def assert_refreshed_after_the_outage(result: ChaosRun) -> None:
    """No certificate expired during the outage, and every one whose refresh fell due in it (with 60 s
    certificates refreshed every ~27 s, a 16-20 s outage catches one about two times in three) was
    refreshed after it. That a refresh is refused while the CA refuses, and signed once it serves, is
    shown deterministically by tests/integration/control/test_ca_fault_route.py."""
    measured = dict(result.events.measures)
    assert measured["workload certificate TTL s"] == 60, measured
    assert measured["certificates held"] > 0, measured
    assert measured["certificates expired during the outage"] == 0, measured
    if measured["certificates due for refresh"] > 0:
        assert any(name == "refreshed" for name, _ in result.events.marks), result.events.marks


def test_the_data_plane_serves_while_the_ca_refuses(cluster: str, reports: Path) -> None:
    result = run(cluster, "ca-down", reports)
    assert_passed(result)
    assert result.verdict.failed == 0
    assert_refreshed_after_the_outage(result)


def test_killing_one_waypoint_replica_loses_no_new_connection_after_it(cluster: str, reports: Path) -> None:
    """A request already relayed through the killed replica fails with it (seen: one in 2,400); every new
    connection made after the kill goes to the other replica (the client ztunnel retries a connect)."""
    result = run(cluster, "waypoint-replica-kill", reports)
    assert_passed(result)
    waypointed = result.topology.destination(workload.WAYPOINTED).waypoint
    assert waypointed is not None and len(waypointed.replica_nodes) == 2, waypointed  # one left to serve
    kill = result.events.start
    late = [o for o in result.observations if not o.ok and o.kind == "new" and o.start > kill + IN_FLIGHT]
    assert not late, late[:5]


def test_with_every_waypoint_replica_down_covered_traffic_fails_closed(cluster: str, reports: Path) -> None:
    result = run(cluster, "waypoint-down", reports)
    assert_passed(result)  # includes: no success inside the must-fail window (a bypass)
    covered = [o for o in result.observations if o.destination == workload.WAYPOINTED and not o.ok]
    assert covered, "no covered request failed: the waypoint was not down"
    others = [o for o in result.observations if o.destination != workload.WAYPOINTED and not o.ok]
    assert not others, others[:5]


def test_a_pod_whose_ztunnel_is_down_reaches_nothing_in_plaintext(cluster: str, tmp_path: Path) -> None:
    handle = ClusterHandle(cluster)
    layout = workload.probe_layout(handle.nodes(), handle.objects(["Pod", "Service"]))
    victim = layout.load_pods["node3"]
    target = next(t.url for t in layout.targets if t.name == "echo-node1")
    marker = f"victim-{uuid.uuid4().hex}"

    def curl() -> subprocess.CompletedProcess[str]:
        argv = ["curl", "-sS", "-m", "3", "-H", f"X-Marker: {marker}", target]
        return handle.exec(argv, pod=victim, namespace=workload.NAMESPACE, check=False)

    assert curl().returncode == 0, "the control: with its ztunnel up, the pod reaches echo-node1"
    handle.stop("ztunnel", node="node3")
    try:
        capture = pcap.start(cluster, tmp_path / "fabric.pcap")
        try:
            reply = curl()
        finally:
            pcap.stop(capture)
        assert reply.returncode != 0, "a pod whose ztunnel is down must reach nothing"
        assert "curl: (" in reply.stderr, f"the curl never ran: {reply.stderr}"
        crossed = pcap.summarise(tmp_path / "fabric.pcap")
        assert not crossed.contains(marker), "the victim's request crossed the fabric in plaintext"
        ip = handle.pod(victim, workload.NAMESPACE)["status"]["podIP"]
        assert not [p for p in crossed.packets if ip in (p.src, p.dst)], "nothing of the pod left its node"
    finally:
        with contextlib.suppress(ControlError):
            handle.start("ztunnel", node="node3")
    wait_for(lambda: curl().returncode == 0, "node3's pod to recover after `ambit start`", 40)


def test_a_drained_node_loses_only_its_pinned_endpoints(cluster: str, reports: Path) -> None:
    result = run(cluster, "node-drain", reports)
    assert_passed(result)
    marks = [name for name, _ in result.events.marks]
    assert "eviction refused" in marks, marks  # the PodDisruptionBudget was respected first
    others = [o for o in result.observations if not o.ok and TARGET not in o.destination]
    assert not others, others[:5]  # spread and the other nodes' servers: graceful, 0 failed
    gone = [o for o in result.observations if not o.ok and o.destination == f"pod-{TARGET}"]
    assert gone, "the evicted pod's IP kept answering: nothing was evicted"  # the control


def test_a_rolling_restart_under_load_loses_no_service_request(cluster: str, reports: Path) -> None:
    result = run(cluster, "app-rollout", reports)
    assert_passed(result)
    services = [o for o in result.observations if not o.ok and not o.destination.startswith("pod-")]
    assert not services, services[:5]  # no refused window per terminating pod (istio#54063, #58514)
    replaced = {o.destination for o in result.observations if not o.ok and o.destination.startswith("pod-")}
    assert replaced == {f"pod-{n}" for n in NODES}, replaced  # the control: every old pod's IP went away
