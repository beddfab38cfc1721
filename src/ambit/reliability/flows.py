"""The records the blast-radius model works on: a cluster's layout as its flows see it (`Topology`), the
timing facts that bound a fault's effect (`Timing`), a fault's observed timeline (`FaultEvents`), the
prediction's unit (`FlowKey`, `Window`) and one probe request as observed (`Observation`).

Times are seconds on one clock shared by every process of the machine (``time.monotonic()``, Linux's
``CLOCK_MONOTONIC``): the probe clients stamp requests with it, the chaos engine stamps faults with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ConnKind = Literal["new", "keepalive"]
CONN_KINDS: tuple[ConnKind, ...] = ("new", "keepalive")
DestinationKind = Literal["service", "pod"]

EXPERIMENTS = (
    "ztunnel-kill",
    "ztunnel-restart",
    "node-partition",
    "node-reboot",
    "waypoint-replica-kill",
    "waypoint-down",
    "controlplane-down",
    "ca-down",
    "node-drain",
    "app-rollout",
)


@dataclass(frozen=True, slots=True)
class WaypointPlacement:
    """A waypoint a destination is bound to, and the nodes its ready replicas run on (one entry each)."""

    name: str
    replica_nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a probe flow goes: a Service (by name) or one pod IP, and the nodes of its ready endpoints
    (one entry per endpoint, so two endpoints on one node appear twice)."""

    name: str  # "echo-node1", "pod-node1", "spread", "waypointed"
    kind: DestinationKind
    endpoint_nodes: tuple[str, ...]
    waypoint: WaypointPlacement | None = None

    @property
    def home(self) -> str | None:
        """The one node every endpoint is on, or None (several nodes, or no endpoint)."""
        nodes = set(self.endpoint_nodes)
        return next(iter(nodes)) if len(nodes) == 1 else None


@dataclass(frozen=True, slots=True)
class Topology:
    """The cluster as the probe's flows see it: its nodes, the nodes that send (a load pod each), the
    destinations, and the nodes of the control-plane replicas."""

    nodes: tuple[str, ...]
    sources: tuple[str, ...]
    destinations: tuple[Destination, ...]
    controlplane_nodes: tuple[str, ...] = ()

    def destination(self, name: str) -> Destination:
        return next(d for d in self.destinations if d.name == name)


@dataclass(frozen=True, slots=True)
class Timing:
    """Timing facts of the mesh and of the probe that bound how long a fault's effect may last.

    Each default is the production default of the setting named beside it."""

    request_timeout: float = 3.0  # the probe's per-request timeout (`ambit chaos run --timeout`)
    node_grace: float = 8.0  # `ambit up --node-grace`: no heartbeat for this long -> NotReady
    push_delay: float = 2.0  # an endpoint change reaching every proxy (store -> control plane -> xDS)
    hbone_connect_timeout: float = 10.0  # ztunnel `connect_timeout`: dialling a peer's 15008
    dead_peer_timeout: float = 5.0  # an HBONE connection to a silent peer found dead (PING)
    keepalive_max_age: float = 20.0  # the probe retires kept-alive connections older than this
    drain_deadline: float = 25.0  # a replaced ztunnel's drain deadline
    recovery_slack: float = 2.0  # after a component is ready again, for in-flight state to settle


@dataclass(frozen=True, slots=True)
class FaultEvents:
    """What the engine did and saw: the experiment, its target, and when the fault began and ended.

    ``start``: the fault injected (kill sent, cut made, replicas stopped). ``end``: the fault over as the
    engine observed it (the killed component ready again, the cut healed, the replicas started).
    ``episodes``: for an experiment that repeats its fault (ten restarts in a row), each (start, end);
    otherwise the single (start, end). ``marks``: other instants worth a line on the timeline (name,
    time), e.g. ``("ready", t)``. ``measures``: numbers the experiment measured besides the requests, with
    their unit in the name, e.g. ``("handover p50 ms", 12.0)``, ``("refused connects", 0)``."""

    experiment: str
    target: str  # a node, or a waypoint/replica/deployment name
    target_node: str  # the node the fault is on ("" for a cluster-wide fault)
    start: float
    end: float
    episodes: tuple[tuple[float, float], ...] = ()
    marks: tuple[tuple[str, float], ...] = ()
    measures: tuple[
        tuple[str, float], ...
    ] = ()  # what the experiment measured besides requests (name, value)

    @property
    def spans(self) -> tuple[tuple[float, float], ...]:
        return self.episodes or ((self.start, self.end),)


@dataclass(frozen=True, slots=True, order=True)
class FlowKey:
    """The prediction's unit: the traffic from ``source`` (a node) to ``destination`` of one kind."""

    source: str
    destination: str
    kind: ConnKind


@dataclass(frozen=True, slots=True)
class Window:
    """A time interval in which a flow may fail (``must_fail``: in which every request must fail, e.g.
    traffic a waypoint covers while no replica runs: a success there would be a bypass)."""

    start: float
    end: float
    must_fail: bool = False
    reason: str = ""

    def overlaps(self, start: float, end: float) -> bool:
        return start <= self.end and end >= self.start

    def contains(self, start: float, end: float) -> bool:
        return self.start <= start and end <= self.end


@dataclass(frozen=True, slots=True)
class Observation:
    """One probe request: where from and to, which kind of connection, when it ran, how it ended, and
    which node answered (``served_node``: from the answer's body; "" when it failed)."""

    source: str
    destination: str
    kind: ConnKind
    start: float
    end: float
    ok: bool
    outcome: str = "ok"  # the load client's outcome name (ok, timeout, reset, connect_error, http_503...)
    error: str = ""
    served_node: str = ""

    @property
    def key(self) -> FlowKey:
        return FlowKey(self.source, self.destination, self.kind)


@dataclass(frozen=True, slots=True)
class Prediction:
    """Per flow, the windows in which it may (or must) fail; flows absent never fail. ``rules``: one
    line per rule that produced windows, for the report."""

    fault: FaultEvents
    windows: dict[FlowKey, tuple[Window, ...]] = field(default_factory=dict)
    rules: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PairCell:
    """One cell of the failure matrix: requests from a source node to a column (a node, for destinations
    whose endpoints are all on one node; else the destination's own name), how many failed, and whether
    the prediction lets any of them fail."""

    total: int
    failed: int
    predicted: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """Observations judged against a prediction (`ambit.reliability.verdict.judge`)."""

    passed: bool
    reasons: tuple[str, ...]  # why it failed, one line each (empty on PASS)
    columns: tuple[str, ...]  # the matrix's columns: node names first, then other destinations
    matrix: dict[tuple[str, str], PairCell]  # (source node, column) -> cell
    crossed: dict[tuple[str, str], int]  # (source node, node that answered) -> answered requests
    unexpected: tuple[Observation, ...]  # failures no prediction window covers
    bypassed: tuple[Observation, ...]  # successes inside a must-fail window
    unobserved: tuple[FlowKey, ...]  # predicted to possibly fail, did not
    pairs_touched: int  # ordered node pairs with at least one failure
    pairs_predicted: int  # ordered node pairs the prediction lets fail
    pair_bound: float  # (2N - 1) / N^2: the node-scoped bound on the fraction of pairs
    recovery_seconds: float | None  # last failure's end minus the fault's start; None: nothing failed
    total: int
    failed: int
