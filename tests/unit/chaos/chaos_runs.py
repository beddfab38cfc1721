"""Synthetic `ChaosRun`s for the report tests, built from the records directly (not from the model's
prediction or judge): a 3-node cluster whose node2 ztunnel is killed 10 s after the load began and is
ready again 4 s later."""

from __future__ import annotations

import math
from dataclasses import replace

from ambit.chaos.run import ChaosRun, LoadParameters
from ambit.reliability.flows import (
    CONN_KINDS,
    Destination,
    FaultEvents,
    FlowKey,
    Observation,
    PairCell,
    Prediction,
    Timing,
    Topology,
    Verdict,
    WaypointPlacement,
    Window,
)

ORIGIN = 5000.0
NODES = ("node1", "node2", "node3")


def topology(extra: tuple[Destination, ...] = ()) -> Topology:
    destinations: list[Destination] = []
    for n in NODES:
        destinations.append(Destination(f"echo-{n}", "service", (n,)))
        destinations.append(Destination(f"pod-{n}", "pod", (n,)))
    destinations.append(Destination("spread", "service", NODES))
    destinations.append(
        Destination("waypointed", "service", ("node1", "node3"), WaypointPlacement("wp", ("node2",)))
    )
    return Topology(NODES, NODES, (*destinations, *extra), controlplane_nodes=("node1",))


def _column(topo: Topology, destination: str) -> str:
    d = topo.destination(destination)
    return d.home or d.name


def _touches_node2(topo: Topology, source: str, destination: str) -> bool:
    d = topo.destination(destination)
    return source == "node2" or "node2" in d.endpoint_nodes or d.waypoint is not None


def ztunnel_kill(
    *, index: int = 1, unexpected: bool = False, extra: tuple[Destination, ...] = (), inf_window: bool = False
) -> ChaosRun:
    """node2's ztunnel killed at +10 s, ready at +14 s; requests every 0.5 s for 30 s on every flow.

    Flows touching node2 fail from +10.2 to +13 s (every other request, to vary outcomes).
    ``unexpected``: node1 → echo-node3 also fails once at +20 s, which no window covers (a FAIL).
    ``inf_window``: one window is open to infinity (``end = inf``)."""
    topo = topology(extra)
    start, end = ORIGIN + 10.0, ORIGIN + 14.0
    events = FaultEvents(
        "ztunnel-kill", "node2", "node2", start, end, marks=(("ready", end), ("healthy", ORIGIN + 14.5))
    )
    windows: dict[FlowKey, tuple[Window, ...]] = {}
    observations: list[Observation] = []
    for source in topo.sources:
        for d in topo.destinations:
            for kind in CONN_KINDS:
                key = FlowKey(source, d.name, kind)
                touched = _touches_node2(topo, source, d.name)
                if touched:
                    window_end = (
                        math.inf if inf_window and key == FlowKey("node2", "spread", "new") else end + 2.0
                    )
                    windows[key] = (Window(start, window_end, reason="ztunnel on node2 down"),)
                for k in range(60):
                    t = ORIGIN + 0.5 * k + (0.01 if kind == "keepalive" else 0.0)
                    failed = touched and start + 0.2 <= t <= start + 3.0 and k % 2 == 0
                    if unexpected and key == FlowKey("node1", "echo-node3", "new") and k == 40:
                        failed = True
                    served = "" if failed else (d.endpoint_nodes[k % len(d.endpoint_nodes)])
                    outcome = ("reset" if kind == "keepalive" else "connect_error") if failed else "ok"
                    if failed and d.name == "waypointed":
                        outcome = "http_503"
                    observations.append(
                        Observation(source, d.name, kind, t, t + 0.004, not failed, outcome, "", served)
                    )
    prediction = Prediction(
        events,
        windows,
        rules=("ztunnel-kill: flows from or to node2 may fail until it is ready + push delay",),
    )
    return ChaosRun(
        experiment="ztunnel-kill",
        index=index,
        topology=topo,
        timing=Timing(),
        load=LoadParameters(rate=2.0, timeout=3.0, duration=30.0, keepalive_max_age=20.0),
        events=events,
        prediction=prediction,
        verdict=judge(topo, prediction, tuple(observations)),
        observations=tuple(observations),
        origin=ORIGIN,
        placement={"load-node1": "node1", "load-node2": "node2", "load-node3": "node3"},
        context={"seed": 7, "commit": "78dda74", "machine": "test box", "cluster": "chaos"},
    )


def judge(topo: Topology, prediction: Prediction, observations: tuple[Observation, ...]) -> Verdict:
    """A small stand-in for the model's judge: enough to give the report consistent numbers."""
    columns = (*topo.nodes, *(d.name for d in topo.destinations if d.home is None))
    matrix: dict[tuple[str, str], PairCell] = {}
    crossed: dict[tuple[str, str], int] = {}
    unexpected = []
    failed_keys = set()
    for o in observations:
        cell = (o.source, _column(topo, o.destination))
        windows = prediction.windows.get(o.key, ())
        previous = matrix.get(cell, PairCell(0, 0, False))
        matrix[cell] = PairCell(
            previous.total + 1, previous.failed + (not o.ok), previous.predicted or bool(windows)
        )
        if o.ok:
            crossed[o.source, o.served_node] = crossed.get((o.source, o.served_node), 0) + 1
        else:
            failed_keys.add(o.key)
            if not any(w.overlaps(o.start, o.end) for w in windows):
                unexpected.append(o)
    for s in topo.sources:
        for c in columns:
            matrix.setdefault((s, c), PairCell(0, 0, False))
    failures = [o for o in observations if not o.ok]
    n = len(topo.nodes)
    node_pairs = {(o.source, _column(topo, o.destination)) for o in failures}
    return Verdict(
        passed=not unexpected,
        reasons=tuple(
            f"{o.source} → {o.destination} ({o.kind}) failed outside every window" for o in unexpected
        ),
        columns=columns,
        matrix=matrix,
        crossed=crossed,
        unexpected=tuple(unexpected),
        bypassed=(),
        unobserved=tuple(k for k in sorted(prediction.windows) if k not in failed_keys),
        pairs_touched=len({p for p in node_pairs if p[1] in topo.nodes}),
        pairs_predicted=2 * n - 1,
        pair_bound=(2 * n - 1) / n**2,
        recovery_seconds=max(o.end for o in failures) - prediction.fault.start if failures else None,
        total=len(observations),
        failed=len(failures),
    )


def quiet(run: ChaosRun) -> ChaosRun:
    """The same run with nothing failing."""
    observations = tuple(
        replace(
            o, ok=True, outcome="ok", served_node=run.topology.destination(o.destination).endpoint_nodes[0]
        )
        for o in run.observations
    )
    return replace(run, observations=observations, verdict=judge(run.topology, run.prediction, observations))
