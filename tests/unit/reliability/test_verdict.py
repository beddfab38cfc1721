"""The verdict: observations judged against a prediction. Failures inside windows pass; failures outside
(a wrong prediction, a window's boundary), successes in a must-fail window and a run that did not cover
the topology fail; the matrix and the counts the report shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from ambit.reliability.flows import (
    CONN_KINDS,
    ConnKind,
    Destination,
    FaultEvents,
    Observation,
    Prediction,
    Timing,
    Topology,
    WaypointPlacement,
)
from ambit.reliability.predict import predict
from ambit.reliability.verdict import judge

S, E = 100.0, 110.0
NODES = ("node1", "node2", "node3")
TOPOLOGY = Topology(
    nodes=NODES,
    sources=NODES,
    destinations=(
        *(Destination(f"echo-{node}", "service", (node,)) for node in NODES),
        *(Destination(f"pod-{node}", "pod", (node,)) for node in NODES),
        Destination("spread", "service", ("node1", "node2")),
        Destination("waypointed", "service", NODES, WaypointPlacement("wp", ("node1", "node2"))),
    ),
)


def prediction_of(
    experiment: str, node: str = "", target: str = "", marks: tuple[tuple[str, float], ...] = ()
) -> Prediction:
    return predict(TOPOLOGY, FaultEvents(experiment, target or node, node, S, E, marks=marks), Timing())


def served_by(source: str, destination: Destination) -> str:
    """The node that answers: the local endpoint if there is one (the client ztunnel prefers it)."""
    return source if source in destination.endpoint_nodes else destination.endpoint_nodes[0]


def healthy(times: Iterable[float] = (50.0, 200.0)) -> list[Observation]:
    """An answered request of every flow at each time."""
    return [
        Observation(source, d.name, kind, t, t + 0.01, ok=True, served_node=served_by(source, d))
        for t in times
        for source in TOPOLOGY.sources
        for d in TOPOLOGY.destinations
        for kind in CONN_KINDS
    ]


def failure(
    source: str, destination: str, kind: ConnKind, start: float, end: float | None = None
) -> Observation:
    return Observation(
        source,
        destination,
        kind,
        start,
        start + 0.5 if end is None else end,
        ok=False,
        outcome="timeout",
        error="no answer in 3 s",
    )


def keys(observations: Sequence[Observation]) -> set[tuple[str, str, str]]:
    return {(o.source, o.destination, o.kind) for o in observations}


def test_failures_inside_the_windows_pass() -> None:
    failures = [
        failure("node1", "echo-node2", "new", 101.0),
        failure("node2", "echo-node1", "keepalive", 104.0, 107.0),
        failure("node3", "spread", "keepalive", 100.5, 103.5),
    ]
    verdict = judge(prediction_of("ztunnel-kill", "node1"), TOPOLOGY, [*healthy(), *failures])
    assert verdict.passed, verdict.reasons
    assert verdict.reasons == ()
    assert verdict.unexpected == () and verdict.bypassed == ()
    assert (verdict.total, verdict.failed) == (len(healthy()) + 3, 3)
    assert verdict.recovery_seconds == pytest.approx(7.0)
    assert verdict.columns == ("node1", "node2", "node3", "spread", "waypointed")
    assert verdict.matrix[("node1", "node2")].failed == 1
    assert verdict.matrix[("node1", "node2")].predicted
    assert verdict.matrix[("node3", "spread")].failed == 1
    assert not verdict.matrix[("node2", "node3")].predicted
    assert verdict.matrix[("node2", "node3")].total == 2 * 2 * 2  # echo- and pod-node3, two kinds, twice
    assert verdict.pairs_touched == 2  # (node1, node2) and (node2, node1); spread is no node column
    assert verdict.pairs_predicted == 5
    assert verdict.pair_bound == pytest.approx(5 / 9)
    assert ("node1", "echo-node2", "new") not in {
        (k.source, k.destination, k.kind) for k in verdict.unobserved
    }
    assert ("node2", "pod-node1", "new") in {(k.source, k.destination, k.kind) for k in verdict.unobserved}
    assert verdict.crossed[("node1", "node3")] == 2 * 2 * 2  # echo-, pod-node3 (spread, waypointed: local)
    assert ("node1", "") not in verdict.crossed


def test_a_wrong_prediction_fails_naming_the_unexpected_flows() -> None:
    """The failures are node1's (its ztunnel was killed); the prediction puts the fault on node2."""
    failures = [
        failure("node3", "echo-node1", "new", 101.0),
        failure("node3", "echo-node1", "new", 102.0),
        failure("node1", "echo-node3", "keepalive", 103.0),
        failure("node2", "echo-node1", "new", 101.0),  # from node2: the wrong prediction allows it too
    ]
    verdict = judge(prediction_of("ztunnel-kill", "node2"), TOPOLOGY, [*healthy(), *failures])
    assert not verdict.passed
    assert keys(verdict.unexpected) == {("node3", "echo-node1", "new"), ("node1", "echo-node3", "keepalive")}
    assert len(verdict.reasons) == 2
    assert verdict.reasons[0].startswith("node1 -> echo-node3 (keepalive): 1 unexpected failure(s)")
    assert verdict.reasons[1].startswith(
        "node3 -> echo-node1 (new): 2 unexpected failure(s), the first +1.0 s"
    )
    assert "timeout: no answer in 3 s" in verdict.reasons[1]
    # the same observations against the right prediction pass
    assert judge(prediction_of("ztunnel-kill", "node1"), TOPOLOGY, [*healthy(), *failures]).passed


