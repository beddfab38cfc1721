"""The experiments `ambit chaos` knows, by name: the one registry the engine, the suite and the CLI read."""

from __future__ import annotations

from ambit.chaos import controlplane_faults, experiments, lifecycle_faults, reboot_fault
from ambit.chaos.experiments import Experiment

EXPERIMENTS: dict[str, Experiment] = {
    "ztunnel-kill": experiments.ztunnel_kill,
    "ztunnel-restart": experiments.ztunnel_restart,
    "node-partition": experiments.node_partition,
    "node-reboot": reboot_fault.node_reboot,
    "controlplane-down": controlplane_faults.controlplane_down,
    "ca-down": controlplane_faults.ca_down,
    "waypoint-replica-kill": experiments.waypoint_replica_kill,
    "waypoint-down": experiments.waypoint_down,
    "node-drain": lifecycle_faults.node_drain,
    "app-rollout": lifecycle_faults.app_rollout,
}
NEEDS_WAYPOINT = frozenset({"waypoint-replica-kill", "waypoint-down"})
