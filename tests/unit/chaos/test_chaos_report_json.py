"""`ambit.chaos.report_json`: a run as JSON and read back, non-finite floats and tuple keys in JSON."""

from __future__ import annotations

import json
import math

from chaos_runs import quiet, ztunnel_kill

from ambit.chaos import report_json
from ambit.reliability.flows import FlowKey, WaypointPlacement


def _no_constants(name: str) -> float:
    raise AssertionError(f"report.json holds {name}, which is not JSON")


def _through_json(data: object) -> object:
    return json.loads(json.dumps(data, allow_nan=False), parse_constant=_no_constants)


def test_a_run_reads_back_equal_to_itself_through_json() -> None:
    run = ztunnel_kill(unexpected=True, inf_window=True)
    data = report_json.run_to_json(run)
    back = report_json.run_from_json(_through_json(data))  # type: ignore[arg-type]
    assert back == run
    assert back.prediction.windows[FlowKey("node2", "spread", "new")][0].end == math.inf


def test_json_writes_infinity_as_a_string_and_tuple_keys_as_objects() -> None:
    data = report_json.run_to_json(ztunnel_kill(inf_window=True))
    flows = {(f["source"], f["destination"], f["kind"]): f["windows"] for f in data["prediction"]["windows"]}
    assert flows["node2", "spread", "new"][0]["end"] == "inf"
    assert {"source": "node1", "column": "node2", "total": 240, "failed": 10, "predicted": True} in data[
        "verdict"
    ]["matrix"]
    assert all(set(c) == {"source", "served", "answered"} for c in data["verdict"]["crossed"])
    assert data["observations"]["fields"] == list(report_json.OBSERVATION_FIELDS)
    assert len(data["observations"]["rows"]) == 2880


def test_a_run_without_failures_keeps_recovery_none() -> None:
    run = quiet(ztunnel_kill())
    assert run.verdict.recovery_seconds is None
    assert report_json.run_from_json(_through_json(report_json.run_to_json(run))) == run  # type: ignore[arg-type]


def test_a_waypoint_and_the_context_survive_the_round_trip() -> None:
    run = report_json.run_from_json(_through_json(report_json.run_to_json(ztunnel_kill())))  # type: ignore[arg-type]
    assert run.topology.destination("waypointed").waypoint == WaypointPlacement("wp", ("node2",))
    assert run.context["seed"] == 7 and run.placement["load-node2"] == "node2"
