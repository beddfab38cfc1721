"""The workload controllers and the scheduler, one pass each reconcile:

1. the deployment controller: each Deployment's ReplicaSets (created, scaled, rolled, cleaned up)
   and its ``status`` (the pure :mod:`ambit.runtime.deployments`);
2. the ReplicaSet controller: each ReplicaSet's Pods (created, or the surplus deleted — gracefully,
   through the store) and its ``status`` (:mod:`ambit.runtime.replica_sets`);
3. the scheduler: unbound Pods get ``spec.nodeName`` (:mod:`ambit.runtime.scheduler`); a pod no node
   fits stays Pending with the reason.

The informer's cache lags the controllers' own writes by a moment; objects written in the last
10 s overlay it (the newer ``resourceVersion`` wins), so a pass never acts twice on a stale view.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from typing import Any

from ambit.runtime import deployments, replica_sets, scheduler
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.store import StoreClient
from ambit.store.types import StoreError

log = logging.getLogger("ambit.runtime.daemon")

RECENT_WRITES = 10.0  # a write the informer has not shown yet is remembered this long

Key = tuple[str, str]  # (namespace, name)


def _key(obj: dict[str, Any]) -> Key:
    return (str(meta(obj).get("namespace") or "default"), str(meta(obj).get("name")))


def _node_ready(node: dict[str, Any]) -> bool:
    """False only when the node's Ready condition says so (a node without conditions is Ready)."""
    for condition in (node.get("status") or {}).get("conditions") or ():
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return True


def _rv(obj: dict[str, Any]) -> int:
    return int(meta(obj).get("resourceVersion") or 0)


class _Recent:
    """Objects of one kind this controller wrote (or deleted) that the informer may not show yet."""

    def __init__(self) -> None:
        self.written: dict[Key, tuple[dict[str, Any], float]] = {}
        self.deleted: dict[Key, float] = {}

    def wrote(self, obj: dict[str, Any]) -> None:
        self.written[_key(obj)] = (obj, time.monotonic())
        self.deleted.pop(_key(obj), None)  # deleted and made again under the same name

    def gone(self, key: Key) -> None:
        self.deleted[key] = time.monotonic()
        self.written.pop(key, None)

    def overlay(self, cached: list[dict[str, Any]]) -> list[dict[str, Any]]:
        now = time.monotonic()
        by_key = {_key(o): o for o in cached}
        for key, (obj, at) in list(self.written.items()):
            seen = by_key.get(key)
            if now - at > RECENT_WRITES or (seen is not None and _rv(seen) >= _rv(obj)):
                del self.written[key]
            else:
                by_key[key] = obj
        for key, at in list(self.deleted.items()):
            if key not in by_key or now - at > RECENT_WRITES:
                self.deleted.pop(key, None)
            else:
                del by_key[key]
        return list(by_key.values())


class SchedulerController:
    def __init__(self, client: StoreClient, view: ClusterView, rng: random.Random) -> None:
        self.client = client
        self.view = view
        self.rng = rng
        self._pods = _Recent()
        self._replica_sets = _Recent()

    async def sync(self) -> None:
        now = time.time()
        replica_set_list = self._replica_sets.overlay(self.view.objects("ReplicaSet"))
        for deployment in self.view.objects("Deployment"):
            try:
                await self._sync_deployment(deployment, replica_set_list, now)
            except (StoreError, ValueError) as exc:
                log.warning("deployment %s/%s: %s", *_key(deployment), exc)
        pods = self._pods.overlay(self.view.objects("Pod"))
        for rs in self._replica_sets.overlay(self.view.objects("ReplicaSet")):
            pods = await self._sync_replica_set(rs, pods, now)
        await self._schedule(pods)

    async def _sync_deployment(
        self, deployment: dict[str, Any], replica_set_list: list[dict[str, Any]], now: float
    ) -> None:
        ns = _key(deployment)[0]
        pods = [p for p in self._pods.overlay(self.view.objects("Pod")) if _key(p)[0] == ns]
        mine = [rs for rs in replica_set_list if _key(rs)[0] == ns]
        plan = deployments.reconcile(deployment, mine, pods, now=now)
        for rs in plan.create:
            try:
                self._replica_sets.wrote(await self.client.create(rs))
            except StoreError as exc:
                log.info("creating ReplicaSet %s: %s", meta(rs).get("name"), exc)
        for rs in plan.update:
            try:
                self._replica_sets.wrote(await self.client.update(rs))
            except StoreError as exc:
                log.info("scaling ReplicaSet %s: %s", meta(rs).get("name"), exc)
        for name in plan.delete:
            with contextlib.suppress(StoreError):
                await self.client.delete("ReplicaSet", name, ns)
            self._replica_sets.gone((ns, name))
        if plan.deployment_annotations or plan.status_changed:
            updated = {**deployment, "status": plan.status}
            if plan.deployment_annotations:
                annotations = {**(meta(deployment).get("annotations") or {}), **plan.deployment_annotations}
                updated["metadata"] = {**meta(deployment), "annotations": annotations}
            with contextlib.suppress(StoreError):  # a conflict: the next pass computes it again
                await self.client.update(updated)

    async def _sync_replica_set(
        self, rs: dict[str, Any], pods: list[dict[str, Any]], now: float
    ) -> list[dict[str, Any]]:
        ns = _key(rs)[0]
        plan = replica_sets.pods_for_replica_set(rs, [p for p in pods if _key(p)[0] == ns], self.rng)
        for name in plan.delete:
            try:
                deleted = await self.client.delete("Pod", name, ns)
            except StoreError as exc:
                log.info("deleting pod %s/%s: %s", ns, name, exc)
                continue
            pods = [p for p in pods if _key(p) != (ns, name)]
            if meta(deleted).get("deletionTimestamp"):
                self._pods.wrote(deleted)  # terminating: still there, no longer active
                pods.append(deleted)
            else:
                self._pods.gone((ns, name))
        for pod in plan.create:
            try:
                created = await self.client.create(pod)
            except StoreError as exc:
                log.warning("creating a pod of ReplicaSet %s/%s: %s", ns, meta(rs).get("name"), exc)
                continue
            self._pods.wrote(created)
            pods.append(created)
        status = replica_sets.replica_set_status(rs, [p for p in pods if _key(p)[0] == ns], now=now)
        if status != (rs.get("status") or {}):
            try:
                self._replica_sets.wrote(await self.client.update({**rs, "status": status}))
            except StoreError as exc:
                log.debug("status of ReplicaSet %s: %s", meta(rs).get("name"), exc)
        return pods

    async def _schedule(self, pods: list[dict[str, Any]]) -> None:
        nodes = [
            scheduler.NodeInfo(
                meta(n)["name"],
                dict(meta(n).get("labels") or {}),
                # cordoned, or NotReady (Kubernetes taints it not-ready/unreachable:NoSchedule)
                unschedulable=bool((n.get("spec") or {}).get("unschedulable")) or not _node_ready(n),
            )
            for n in self.view.objects("Node")
        ]
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
                self._pods.wrote(await self.client.update(bound))
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
