"""One experiment run as the engine records it (`ChaosRun`): all a report, an image or a rerun needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ambit.reliability.flows import FaultEvents, Observation, Prediction, Timing, Topology, Verdict


@dataclass(frozen=True, slots=True)
class LoadParameters:
    """The probe's load: requests per second per flow and connection kind, per-request timeout, how long."""

    rate: float
    timeout: float
    duration: float
    keepalive_max_age: float


@dataclass(frozen=True, slots=True)
class ChaosRun:
    """One run of one experiment.

    ``origin``: the monotonic time the probe load began; reports show times relative to it.
    ``placement``: pod name -> node, of the probe workload and of what the fault touched.
    ``context``: seed, commit, machine, cluster name, ambit version... (JSON values)."""

    experiment: str
    index: int  # 1..K with --runs K
    topology: Topology
    timing: Timing
    load: LoadParameters
    events: FaultEvents
    prediction: Prediction
    verdict: Verdict
    observations: tuple[Observation, ...]
    origin: float
    placement: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
