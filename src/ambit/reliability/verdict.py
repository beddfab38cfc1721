"""The verdict: a run's observations judged against its prediction (`judge`).

A failure is expected when a window of its flow overlaps the request; a success inside a must-fail
window is a bypass. The run PASSes when no failure was unexpected, nothing bypassed, and the run covered
the topology: every flow observed, and every ordered pair of distinct nodes proven by an answered
request. The verdict also carries the failure matrix (source node x column) and the counts the report
shows. Pure: no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ambit.reliability.flows import (
    CONN_KINDS,
    Destination,
    FlowKey,
    Observation,
    PairCell,
    Prediction,
    Topology,
    Verdict,
)
from ambit.reliability.predict import matrix_column, node_scoped_bound, predicted_node_pairs

MAX_LISTED_FLOWS = 10
"""How many never-observed flows one reason line names before summing up the rest."""


def judge(prediction: Prediction, topology: Topology, observations: Sequence[Observation]) -> Verdict:
    """Judge the observations against the prediction on this topology (see the module's docstring)."""
    destinations = {d.name: d for d in topology.destinations}
    unexpected: list[Observation] = []
    bypassed: list[Observation] = []
    for observation in observations:
        windows = prediction.windows.get(observation.key, ())
        if not observation.ok and not any(w.overlaps(observation.start, observation.end) for w in windows):
            unexpected.append(observation)
        if observation.ok and any(
            w.must_fail and w.contains(observation.start, observation.end) for w in windows
        ):
            bypassed.append(observation)

    fault_start = prediction.fault.start
    reasons = [
        *_group_lines(unexpected, "unexpected failure(s)", fault_start),
        *_group_lines(bypassed, "bypass(es): success inside a must-fail window", fault_start),
        *_coverage_lines(topology, observations),
    ]

    columns = (
        *topology.nodes,
        *(d.name for d in topology.destinations if d.home is None),
    )
    failures = [o for o in observations if not o.ok]
    failed_keys = {o.key for o in failures}
    matrix = _matrix(prediction, topology, destinations, columns, observations)
    nodes = set(topology.nodes)
    return Verdict(
        passed=not reasons,
        reasons=tuple(reasons),
        columns=columns,
        matrix=matrix,
        crossed=dict(Counter((o.source, o.served_node) for o in observations if o.ok and o.served_node)),
        unexpected=tuple(unexpected),
        bypassed=tuple(bypassed),
        unobserved=tuple(
            sorted(key for key, ws in prediction.windows.items() if ws and key not in failed_keys)
        ),
        pairs_touched=sum(
            1
            for (source, column), cell in matrix.items()
            if cell.failed and source in nodes and column in nodes
        ),
        pairs_predicted=len(predicted_node_pairs(prediction, topology)),
        pair_bound=node_scoped_bound(len(topology.nodes)),
        recovery_seconds=max(o.end for o in failures) - fault_start if failures else None,
        total=len(observations),
        failed=len(failures),
    )


def _column_of(name: str, destinations: dict[str, Destination]) -> str:
    """The matrix column of a destination by name; an unknown destination is its own column."""
    destination = destinations.get(name)
    return matrix_column(destination) if destination is not None else name


def _matrix(
    prediction: Prediction,
    topology: Topology,
    destinations: dict[str, Destination],
    columns: Sequence[str],
    observations: Iterable[Observation],
) -> dict[tuple[str, str], PairCell]:
    """Every (source, column) cell of the topology, plus a cell for any observation outside it."""
    totals: Counter[tuple[str, str]] = Counter()
    failed: Counter[tuple[str, str]] = Counter()
    for observation in observations:
        cell = (observation.source, _column_of(observation.destination, destinations))
        totals[cell] += 1
        failed[cell] += not observation.ok
    predicted = {
        (key.source, _column_of(key.destination, destinations))
        for key, windows in prediction.windows.items()
        if windows
    }
    cells = dict.fromkeys((source, column) for source in topology.sources for column in columns)
    cells.update(dict.fromkeys(totals))
    return {
        cell: PairCell(total=totals[cell], failed=failed[cell], predicted=cell in predicted) for cell in cells
    }


def _group_lines(observations: Sequence[Observation], what: str, fault_start: float) -> list[str]:
    """One line per flow: how many, when the first one was (from the fault's start), how it ended."""
    by_key: dict[FlowKey, list[Observation]] = {}
    for observation in observations:
        by_key.setdefault(observation.key, []).append(observation)
    lines = []
    for key in sorted(by_key):
        group = by_key[key]
        first = min(group, key=lambda o: o.start)
        detail = f"{first.outcome}: {first.error}" if first.error else first.outcome
        lines.append(
            f"{_flow(key)}: {len(group)} {what}, the first {first.start - fault_start:+.1f} s from the "
            f"fault's start ({detail})"
        )
    return lines


def _coverage_lines(topology: Topology, observations: Sequence[Observation]) -> list[str]:
    """Why the run did not cover the topology: flows never observed, node pairs never proven."""
    lines = []
    observed = {o.key for o in observations}
    missing = [
        key
        for source in topology.sources
        for destination in topology.destinations
        for kind in CONN_KINDS
        if (key := FlowKey(source, destination.name, kind)) not in observed
    ]
    if missing:
        listed = ", ".join(_flow(key) for key in missing[:MAX_LISTED_FLOWS])
        more = f" and {len(missing) - MAX_LISTED_FLOWS} more" if len(missing) > MAX_LISTED_FLOWS else ""
        lines.append(f"{len(missing)} flows never observed: {listed}{more}")
    answered = {(o.source, o.served_node) for o in observations if o.ok}
    lines += [
        f"no answered request from {source} to {node}: the run did not prove that pair"
        for source in topology.sources
        for node in topology.nodes
        if source != node and (source, node) not in answered
    ]
    return lines


def _flow(key: FlowKey) -> str:
    return f"{key.source} -> {key.destination} ({key.kind})"
