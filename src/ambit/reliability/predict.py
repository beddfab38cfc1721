"""The blast-radius prediction: from a cluster's layout (`Topology`), a fault's observed timeline
(`FaultEvents`) and the mesh's timing facts (`Timing`), the windows in which each probe flow may (or
must) fail (`predict`). Also owns what the report and the verdict derive from a prediction: the matrix
column a destination falls in (`matrix_column`), the ordered node pairs a prediction lets fail
(`predicted_node_pairs`) and the node-scoped bound on their fraction (`node_scoped_bound`).

Every window comes from a rule over the topology and the fault (which node, which destinations have
endpoints where), never from a per-node table. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

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
    Window,
)

NODE_EXPERIMENTS = frozenset(
    {"ztunnel-kill", "ztunnel-restart", "node-partition", "node-reboot", "node-drain"}
)
"""Experiments whose fault is on one node: they need ``FaultEvents.target_node`` to be a topology node."""

DOWN_MARK = "down"
"""The `FaultEvents.marks` name of the instant the last waypoint replica was gone (waypoint-down)."""
RESTARTING_MARK = "restarting"
"""... and of the instant the engine began to start them again (the must-fail window ends there)."""

KEEPALIVE_ONLY: tuple[ConnKind, ...] = ("keepalive",)
NEW_ONLY: tuple[ConnKind, ...] = ("new",)
IN_FLIGHT = 0.5
"""A request on a new connection that was already relayed through a component when it died fails with
it (the client ztunnel's retry saves only a connect that fails): the window covers requests in flight at
the fault, and those whose connect raced it by up to this many seconds."""


def matrix_column(destination: Destination) -> str:
    """The failure matrix's column of a destination: the node all its endpoints are on, else its name."""
    return destination.home or destination.name


def node_scoped_bound(n: int) -> float:
    """The largest fraction of the n² ordered node pairs (self pairs included) a fault on one node can
    touch: its row and its column, 2n - 1 pairs."""
    if n < 1:
        raise ValueError(f"a cluster has at least one node, not {n}")
    return (2 * n - 1) / (n * n)


def predicted_node_pairs(prediction: Prediction, topology: Topology) -> set[tuple[str, str]]:
    """The ordered (source node, destination node) pairs the prediction lets fail.

    A flow with a window to a destination whose endpoints are all on one node counts that pair. A
    multi-node destination (a Service spread over nodes, a waypoint) names no single node, so its flow
    counts only the pairs the fault's node explains: from the fault's node, every node it has endpoints
    on (the source's own ztunnel is the cause); from another source, (source, fault node) when the fault
    node hosts one of its endpoints or waypoint replicas. A cluster-wide fault (no fault node) counts no
    pair for multi-node destinations."""
    fault_node = prediction.fault.target_node
    by_name = {destination.name: destination for destination in topology.destinations}
    pairs: set[tuple[str, str]] = set()
    for key, windows in prediction.windows.items():
        destination = by_name.get(key.destination)
        if not windows or destination is None:
            continue
        if destination.home is not None:
            pairs.add((key.source, destination.home))
        elif fault_node and key.source == fault_node:
            pairs.update((key.source, node) for node in destination.endpoint_nodes)
        elif fault_node and fault_node in _nodes_serving(destination):
            pairs.add((key.source, fault_node))
    return pairs


def predict(topology: Topology, fault: FaultEvents, timing: Timing) -> Prediction:
    """The windows in which each flow (source node, destination, connection kind) of the topology may
    fail under the fault, merged per flow, with one line per rule that produced windows."""
    rules = _RULES.get(fault.experiment)
    if rules is None:
        raise ValueError(f"unknown experiment {fault.experiment!r}; known: {', '.join(EXPERIMENTS)}")
    if fault.experiment in NODE_EXPERIMENTS and fault.target_node not in topology.nodes:
        raise ValueError(
            f"{fault.experiment} needs the node it faults: {fault.target_node!r} is not one of "
            f"{', '.join(topology.nodes)}"
        )
    collector = _Collector()
    for start, end in fault.spans:
        rules(_Span(topology, fault, timing, start, end, collector))
    return Prediction(fault=fault, windows=collector.merged_windows(), rules=collector.rule_lines())


# --- the collector: windows and rule lines as the rules produce them


@dataclass
class _Collector:
    windows: dict[FlowKey, list[Window]] = field(default_factory=dict)
    rule_intervals: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def add(
        self,
        keys: Iterable[FlowKey],
        start: float,
        end: float,
        *,
        rule: str,
        reason: str,
        must_fail: bool = False,
    ) -> None:
        """Give every flow of ``keys`` the window [start, end]; an empty interval or no flows: nothing."""
        keys = list(keys)
        if not keys or end < start:
            return
        window = Window(start, end, must_fail=must_fail, reason=reason)
        for key in keys:
            self.windows.setdefault(key, []).append(window)
        self.rule_intervals.setdefault(rule, []).append((start, end))

    def merged_windows(self) -> dict[FlowKey, tuple[Window, ...]]:
        return {key: merge_windows(self.windows[key]) for key in sorted(self.windows)}

    def rule_lines(self) -> tuple[str, ...]:
        return tuple(
            f"{rule}, {', '.join(_format_interval(s, e) for s, e in _merge_intervals(intervals))}"
            for rule, intervals in self.rule_intervals.items()
        )


def merge_windows(windows: Iterable[Window]) -> tuple[Window, ...]:
    """Overlapping (or touching) windows of one flow merged into one, by start; may-fail and must-fail
    windows are merged separately (a must-fail window keeps its exact bounds). Reasons are joined."""
    merged: list[Window] = []
    for must_fail in (False, True):
        current: Window | None = None
        for window in sorted(
            (w for w in windows if w.must_fail == must_fail), key=lambda w: (w.start, w.end)
        ):
            if current is not None and window.start <= current.end:
                current = Window(
                    current.start,
                    max(current.end, window.end),
                    must_fail=must_fail,
                    reason=_join_reasons(current.reason, window.reason),
                )
            else:
                if current is not None:
                    merged.append(current)
                current = window
        if current is not None:
            merged.append(current)
    return tuple(sorted(merged, key=lambda w: (w.start, w.end, w.must_fail)))


def _join_reasons(first: str, second: str) -> str:
    parts = first.split("; ") if first else []
    return "; ".join([*parts, second]) if second and second not in parts else first


def _merge_intervals(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _format_interval(start: float, end: float) -> str:
    end_text = "end of run" if math.isinf(end) else f"{end:.1f}"
    return f"{start:.1f}-{end_text} s"


# --- the rules, one function per experiment, each applied to one fault span


@dataclass(frozen=True, slots=True)
class _Span:
    """One span of the fault (start s, end e) and what every rule needs to know about it."""

    topology: Topology
    fault: FaultEvents
    timing: Timing
    start: float
    end: float
    out: _Collector

    @property
    def node(self) -> str:
        return self.fault.target_node

    def flows(
        self,
        sources: Iterable[str],
        destinations: Iterable[Destination],
        kinds: Sequence[ConnKind] = CONN_KINDS,
    ) -> list[FlowKey]:
        destinations = list(destinations)
        return [FlowKey(s, d.name, kind) for s in sources for d in destinations for kind in kinds]

    def sources_other_than(self, node: str) -> list[str]:
        return [source for source in self.topology.sources if source != node]

    def homed_on(self, node: str) -> list[Destination]:
        return [d for d in self.topology.destinations if d.home == node]

    def multi_node_with_endpoint_on(self, node: str) -> list[Destination]:
        """Destinations without a waypoint whose endpoints span several nodes, one of them ``node``."""
        return [
            d
            for d in self.topology.destinations
            if d.waypoint is None and d.home is None and node in d.endpoint_nodes
        ]

    def waypointed_touching(self, node: str) -> list[Destination]:
        """Destinations bound to a waypoint with a replica or an endpoint on ``node``."""
        return [d for d in self.topology.destinations if d.waypoint is not None and node in _nodes_serving(d)]


def _nodes_serving(destination: Destination) -> set[str]:
    """The nodes a request to the destination may cross to: its endpoints' and its waypoint replicas'."""
    replicas = destination.waypoint.replica_nodes if destination.waypoint else ()
    return {*destination.endpoint_nodes, *replicas}


def _names(destinations: Iterable[Destination]) -> str:
    return ", ".join(d.name for d in destinations)


def _node_process_loss(span: _Span, settled: float, cause: str) -> None:
    """A node's data path gone from span.start until ``settled`` (ztunnel-kill, node-reboot): the node's
    own flows, destinations only on it, waypoints touching it; Services spread over it lose only the
    kept-alive connections open to its endpoint (a new connection's refused dial is retried elsewhere)."""
    k, s, tmo, slack = span.node, span.start, span.timing.request_timeout, span.timing.recovery_slack
    span.out.add(
        span.flows([k] if k in span.topology.sources else [], span.topology.destinations),
        s,
        settled,
        rule=f"flows from {k} ({cause}): every destination",
        reason=f"the source node {k}: {cause}",
    )
    homed = span.homed_on(k)
    span.out.add(
        span.flows(span.topology.sources, homed),
        s,
        settled,
        rule=f"flows to destinations only on {k} ({_names(homed)}): every source",
        reason=f"every endpoint is on {k}: {cause}",
    )
    for destination in span.multi_node_with_endpoint_on(k):
        without_local = [src for src in span.sources_other_than(k) if src not in destination.endpoint_nodes]
        span.out.add(
            span.flows(without_local, [destination], KEEPALIVE_ONLY),
            s,
            s + tmo + slack,
            rule=f"keepalive flows to {destination.name} from nodes without a local endpoint "
            f"({', '.join(without_local)}): connections open to its endpoint on {k} break once",
            reason=f"a kept-alive connection to the endpoint on {k} broke; new ones go elsewhere",
        )
        span.out.add(
            span.flows(without_local, [destination], NEW_ONLY),
            s,
            s + IN_FLIGHT,
            rule=f"new-connection requests to {destination.name} from nodes without a local endpoint, in "
            f"flight through its endpoint on {k} at the fault (a retry only saves a connect)",
            reason=f"in flight through the endpoint on {k} when it went",
        )
    waypointed = span.waypointed_touching(k)
    span.out.add(
        span.flows(span.topology.sources, waypointed),
        s,
        settled,
        rule=f"flows to {_names(waypointed)} (a waypoint replica or endpoint on {k}): every source",
        reason=f"its waypoint has a replica or an endpoint on {k}: {cause}",
    )


def _ztunnel_kill(span: _Span) -> None:
    _node_process_loss(span, span.end + span.timing.recovery_slack, "its ztunnel is down")


def _node_reboot(span: _Span) -> None:
    # Pod destinations homed on the node are among the destinations "only on" it: every source fails.
    timing = span.timing
    _node_process_loss(span, span.end + timing.push_delay + timing.recovery_slack, "it is rebooting")


def _ztunnel_restart(span: _Span) -> None:
    timing = span.timing
    if timing.keepalive_max_age < timing.drain_deadline:
        return  # every kept-alive connection is retired before the old ztunnel's drain deadline
    k, s = span.node, span.start
    end = span.end + timing.drain_deadline + timing.request_timeout + timing.recovery_slack
    reason = f"a kept-alive connection outlived the drain deadline of {k}'s replaced ztunnel"
    span.out.add(
        span.flows([k] if k in span.topology.sources else [], span.topology.destinations, KEEPALIVE_ONLY),
        s,
        end,
        rule=f"keepalive flows from {k} (connections outlive its old ztunnel's drain deadline)",
        reason=reason,
    )
    homed = span.homed_on(k)
    span.out.add(
        span.flows(span.topology.sources, homed, KEEPALIVE_ONLY),
        s,
        end,
        rule=f"keepalive flows to destinations only on {k} ({_names(homed)}): connections outlive "
        "the drain deadline",
        reason=reason,
    )


def _node_partition(span: _Span) -> None:
    t = span.timing
    k, s, e, tmo, slack = span.node, span.start, span.end, t.request_timeout, t.recovery_slack
    back = e + t.node_grace + t.push_delay + t.dead_peer_timeout + tmo + slack
    own_pods = [d for d in span.topology.destinations if not (d.kind == "pod" and d.home == k)]
    span.out.add(
        span.flows([k] if k in span.topology.sources else [], own_pods),
        s,
        back,
        rule=f"flows from {k} (cut off the network): every destination but its own pods",
        reason=f"the source node {k} is cut off the network",
    )
    homed = span.homed_on(k)
    # After the heal: a pooled connection to k not yet found dead, or k's endpoints still on their way
    # back (a push), whichever takes longer.
    homed_end = e + max(t.dead_peer_timeout, t.push_delay) + tmo + slack
    span.out.add(
        span.flows(span.sources_other_than(k), homed),
        s,
        homed_end,
        rule=f"flows to destinations only on {k} ({_names(homed)}): every other source",
        reason=f"every endpoint is on {k}, cut off the network",
    )
    no_retry_in_time = t.hbone_connect_timeout >= tmo
    for destination in span.multi_node_with_endpoint_on(k):
        without_local = [src for src in span.sources_other_than(k) if src not in destination.endpoint_nodes]
        if no_retry_in_time:
            kinds: Sequence[ConnKind] = CONN_KINDS
            until = min(e, s + t.node_grace) + t.push_delay + tmo + slack
            why = f"a dial to {k} outlasts the request timeout (no retry in time) until its endpoints go"
        else:
            kinds = KEEPALIVE_ONLY
            until = s + t.dead_peer_timeout + tmo + slack
            why = f"a pooled connection to {k} fails until PING finds it dead (new dials retry in time)"
        flows = span.flows(without_local, [destination], kinds)
        span.out.add(
            flows,
            s,
            until,
            rule=f"{'/'.join(kinds)} flows to {destination.name} from nodes without a local endpoint "
            f"({', '.join(without_local)}): its endpoint on {k} is cut off",
            reason=why,
        )
        # After the heal k's endpoints return (readiness, then a push): the first dial to k may still hit
        # stale state (a pooled connection to k not yet found dead, an endpoint pushed back before k's
        # ztunnel answers), so the same flows may fail until everything has settled.
        span.out.add(
            flows,
            e,
            back,
            rule=f"{'/'.join(kinds)} flows to {destination.name} from nodes without a local endpoint: "
            f"after the heal its endpoints on {k} return",
            reason=f"after the heal the first dial to {k} may hit stale state",
        )
    waypointed = span.waypointed_touching(k)
    span.out.add(
        span.flows(span.topology.sources, waypointed),
        s,
        back,
        rule=f"flows to {_names(waypointed)} (a waypoint replica or endpoint on {k}): every source",
        reason=f"its waypoint has a replica or an endpoint on {k}, cut off the network",
    )


def _waypoint_replica_kill(span: _Span) -> None:
    t, s = span.timing, span.start
    for destination in span.topology.destinations:
        if destination.waypoint is None:
            continue
        if len(destination.waypoint.replica_nodes) <= 1:
            span.out.add(
                span.flows(span.topology.sources, [destination]),
                s,
                span.end + t.push_delay + t.recovery_slack,
                rule=f"flows to {destination.name} (its waypoint's only replica killed): every source",
                reason="its waypoint's only replica is down",
            )
        else:
            span.out.add(
                span.flows(span.topology.sources, [destination], KEEPALIVE_ONLY),
                s,
                s + t.request_timeout + t.recovery_slack,
                rule=f"keepalive flows to {destination.name} (connections through the killed waypoint "
                "replica break once; new ones go to another replica): every source",
                reason="a kept-alive connection through the killed waypoint replica broke",
            )
            span.out.add(
                span.flows(span.topology.sources, [destination], NEW_ONLY),
                s,
                s + IN_FLIGHT,
                rule=f"new-connection requests to {destination.name} in flight through the killed replica "
                "(the client ztunnel retries only a connect): every source",
                reason="in flight through the killed waypoint replica",
            )


def _waypoint_down(span: _Span) -> None:
    t, s, e = span.timing, span.start, span.end
    covered = [
        d
        for d in span.topology.destinations
        if d.waypoint is not None and d.waypoint.name == span.fault.target
    ]
    flows = span.flows(span.topology.sources, covered)
    span.out.add(
        flows,
        s,
        e + t.push_delay + t.recovery_slack,
        rule=f"flows to {_names(covered)} (waypoint {span.fault.target} scaled to zero): every source",
        reason=f"waypoint {span.fault.target} has no ready replica",
    )
    # A replica can serve again from the moment the engine starts the first one, before it sees it
    # ready (``end``): the must-fail window closes at that mark when there is one.
    restarting = min(
        (at for name, at in span.fault.marks if name == RESTARTING_MARK and s <= at <= e), default=e
    )
    for name, down in span.fault.marks:
        if name != DOWN_MARK or not s <= down <= e:
            continue
        span.out.add(
            flows,
            down + t.push_delay + t.request_timeout,
            restarting,
            must_fail=True,
            rule=f"flows to {_names(covered)} must fail while no replica of {span.fault.target} runs "
            "(a success would bypass the waypoint)",
            reason=f"no replica of waypoint {span.fault.target}: a success would be a bypass",
        )


def _node_drain(span: _Span) -> None:
    t, k, s = span.timing, span.node, span.start
    homed = span.homed_on(k)
    services = [d for d in homed if d.kind == "service"]
    pods = [d for d in homed if d.kind == "pod"]
    span.out.add(
        span.flows(span.topology.sources, services),
        s,
        span.end + t.push_delay + t.recovery_slack,
        rule=f"flows to Services only on {k} ({_names(services)}): every source, until the replacement "
        "pods are ready",
        reason=f"the pinned pod on {k} was evicted: no endpoint until it is recreated",
    )
    span.out.add(
        span.flows(span.topology.sources, pods),
        s,
        math.inf,
        rule=f"flows to pods on {k} ({_names(pods)}): every source, to the end of the run",
        reason=f"the pod on {k} was evicted: its IP is gone",
    )


def _app_rollout(span: _Span) -> None:
    pods = [d for d in span.topology.destinations if d.kind == "pod"]
    span.out.add(
        span.flows(span.topology.sources, pods),
        span.start,
        math.inf,
        rule=f"flows to pod destinations ({_names(pods)}): every source, to the end of the run",
        reason="the rollout replaced the pod: its IP is gone",
    )


def _data_plane_unaffected(span: _Span) -> None:
    """controlplane-down, ca-down: the data plane serves from its cache; certificates outlive the outage."""


_RULES: dict[str, Callable[[_Span], None]] = {
    "ztunnel-kill": _ztunnel_kill,
    "ztunnel-restart": _ztunnel_restart,
    "node-partition": _node_partition,
    "node-reboot": _node_reboot,
    "waypoint-replica-kill": _waypoint_replica_kill,
    "waypoint-down": _waypoint_down,
    "controlplane-down": _data_plane_unaffected,
    "ca-down": _data_plane_unaffected,
    "node-drain": _node_drain,
    "app-rollout": _app_rollout,
}