def test_a_success_in_a_must_fail_window_is_a_bypass() -> None:
    prediction = prediction_of("waypoint-down", target="wp", marks=(("down", 103.0),))  # must fail 108-110
    bypass = Observation("node2", "waypointed", "new", 108.5, 109.0, ok=True, served_node="node1")
    may_fail_success = Observation("node2", "waypointed", "new", 106.0, 106.5, ok=True, served_node="node1")
    verdict = judge(prediction, TOPOLOGY, [*healthy(), bypass, may_fail_success])
    assert not verdict.passed
    assert verdict.bypassed == (bypass,)
    assert verdict.reasons == (
        "node2 -> waypointed (new): 1 bypass(es): success inside a must-fail window, the first +8.5 s "
        "from the fault's start (ok)",
    )


def test_a_failure_in_a_must_fail_window_passes() -> None:
    prediction = prediction_of("waypoint-down", target="wp", marks=(("down", 103.0),))
    verdict = judge(prediction, TOPOLOGY, [*healthy(), failure("node2", "waypointed", "new", 108.5)])
    assert verdict.passed, verdict.reasons


def test_a_missing_cross_node_pair_fails() -> None:
    """node1's requests to node3's destinations all failed (inside the windows): nothing proves that
    traffic from node1 reaches node3."""
    observations = [
        failure(o.source, o.destination, o.kind, 101.0)
        if (o.source, o.served_node) == ("node1", "node3")
        else o
        for o in healthy()
    ]
    verdict = judge(prediction_of("ztunnel-kill", "node3"), TOPOLOGY, observations)
    assert not verdict.passed
    assert verdict.unexpected == ()
    assert verdict.reasons == ("no answered request from node1 to node3: the run did not prove that pair",)


@pytest.mark.parametrize(
    ("start", "end", "passed"),
    [
        (111.5, 111.99, True),  # just before the window's end (E + slack = 112)
        (111.0, 112.0, True),  # ends on it
        (112.0, 112.5, True),  # starts on it
        (112.01, 112.5, False),  # just after it
        (99.0, 99.99, False),  # just before the fault
    ],
)
def test_window_boundary(start: float, end: float, passed: bool) -> None:
    observations = [*healthy(), failure("node2", "echo-node1", "new", start, end)]
    verdict = judge(prediction_of("ztunnel-kill", "node1"), TOPOLOGY, observations)
    assert verdict.passed is passed, verdict.reasons
    assert len(verdict.unexpected) == (0 if passed else 1)


def test_windows_to_the_end_of_the_run() -> None:
    prediction = prediction_of("app-rollout")
    late_pod_failures = [failure(source, "pod-node2", "new", 1e6) for source in NODES]
    verdict = judge(prediction, TOPOLOGY, [*healthy((50.0,)), *late_pod_failures])
    assert verdict.passed, verdict.reasons
    assert verdict.recovery_seconds == pytest.approx(1e6 + 0.5 - S)
    service_failure = failure("node1", "echo-node2", "new", 150.0)
    verdict = judge(prediction, TOPOLOGY, [*healthy((50.0,)), *late_pod_failures, service_failure])
    assert verdict.unexpected == (service_failure,)


def test_no_observations_fail_for_coverage() -> None:
    verdict = judge(prediction_of("ztunnel-kill", "node1"), TOPOLOGY, [])
    assert not verdict.passed
    assert verdict.reasons[0].startswith("48 flows never observed: node1 -> echo-node1 (new), ")
    assert verdict.reasons[0].endswith(" and 38 more")
    assert verdict.reasons[1:] == tuple(
        f"no answered request from {a} to {b}: the run did not prove that pair"
        for a in NODES
        for b in NODES
        if a != b
    )
    assert (verdict.total, verdict.failed, verdict.recovery_seconds) == (0, 0, None)
    assert verdict.pairs_touched == 0
    assert all(cell.total == 0 for cell in verdict.matrix.values())
    assert len(verdict.matrix) == 3 * 5


def test_a_flow_never_observed_fails() -> None:
    observations = [o for o in healthy() if (o.source, o.destination, o.kind) != ("node2", "spread", "new")]
    verdict = judge(prediction_of("controlplane-down"), TOPOLOGY, observations)
    assert verdict.reasons == ("1 flows never observed: node2 -> spread (new)",)


def test_nothing_predicted_and_nothing_failed_passes() -> None:
    verdict = judge(prediction_of("controlplane-down"), TOPOLOGY, healthy())
    assert verdict.passed
    assert verdict.unobserved == ()
    assert verdict.pairs_predicted == 0
    assert verdict.recovery_seconds is None
