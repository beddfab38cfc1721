"""Rolling a Deployment through the store: ``kubectl rollout restart`` as a write
(:func:`restart_deployment`, the template :func:`ambit.runtime.deployment_revisions.restart_template`
decides) and whether the rollout is over (:func:`rolled_out`, kubectl's ``rollout status``). Used by
``ambit rollout restart`` (:mod:`ambit.cli.rollout`, which turns the errors into kubectl's lines) and
the chaos experiment ``app-rollout`` (:mod:`ambit.chaos.lifecycle_faults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ambit.runtime.deployment_revisions import RolloutError, restart_template, rollout_status
from ambit.store.client import StoreClient
from ambit.store.labels import LABEL_RETRIES
from ambit.store.types import Conflict, Obj


class RestartTooSoon(RolloutError):
    """The template already carries this restart time: a restart was triggered within the last second."""


class KeptChanging(RolloutError):
    """Every write of the restart met a concurrent change (:data:`LABEL_RETRIES` attempts)."""


async def restart_deployment(client: StoreClient, name: str, namespace: str, now_rfc3339: str) -> Obj:
    """Set the template's ``kubectl.kubernetes.io/restartedAt`` to `now_rfc3339` (compare-and-swap,
    retried on a conflict); the stored Deployment. Raises ``NotFound`` (and other store errors) as the
    store does, :class:`RolloutError` for a paused Deployment, :class:`RestartTooSoon` and
    :class:`KeptChanging`."""
    for _ in range(LABEL_RETRIES):
        obj = await client.get("Deployment", name, namespace)
        spec = dict(obj.get("spec") or {})
        template = restart_template(obj, now_rfc3339)
        if template == spec.get("template"):
            raise RestartTooSoon(f"deployment {name} was restarted at {now_rfc3339} already")
        try:
            return await client.update({**obj, "spec": {**spec, "template": template}})
        except Conflict:
            continue
    raise KeptChanging(f"kept changing; gave up after {LABEL_RETRIES} attempts")


def rolled_out(deployment: Mapping[str, Any]) -> bool:
    """kubectl's ``rollout status`` says it is done: the controller has seen the latest spec, every
    replica is updated and available, and no old replica is left. Raises
    :class:`ambit.runtime.deployment_revisions.ProgressDeadlineExceeded` as kubectl fails."""
    return rollout_status(deployment)[1]
