"""``report.json``: every run of an experiment, with its evidence, as JSON values (`run_to_json`,
`report_json`) and read back into `ChaosRun` values (`run_from_json`, `read_report`), and the JSON
layout the chaos reports are written in (`dump_json`).

A float that is not finite (a window open to infinity) is written as the string ``"inf"``, ``"-inf"``
or ``"nan"`` and read back as that float (`json_number`); a dict keyed by a tuple is written as a list
of objects; observations as a header and one list per request.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ambit.chaos.report_common import experiment_of, passed
from ambit.chaos.run import ChaosRun, LoadParameters
from ambit.reliability.flows import (
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

FORMAT = "ambit-chaos-report/1"
OBSERVATION_FIELDS = (
    "source",
    "destination",
    "kind",
    "start",
    "end",
    "ok",
    "outcome",
    "error",
    "served_node",
)


def json_number(value: float) -> float | str:
    """A float as JSON can hold it: non-finite values as strings."""
    return value if math.isfinite(value) else str(value)


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _observation_row(o: Observation) -> list[Any]:
    return [
        o.source,
        o.destination,
        o.kind,
        json_number(o.start),
        json_number(o.end),
        o.ok,
        o.outcome,
        o.error,
        o.served_node,
    ]


def _observation(row: Sequence[Any]) -> Observation:
    source, destination, kind, start, end, ok, outcome, error, served_node = row
    return Observation(
        source=source,
        destination=destination,
        kind=kind,
        start=_float(start),
        end=_float(end),
        ok=bool(ok),
        outcome=outcome,
        error=error,
        served_node=served_node,
    )


def _observations_json(observations: Iterable[Observation]) -> dict[str, Any]:
    return {"fields": list(OBSERVATION_FIELDS), "rows": [_observation_row(o) for o in observations]}


def _observations(data: Mapping[str, Any]) -> tuple[Observation, ...]:
    fields = tuple(data["fields"])
    if fields != OBSERVATION_FIELDS:
        raise ValueError(f"observation fields {fields} are not {OBSERVATION_FIELDS}")
    return tuple(_observation(row) for row in data["rows"])


def _window_json(w: Window) -> dict[str, Any]:
    return {
        "start": json_number(w.start),
        "end": json_number(w.end),
        "must_fail": w.must_fail,
        "reason": w.reason,
    }


def _window(data: Mapping[str, Any]) -> Window:
    return Window(_float(data["start"]), _float(data["end"]), bool(data["must_fail"]), data["reason"])


def _events_json(e: FaultEvents) -> dict[str, Any]:
    return {
        "experiment": e.experiment,
        "target": e.target,
        "target_node": e.target_node,
        "start": json_number(e.start),
        "end": json_number(e.end),
        "episodes": [[json_number(a), json_number(b)] for a, b in e.episodes],
        "marks": [[name, json_number(t)] for name, t in e.marks],
        "measures": [[name, json_number(v)] for name, v in e.measures],
    }


def _events(data: Mapping[str, Any]) -> FaultEvents:
    return FaultEvents(
        experiment=data["experiment"],
        target=data["target"],
        target_node=data["target_node"],
        start=_float(data["start"]),
        end=_float(data["end"]),
        episodes=tuple((_float(a), _float(b)) for a, b in data["episodes"]),
        marks=tuple((name, _float(t)) for name, t in data["marks"]),
        measures=tuple((name, _float(v)) for name, v in data.get("measures", [])),
    )


def _topology_json(t: Topology) -> dict[str, Any]:
    return {
        "nodes": list(t.nodes),
        "sources": list(t.sources),
        "controlplane_nodes": list(t.controlplane_nodes),
        "destinations": [
            {
                "name": d.name,
                "kind": d.kind,
                "endpoint_nodes": list(d.endpoint_nodes),
                "waypoint": None
                if d.waypoint is None
                else {"name": d.waypoint.name, "replica_nodes": list(d.waypoint.replica_nodes)},
            }
            for d in t.destinations
        ],
    }


def _topology(data: Mapping[str, Any]) -> Topology:
    destinations = tuple(
        Destination(
            name=d["name"],
            kind=d["kind"],
            endpoint_nodes=tuple(d["endpoint_nodes"]),
            waypoint=None
            if d["waypoint"] is None
            else WaypointPlacement(d["waypoint"]["name"], tuple(d["waypoint"]["replica_nodes"])),
        )
        for d in data["destinations"]
    )
    return Topology(
        nodes=tuple(data["nodes"]),
        sources=tuple(data["sources"]),
        destinations=destinations,
        controlplane_nodes=tuple(data["controlplane_nodes"]),
    )


def _prediction_json(p: Prediction) -> dict[str, Any]:
    return {
        "rules": list(p.rules),
        "windows": [
            {
                "source": key.source,
                "destination": key.destination,
                "kind": key.kind,
                "windows": [_window_json(w) for w in windows],
            }
            for key, windows in sorted(p.windows.items())
        ],
    }


def _prediction(data: Mapping[str, Any], events: FaultEvents) -> Prediction:
    windows = {
        FlowKey(f["source"], f["destination"], f["kind"]): tuple(_window(w) for w in f["windows"])
        for f in data["windows"]
    }
    return Prediction(fault=events, windows=windows, rules=tuple(data["rules"]))


def _verdict_json(v: Verdict) -> dict[str, Any]:
    return {
        "passed": v.passed,
        "reasons": list(v.reasons),
        "columns": list(v.columns),
        "matrix": [
            {
                "source": s,
                "column": c,
                "total": cell.total,
                "failed": cell.failed,
                "predicted": cell.predicted,
            }
            for (s, c), cell in v.matrix.items()
        ],
        "crossed": [{"source": s, "served": n, "answered": count} for (s, n), count in v.crossed.items()],
        "unexpected": _observations_json(v.unexpected),
        "bypassed": _observations_json(v.bypassed),
        "unobserved": [[k.source, k.destination, k.kind] for k in v.unobserved],
        "pairs_touched": v.pairs_touched,
        "pairs_predicted": v.pairs_predicted,
        "pair_bound": json_number(v.pair_bound),
        "recovery_seconds": None if v.recovery_seconds is None else json_number(v.recovery_seconds),
        "total": v.total,
        "failed": v.failed,
    }


def _verdict(data: Mapping[str, Any]) -> Verdict:
    recovery = data["recovery_seconds"]
    return Verdict(
        passed=bool(data["passed"]),
        reasons=tuple(data["reasons"]),
        columns=tuple(data["columns"]),
        matrix={
            (c["source"], c["column"]): PairCell(int(c["total"]), int(c["failed"]), bool(c["predicted"]))
            for c in data["matrix"]
        },
        crossed={(c["source"], c["served"]): int(c["answered"]) for c in data["crossed"]},
        unexpected=_observations(data["unexpected"]),
        bypassed=_observations(data["bypassed"]),
        unobserved=tuple(FlowKey(s, d, k) for s, d, k in data["unobserved"]),
        pairs_touched=int(data["pairs_touched"]),
        pairs_predicted=int(data["pairs_predicted"]),
        pair_bound=_float(data["pair_bound"]),
        recovery_seconds=None if recovery is None else _float(recovery),
        total=int(data["total"]),
        failed=int(data["failed"]),
    )


def _floats_json(values: Mapping[str, float]) -> dict[str, float | str]:
    return {name: json_number(value) for name, value in values.items()}


def run_to_json(run: ChaosRun) -> dict[str, Any]:
    """One run as JSON values (see the module docstring for non-finite floats and tuple keys).

    ``context`` (seed, commit, machine...), ``placement`` and ``load`` are what repeating the run needs;
    ``observations`` are the evidence the verdict was reached on."""
    t, load = run.timing, run.load
    return {
        "experiment": run.experiment,
        "index": run.index,
        "passed": run.verdict.passed,
        "origin": json_number(run.origin),
        "context": dict(run.context),
        "placement": dict(run.placement),
        "load": _floats_json(
            {
                "rate": load.rate,
                "timeout": load.timeout,
                "duration": load.duration,
                "keepalive_max_age": load.keepalive_max_age,
            }
        ),
        "timing": _floats_json(
            {
                "request_timeout": t.request_timeout,
                "node_grace": t.node_grace,
                "push_delay": t.push_delay,
                "hbone_connect_timeout": t.hbone_connect_timeout,
                "dead_peer_timeout": t.dead_peer_timeout,
                "keepalive_max_age": t.keepalive_max_age,
                "drain_deadline": t.drain_deadline,
                "recovery_slack": t.recovery_slack,
            }
        ),
        "topology": _topology_json(run.topology),
        "events": _events_json(run.events),
        "prediction": _prediction_json(run.prediction),
        "verdict": _verdict_json(run.verdict),
        "observations": _observations_json(run.observations),
    }


def run_from_json(data: Mapping[str, Any]) -> ChaosRun:
    """The reverse of `run_to_json`."""
    events = _events(data["events"])
    load = data["load"]
    return ChaosRun(
        experiment=data["experiment"],
        index=int(data["index"]),
        topology=_topology(data["topology"]),
        timing=Timing(**{name: _float(value) for name, value in data["timing"].items()}),
        load=LoadParameters(
            rate=_float(load["rate"]),
            timeout=_float(load["timeout"]),
            duration=_float(load["duration"]),
            keepalive_max_age=_float(load["keepalive_max_age"]),
        ),
        events=events,
        prediction=_prediction(data["prediction"], events),
        verdict=_verdict(data["verdict"]),
        observations=_observations(data["observations"]),
        origin=_float(data["origin"]),
        placement=dict(data["placement"]),
        context=dict(data["context"]),
    )


def report_json(runs: Sequence[ChaosRun]) -> dict[str, Any]:
    """``report.json`` of one experiment's runs."""
    return {
        "format": FORMAT,
        "experiment": experiment_of(runs),
        "passed": passed(runs),
        "runs": [run_to_json(r) for r in runs],
    }


def read_report(path: Path) -> list[ChaosRun]:
    """The runs of a ``report.json``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file")
    return [run_from_json(r) for r in data["runs"]]


def dump_json(data: Any) -> str:
    """JSON, indented, with each list of plain values on one line (one line per observation)."""
    return _pretty(data, 0) + "\n"


def _pretty(value: Any, depth: int) -> str:
    pad, end = " " * (depth + 1), " " * depth
    if isinstance(value, dict) and value:
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_pretty(v, depth + 1)}"
            for k, v in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    if isinstance(value, list | tuple) and any(isinstance(v, dict | list | tuple) for v in value):
        return "[\n" + ",\n".join(pad + _pretty(v, depth + 1) for v in value) + "\n" + end + "]"
    return json.dumps(value, allow_nan=False, ensure_ascii=False)
