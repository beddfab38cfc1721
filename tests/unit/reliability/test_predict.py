"""The blast-radius prediction: per experiment, which flows get windows and their bounds, computed from the
topology and the fault; the node-scoped bound on the pairs a one-node fault touches; merging of windows."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from ambit.reliability.flows import (
    CONN_KINDS,
    EXPERIMENTS,
    ConnKind,
    Destination,
    FaultEvents,
    FlowKey,
    Prediction,
    Timing,
    Topology,
    WaypointPlacement,
)
from ambit.reliability.predict import (
    matrix_column,
    node_scoped_bound,
    predict,
    predicted_node_pairs,
)

S, E = 100.0, 110.0
TIMING = Timing()  # request_timeout 3, node_grace 8, push_delay 2, hbone 10, dead_peer 5, slack 2


def topology(n: int = 3, waypoint_replicas: Sequence[str] = ("node1", "node2")) -> Topology:
    """The probe's layout on n nodes: echo-/pod- per node, `spread` on every node but the last, and
    `waypointed` with endpoints on every node behind waypoint `wp`."""
    nodes = tuple(f"node{i}" for i in range(1, n + 1))
    destinations = [
        *(Destination(f"echo-{node}", "service", (node,)) for node in nodes),
        *(Destination(f"pod-{node}", "pod", (node,)) for node in nodes),
        Destination("spread", "service", nodes[:-1]),
        Destination("waypointed", "service", nodes, WaypointPlacement("wp", tuple(waypoint_replicas))),
    ]
    return Topology(nodes=nodes, sources=nodes, destinations=tuple(destinations))


def fault(
    experiment: str,
    node: str = "",
    *,
    target: str = "",
    end: float = E,
    marks: tuple[tuple[str, float], ...] = (),
) -> FaultEvents:
    """The fault on ``node`` (or on ``target``) from S until ``end``."""
    return FaultEvents(experiment, target or node, node, S, end, marks=marks)


ALL = ("node1", "node2", "node3")
EVERY_DESTINATION = (
    "echo-node1",
    "echo-node2",
    "echo-node3",
    "pod-node1",
    "pod-node2",
    "pod-node3",
    "spread",
    "waypointed",
)
KEEPALIVE: tuple[ConnKind, ...] = ("keepalive",)
NEW: tuple[ConnKind, ...] = ("new",)
Group = tuple[Sequence[str], Sequence[str], Sequence[ConnKind], Sequence[tuple[float, float]]]


def expand(groups: Sequence[Group]) -> dict[FlowKey, set[tuple[float, float]]]:
    """(sources, destinations, kinds, windows) groups -> every flow key's set of window bounds."""
    expected: dict[FlowKey, set[tuple[float, float]]] = {}
    for sources, destinations, kinds, bounds in groups:
        for source in sources:
            for destination in destinations:
                for kind in kinds:
                    key = FlowKey(source, destination, kind)
                    expected.setdefault(key, set()).update(bounds)
    return expected


def bounds_of(prediction: Prediction) -> dict[FlowKey, set[tuple[float, float]]]:
    return {key: {(w.start, w.end) for w in windows} for key, windows in prediction.windows.items()}


BACK_200 = 200 + 8 + 2 + 5 + 3 + 2  # node-partition healed at 200: everything settled

