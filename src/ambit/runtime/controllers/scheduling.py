"""The scheduler: Deployments become Pods and unbound Pods get a node (the rules are the pure
:mod:`ambit.runtime.scheduler`); a pod no node fits stays Pending with the reason."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

from ambit.runtime import scheduler
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.store import StoreClient
from ambit.store.types import StoreError

log = logging.getLogger("ambit.runtime.daemon")

RECENT_WRITES = 10.0  # a write the informer has not shown yet is remembered this long


class SchedulerController:
    def __init__(self, client: StoreClient, view: ClusterView, rng: random.Random) -> None:
        self.client = client
        self.view = view
        self.rng = rng
        # writes the informer may not have seen yet: (ns, name) → (object, monotonic time)
        self._created: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}
        self._deleted: dict[tuple[str, str], float] = {}

    async def sync(self) -> None:
        pods = self._pods_view()
        nodes = [
            scheduler.NodeInfo(
                meta(n)["name"],
                dict(meta(n).get("labels") or {}),
                unschedulable=bool((n.get("spec") or {}).get("unschedulable")),
            )
            for n in self.view.objects("Node")
        ]
        for deployment in self.view.objects("Deployment"):
            plan = scheduler.pods_for_deployment(deployment, pods, self.rng)
            ns = meta(deployment).get("namespace") or "default"
            for name in plan.delete:
                with contextlib.suppress(StoreError):
                    await self.client.delete("Pod", name, ns)
                self._deleted[(ns, name)] = time.monotonic()
                pods = [p for p in pods if (meta(p).get("namespace"), meta(p).get("name")) != (ns, name)]
            for pod in plan.create:
                try:
                    created = await self.client.create(pod)
                except StoreError as exc:
                    log.warning("creating a pod of %s/%s: %s", ns, meta(deployment).get("name"), exc)
                    continue
                pods.append(created)
                self._created[(ns, meta(created)["name"])] = (created, time.monotonic())
        placed = [
            scheduler.PlacedPod(
                meta(p).get("namespace") or "default", meta(p).get("labels") or {}, p["spec"]["nodeName"]
            )
            for p in pods
            if (p.get("spec") or {}).get("nodeName") and scheduler.is_active(p)
        ]
        for pod in pods:
            if (pod.get("spec") or {}).get("nodeName") or not scheduler.is_active(pod):
                continue
            node = scheduler.place(pod, nodes, placed)
            if node is None:
                await self._mark_unschedulable(pod)
                continue
            bound = {**pod, "spec": {**pod["spec"], "nodeName": node}}
            try:
                await self.client.update(bound)
            except StoreError as exc:
                log.info("binding %s: %s", meta(pod).get("name"), exc)
                continue
            placed.append(
                scheduler.PlacedPod(
                    meta(pod).get("namespace") or "default", meta(pod).get("labels") or {}, node
                )
            )

    async def _mark_unschedulable(self, pod: dict[str, Any]) -> None:
        """A pod no node fits stays Pending, saying why (as the Kubernetes scheduler does)."""
        status = {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                {"type": "Ready", "status": "False"},
            ],
        }
        if pod.get("status") == status:
            return
        try:
            await self.client.update({**pod, "status": status})
        except StoreError as exc:
            log.debug("status of unschedulable %s: %s", meta(pod).get("name"), exc)

    def _pods_view(self) -> list[dict[str, Any]]:
        """The cached pods, plus those just created and minus those just deleted (for 10 s at most)."""
        now = time.monotonic()
        cached = self.view.objects("Pod")
        keys = {(meta(p).get("namespace"), meta(p).get("name")) for p in cached}
        for key, (_, at) in list(self._created.items()):
            if key in keys or now - at > RECENT_WRITES:
                del self._created[key]
        for key, at in list(self._deleted.items()):
            if key not in keys or now - at > RECENT_WRITES:
                del self._deleted[key]
        view = [p for p in cached if (meta(p).get("namespace"), meta(p).get("name")) not in self._deleted]
        return view + [obj for obj, _ in self._created.values()]
