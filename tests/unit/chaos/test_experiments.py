"""The experiments' pure parts: the handover read from a ztunnel's log."""

from __future__ import annotations

from ambit.chaos.experiments import handover_seconds

LOG = """\
2026-12-07 23:28:11,748 INFO ambit.ztunnel.proxy: drain deadline for 77b3: aborted 9 connections
2026-12-07 23:28:12,990 INFO ambit.ztunnel.app: serving pod ambit-chaos/echo-node2 (77b3)
2026-12-07 23:28:12,993 INFO ambit.ztunnel.app: serving pod ambit-chaos/load-node2 (e4a3)
2026-12-07 23:28:13,050 INFO ambit.cli.ztunnel: draining (deadline 25 s)
2026-12-07 23:28:13,081 INFO ambit.ztunnel.manager: listeners closed (2 pods); draining
2026-12-07 23:28:14,000 INFO ambit.ztunnel.app: serving pod ambit-chaos/late (ffff)
"""


def test_the_handover_runs_from_the_last_pod_served_to_the_old_listeners_closing() -> None:
    assert handover_seconds(LOG) == 0.088


def test_no_handover_without_both_lines() -> None:
    assert handover_seconds(LOG.replace("listeners closed", "something")) is None
    drained_only = "\n".join(line for line in LOG.splitlines() if "serving pod" not in line)
    assert handover_seconds(drained_only) is None