CASES: list[tuple[str, FaultEvents, Timing, Topology, list[Group]]] = [
    (
        "ztunnel-kill node1: its flows, its pinned destinations, spread keepalive from node3, waypointed",
        fault("ztunnel-kill", "node1"),
        TIMING,
        topology(),
        [
            (["node1"], EVERY_DESTINATION, CONN_KINDS, [(S, E + 2)]),
            (ALL, ["echo-node1", "pod-node1", "waypointed"], CONN_KINDS, [(S, E + 2)]),
            (["node3"], ["spread"], KEEPALIVE, [(S, S + 3 + 2)]),
            (["node3"], ["spread"], NEW, [(S, S + 0.5)]),  # in flight at the kill
        ],
    ),
    (
        "ztunnel-kill node2: spread keepalive from node3 only (node1 has a local endpoint)",
        fault("ztunnel-kill", "node2"),
        TIMING,
        topology(),
        [
            (["node2"], EVERY_DESTINATION, CONN_KINDS, [(S, E + 2)]),
            (ALL, ["echo-node2", "pod-node2", "waypointed"], CONN_KINDS, [(S, E + 2)]),
            (["node3"], ["spread"], KEEPALIVE, [(S, S + 5)]),
            (["node3"], ["spread"], NEW, [(S, S + 0.5)]),  # in flight at the kill
        ],
    ),
    (
        "ztunnel-kill node3: spread has no endpoint there; waypointed has one",
        fault("ztunnel-kill", "node3"),
        TIMING,
        topology(),
        [
            (["node3"], EVERY_DESTINATION, CONN_KINDS, [(S, E + 2)]),
            (ALL, ["echo-node3", "pod-node3", "waypointed"], CONN_KINDS, [(S, E + 2)]),
        ],
    ),
    (
        "ztunnel-kill node3, no waypoint replica or endpoint there: waypointed untouched",
        fault("ztunnel-kill", "node3"),
        TIMING,
        Topology(
            ALL,
            ALL,
            (
                Destination("echo-node3", "service", ("node3",)),
                Destination("waypointed", "service", ("node1", "node2"), WaypointPlacement("wp", ("node1",))),
            ),
        ),
        [
            (["node3"], ["echo-node3", "waypointed"], CONN_KINDS, [(S, E + 2)]),
            (ALL, ["echo-node3"], CONN_KINDS, [(S, E + 2)]),
        ],
    ),
    (
        "ztunnel-restart, kept-alive connections retired before the drain deadline: nothing",
        fault("ztunnel-restart", "node1"),
        TIMING,
        topology(),
        [],
    ),
    (
        "ztunnel-restart, kept-alive connections outlive the drain deadline: keepalive from/to node1",
        fault("ztunnel-restart", "node1"),
        Timing(keepalive_max_age=30.0),
        topology(),
        [
            (["node1"], EVERY_DESTINATION, KEEPALIVE, [(S, E + 25 + 3 + 2)]),
            (ALL, ["echo-node1", "pod-node1"], KEEPALIVE, [(S, E + 25 + 3 + 2)]),
        ],
    ),
    (
        "node-partition node1, short (healed before the grace): merged windows",
        fault("node-partition", "node1"),
        TIMING,
        topology(),
        [
            (["node1"], [d for d in EVERY_DESTINATION if d != "pod-node1"], CONN_KINDS, [(S, E + 20)]),
            (["node2", "node3"], ["echo-node1", "pod-node1"], CONN_KINDS, [(S, E + 5 + 3 + 2)]),
            # [S, min(E, S + 8) + 2 + 3 + 2] and [E, back] overlap: one window
            (["node3"], ["spread"], CONN_KINDS, [(S, E + 20)]),
            (ALL, ["waypointed"], CONN_KINDS, [(S, E + 20)]),
        ],
    ),
    (
        "node-partition node1, long: spread from node3 fails until the endpoints go, and after the heal",
        fault("node-partition", "node1", end=200.0),
        TIMING,
        topology(),
        [
            (["node1"], [d for d in EVERY_DESTINATION if d != "pod-node1"], CONN_KINDS, [(S, BACK_200)]),
            (["node2", "node3"], ["echo-node1", "pod-node1"], CONN_KINDS, [(S, 200 + 5 + 3 + 2)]),
            (["node3"], ["spread"], CONN_KINDS, [(S, S + 8 + 2 + 3 + 2), (200, BACK_200)]),
            (ALL, ["waypointed"], CONN_KINDS, [(S, BACK_200)]),
        ],
    ),
    (
        "node-partition node1, a dial to a silent peer times out in time to retry: spread keepalive only",
        fault("node-partition", "node1", end=200.0),
        Timing(hbone_connect_timeout=1.0),
        topology(),
        [
            (["node1"], [d for d in EVERY_DESTINATION if d != "pod-node1"], CONN_KINDS, [(S, BACK_200)]),
            (["node2", "node3"], ["echo-node1", "pod-node1"], CONN_KINDS, [(S, 200 + 5 + 3 + 2)]),
            (["node3"], ["spread"], KEEPALIVE, [(S, S + 5 + 3 + 2), (200, BACK_200)]),
            (ALL, ["waypointed"], CONN_KINDS, [(S, BACK_200)]),
        ],
    ),
    (
        "node-partition node3: spread has no endpoint there",
        fault("node-partition", "node3"),
        TIMING,
        topology(),
        [
            (["node3"], [d for d in EVERY_DESTINATION if d != "pod-node3"], CONN_KINDS, [(S, E + 20)]),
            (["node1", "node2"], ["echo-node3", "pod-node3"], CONN_KINDS, [(S, E + 10)]),
            (ALL, ["waypointed"], CONN_KINDS, [(S, E + 20)]),
        ],
    ),
    (
        "node-reboot node1: ztunnel-kill's flows, until the pushes after every pod is ready",
        fault("node-reboot", "node1"),
        TIMING,
        topology(),
        [
            (["node1"], EVERY_DESTINATION, CONN_KINDS, [(S, E + 2 + 2)]),
            (ALL, ["echo-node1", "pod-node1", "waypointed"], CONN_KINDS, [(S, E + 2 + 2)]),
            (["node3"], ["spread"], KEEPALIVE, [(S, S + 3 + 2)]),
            (["node3"], ["spread"], NEW, [(S, S + 0.5)]),  # in flight at the kill
        ],
    ),
    (
        "waypoint-replica-kill, two replicas: keepalive breaks once, new connections only in flight",
        fault("waypoint-replica-kill", "node1", target="wp-0"),
        TIMING,
        topology(),
        [(ALL, ["waypointed"], KEEPALIVE, [(S, S + 3 + 2)]), (ALL, ["waypointed"], NEW, [(S, S + 0.5)])],
    ),
    (
        "waypoint-replica-kill, its only replica: both kinds until it is back and pushed",
        fault("waypoint-replica-kill", "node1", target="wp-0"),
        TIMING,
        topology(waypoint_replicas=("node1",)),
        [(ALL, ["waypointed"], CONN_KINDS, [(S, E + 2 + 2)])],
    ),
    (
        "waypoint-down: every flow to its destinations may fail",
        fault("waypoint-down", target="wp"),
        TIMING,
        topology(),
        [(ALL, ["waypointed"], CONN_KINDS, [(S, E + 2 + 2)])],
    ),
    (
        "waypoint-down with the instant the last replica was gone: a must-fail window too",
        fault("waypoint-down", target="wp", marks=(("down", 103.0),)),
        TIMING,
        topology(),
        [(ALL, ["waypointed"], CONN_KINDS, [(S, E + 2 + 2), (103 + 2 + 3, E)])],
    ),
    (
        "waypoint-down of another waypoint: nothing",
        fault("waypoint-down", target="other"),
        TIMING,
        topology(),
        [],
    ),
    ("controlplane-down: nothing", fault("controlplane-down"), TIMING, topology(), []),
    ("ca-down: nothing", fault("ca-down"), TIMING, topology(), []),
    (
        "node-drain node1: its pinned Service until recreated, its pod's IP for good",
        fault("node-drain", "node1"),
        TIMING,
        topology(),
        [
            (ALL, ["echo-node1"], CONN_KINDS, [(S, E + 2 + 2)]),
            (ALL, ["pod-node1"], CONN_KINDS, [(S, math.inf)]),
        ],
    ),
    (
        "app-rollout: every pod destination for good, Services nothing",
        fault("app-rollout"),
        TIMING,
        topology(),
        [(ALL, ["pod-node1", "pod-node2", "pod-node3"], CONN_KINDS, [(S, math.inf)])],
    ),
]


