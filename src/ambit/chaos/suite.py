"""Several runs of one experiment (`run_many`), and the suite's table (`SUITE`, `options_for`): every
experiment, in the order `ambit chaos suite` runs them, at full length (`make chaos`) or shortened (the
reduced suite in `make test`). Each experiment's runs are written to ``<directory>/<experiment>/`` as
they finish. Each experiment restores what it changed (heals its cut, starts what it stopped, uncordons,
deletes its PDB); the probe's waypoint, once deployed, stays. The engine refuses to start a run on a
cluster a fault left changed (`engine.check_untouched`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from ambit.chaos.engine import RunOptions, run_experiment
from ambit.chaos.report import write_report
from ambit.chaos.run import ChaosRun
from ambit.runtime.handle import ClusterHandle

Profile = Literal["full", "short"]

# Per experiment, in the order the suite runs them, what differs from RunOptions' defaults. The short
# profile (the reduced suite in `make test`) halves the probe's rate: a 2-core CI machine runs the whole
# cluster, and a verdict that failed for want of CPU could never be retried green. ca-down needs a
# cluster started with `ambit up --test-fault-endpoints` (and a short --workload-cert-ttl to see refreshes).
# The short profile: half the probe's rate, 1.5 s of load before the fault and 4 s after it.
SHORT: dict[str, float] = {"rate": 5.0, "warmup": 1.5, "tail": 4.0}
SUITE: dict[str, dict[Profile, dict[str, float]]] = {
    "ztunnel-kill": {"full": {}, "short": {**SHORT}},
    "ztunnel-restart": {"full": {"restarts": 10}, "short": {**SHORT, "restarts": 1}},
    "node-partition": {
        "full": {"duration": 60.0, "memory_settle": 30.0},
        "short": {**SHORT, "duration": 10.0},
    },
    "node-reboot": {"full": {}, "short": {**SHORT}},
    "controlplane-down": {"full": {"duration": 120.0}, "short": {**SHORT, "duration": 10.0}},
    "ca-down": {"full": {"duration": 45.0}, "short": {**SHORT, "duration": 10.0}},
    "waypoint-replica-kill": {"full": {}, "short": {**SHORT}},
    "waypoint-down": {"full": {"duration": 20.0}, "short": {**SHORT, "duration": 8.0}},
    "node-drain": {"full": {}, "short": {**SHORT}},
    "app-rollout": {"full": {}, "short": {**SHORT}},
}


def options_for(experiment: str, profile: Profile, base: RunOptions) -> RunOptions:
    overrides: dict[str, Any] = dict(SUITE.get(experiment, {}).get(profile, {}))
    if "restarts" in overrides:
        overrides["restarts"] = int(overrides["restarts"])
    return replace(base, experiment=experiment, **overrides)


def run_many(
    handle: ClusterHandle,
    options: RunOptions,
    runs: int,
    directory: Path,
    on_run: Callable[[ChaosRun], None] | None = None,
) -> list[ChaosRun]:
    """``runs`` runs of one experiment (seed, seed+1, ...); the report is rewritten after each."""
    done: list[ChaosRun] = []
    where = directory / options.experiment
    for index in range(1, runs + 1):
        run = run_experiment(
            handle, replace(options, seed=options.seed + index - 1), where / f"run-{index}", index
        )
        done.append(run)
        write_report(done, where)
        if on_run is not None:
            on_run(run)
    return done