@pytest.mark.parametrize(
    ("fault_events", "timing", "layout", "groups"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_windows_per_experiment(
    fault_events: FaultEvents, timing: Timing, layout: Topology, groups: list[Group]
) -> None:
    prediction = predict(layout, fault_events, timing)
    assert bounds_of(prediction) == expand(groups)
    assert all(w.reason for windows in prediction.windows.values() for w in windows)
    assert bool(prediction.rules) == bool(groups)


def test_waypoint_down_window_after_the_last_replica_went_must_fail() -> None:
    prediction = predict(topology(), fault("waypoint-down", target="wp", marks=(("down", 103.0),)), TIMING)
    windows = prediction.windows[FlowKey("node2", "waypointed", "new")]
    assert [(w.start, w.end, w.must_fail) for w in windows] == [(S, E + 4, False), (108.0, E, True)]
    assert any("bypass" in rule for rule in prediction.rules)


def test_waypoint_down_must_fail_window_closes_when_the_replicas_are_started_again() -> None:
    """A replica may serve from the moment it is started, before the engine sees it ready (``end``)."""
    marks = (("down", 103.0), ("restarting", 109.0))
    prediction = predict(topology(), fault("waypoint-down", target="wp", marks=marks), TIMING)
    windows = prediction.windows[FlowKey("node2", "waypointed", "new")]
    assert [(w.start, w.end, w.must_fail) for w in windows] == [(S, E + 4, False), (108.0, 109.0, True)]


def test_waypoint_down_mark_too_late_for_a_must_fail_window() -> None:
    prediction = predict(topology(), fault("waypoint-down", target="wp", marks=(("down", 108.0),)), TIMING)
    assert not any(w.must_fail for windows in prediction.windows.values() for w in windows)


def test_spread_new_from_node3_under_a_ztunnel_kill_of_node1_fails_only_in_flight() -> None:
    """The client ztunnel retries a connect that fails: only requests already relayed through node1's
    endpoint at the kill may fail (a window of 0.5 s from the kill), none after it."""
    prediction = predict(topology(), fault("ztunnel-kill", "node1"), TIMING)
    [window] = prediction.windows[FlowKey("node3", "spread", "new")]
    assert (window.start, window.end) == (S, S + 0.5)
    assert FlowKey("node2", "spread", "new") not in prediction.windows  # a local endpoint
    assert FlowKey("node3", "spread", "keepalive") in prediction.windows


@pytest.mark.parametrize("n", [3, 5])
@pytest.mark.parametrize("experiment", ["ztunnel-kill", "node-partition", "node-reboot", "node-drain"])
def test_a_one_node_fault_touches_at_most_its_row_and_column_of_node_pairs(n: int, experiment: str) -> None:
    layout = topology(n)
    for node in layout.nodes:
        prediction = predict(layout, fault(experiment, node), TIMING)
        pairs = predicted_node_pairs(prediction, layout)
        assert pairs <= {(a, b) for a in layout.nodes for b in layout.nodes if node in (a, b)}
        assert len(pairs) / n**2 <= node_scoped_bound(n)


def test_predicted_node_pairs_of_a_ztunnel_kill_are_its_row_and_column() -> None:
    layout = topology()
    pairs = predicted_node_pairs(predict(layout, fault("ztunnel-kill", "node1"), TIMING), layout)
    assert pairs == {
        ("node1", "node1"),
        ("node1", "node2"),
        ("node1", "node3"),
        ("node2", "node1"),
        ("node3", "node1"),
    }


def test_predicted_node_pairs_of_a_cluster_wide_fault_count_no_multi_node_destination() -> None:
    layout = topology()
    prediction = predict(layout, fault("waypoint-down", target="wp"), TIMING)
    assert prediction.windows
    assert predicted_node_pairs(prediction, layout) == set()


@pytest.mark.parametrize(("n", "bound"), [(1, 1.0), (3, 5 / 9), (5, 9 / 25)])
def test_node_scoped_bound(n: int, bound: float) -> None:
    assert node_scoped_bound(n) == pytest.approx(bound)


def test_node_scoped_bound_needs_a_node() -> None:
    with pytest.raises(ValueError, match="at least one node"):
        node_scoped_bound(0)


@pytest.mark.parametrize(
    ("destination", "column"),
    [("echo-node1", "node1"), ("pod-node2", "node2"), ("spread", "spread"), ("waypointed", "waypointed")],
)
def test_matrix_column(destination: str, column: str) -> None:
    assert matrix_column(topology().destination(destination)) == column


def test_ztunnel_restart_episodes_overlapping_windows_merge() -> None:
    episodes = ((100.0, 105.0), (120.0, 125.0), (200.0, 205.0))
    events = FaultEvents("ztunnel-restart", "node1", "node1", 100.0, 205.0, episodes=episodes)
    timing = Timing(keepalive_max_age=25.0, drain_deadline=25.0)  # not retired before the deadline
    prediction = predict(topology(), events, timing)
    windows = prediction.windows[FlowKey("node2", "echo-node1", "keepalive")]
    # each episode: [s, e + 25 + 3 + 2]: the first two overlap
    assert [(w.start, w.end) for w in windows] == [(100.0, 155.0), (200.0, 235.0)]
    assert FlowKey("node2", "echo-node1", "new") not in prediction.windows
    assert any(rule.endswith("100.0-155.0 s, 200.0-235.0 s") for rule in prediction.rules)


def test_rule_lines_name_the_node_the_destinations_and_the_interval() -> None:
    rules = predict(topology(), fault("ztunnel-kill", "node2"), TIMING).rules
    assert "flows from node2 (its ztunnel is down): every destination, 100.0-112.0 s" in rules
    assert any("echo-node2, pod-node2" in rule for rule in rules)


def test_a_window_to_the_end_of_the_run_says_so() -> None:
    rules = predict(topology(), fault("app-rollout"), TIMING).rules
    assert rules and all(rule.endswith("100.0-end of run s") for rule in rules)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_known_experiment_has_rules(experiment: str) -> None:
    predict(topology(), fault(experiment, "node1", target="wp"), TIMING)


def test_an_unknown_experiment_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown experiment 'disk-fill'.*ztunnel-kill.*app-rollout"):
        predict(topology(), fault("disk-fill", "node1"), TIMING)


def test_a_node_fault_needs_a_node_of_the_topology() -> None:
    with pytest.raises(ValueError, match="node9"):
        predict(topology(), fault("ztunnel-kill", "node9"), TIMING)
