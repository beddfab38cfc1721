"""Autoscaling and disruption budgets: the runtime's HPA, VPA recommender and PDB status controller.

Every :data:`SYNC_PERIOD` seconds (Kubernetes' HPA syncs every 15 s; a local cluster reacts faster):

* **Measure** each running pod: CPU (cores, the rate of its process tree's CPU time,
  :mod:`ambit.runtime.podmetrics`) and memory (RSS); for pods an HPA scales on the Pods metric
  :data:`REQUESTS_METRIC`, the per-pod rate of ``istio_requests_total{reporter="waypoint"}`` over the
  last 30 s, read from the pod's own ``/stats/prometheus`` on 15020 (a waypoint's metrics port), from
  the pod's node.
* **HorizontalPodAutoscaler** (autoscaling/v2, target a Deployment): the pods selected by the
  Deployment, measured as above, go through Kubernetes' algorithm (:mod:`ambit.runtime.hpa`); a new
  scale is written to the Deployment's ``spec.replicas`` (the rollout and graceful deletion do the
  rest), the HPA's ``status`` when it changes.
* **VerticalPodAutoscaler** (updateMode Off): each pod's samples feed the recommender
  (:mod:`ambit.runtime.vpa`); ``status.recommendation`` and the ``RecommendationProvided`` condition
  are written. A pod is measured as a whole: its usage is attributed to its first container.
* **PodDisruptionBudget** ``status`` (:func:`ambit.resources.disruption.pdb_status`, the same rule the
  store's Eviction uses), written when it changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ambit.resources import disruption
from ambit.resources.objects import selector_matches
from ambit.runtime import hpa, podmetrics, replica_sets, vpa
from ambit.runtime.admin_client import AdminError, http_get
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.runtime.layout import node_index
from ambit.runtime.netns import NetRuntime
from ambit.store import StoreClient
from ambit.store.types import StoreError

log = logging.getLogger("ambit.runtime.daemon")

SYNC_PERIOD = 5.0
REQUESTS_METRIC = "istio_requests_per_second"
REQUESTS_WINDOW = 30.0
METRICS_PORT = 15020
SCRAPE_BUDGET = 3.0  # every scrape of a round together, at most

PodPids = Callable[[], Mapping[str, list[int]]]  # pod uid → the pids of its containers


@dataclass
class _Usage:
    cpu_cores: float | None = None
    memory_bytes: float | None = None
    requests: deque[tuple[float, float]] = field(default_factory=deque)  # (time, istio_requests_total)

    def request_rate(self) -> float | None:
        if len(self.requests) < 2:
            return None
        (t0, v0), (t1, v1) = self.requests[0], self.requests[-1]
        return max(0.0, v1 - v0) / (t1 - t0) if t1 > t0 else None


def waypoint_requests_total(text: str) -> float:
    """The sum of ``istio_requests_total`` samples reported by a waypoint in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("istio_requests_total{") and 'reporter="waypoint"' in line:
            with contextlib.suppress(ValueError, IndexError):
                total += float(line.rsplit(" ", 1)[1])
    return total


def _uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


class AutoscalingController:
    def __init__(self, client: StoreClient, view: ClusterView, net: NetRuntime, pod_pids: PodPids) -> None:
        self.client = client
        self.view = view
        self.net = net
        self.pod_pids = pod_pids
        self._meter = podmetrics.CpuMeter()
        self._usage: dict[str, _Usage] = {}
        self._hpa_history: dict[str, hpa.HpaHistory] = {}
        self._vpa_state: dict[str, vpa.VpaState] = {}
        self._last = 0.0

    async def sync(self) -> None:
        now = time.time()
        if now - self._last < SYNC_PERIOD:
            return
        self._last = now
        pods = [p for p in self.view.objects("Pod") if _uid(p)]
        await self._measure(pods, now)
        for budget in self.view.objects("PodDisruptionBudget"):
            await self._sync_budget(budget, pods, now)
        for autoscaler in self.view.objects("HorizontalPodAutoscaler"):
            try:
                await self._sync_hpa(autoscaler, pods, now)
            except (StoreError, ValueError) as exc:
                log.warning("HorizontalPodAutoscaler %s: %s", meta(autoscaler).get("name"), exc)
        for recommender in self.view.objects("VerticalPodAutoscaler"):
            try:
                await self._sync_vpa(recommender, pods, now)
            except (StoreError, ValueError) as exc:
                log.warning("VerticalPodAutoscaler %s: %s", meta(recommender).get("name"), exc)

    # -- measuring ------------------------------------------------------------------------------

    async def _measure(self, pods: list[dict[str, Any]], now: float) -> None:
        roots = self.pod_pids()
        trees = await asyncio.to_thread(podmetrics.process_trees, [p for ps in roots.values() for p in ps])
        for uid in [u for u in self._usage if u not in roots]:
            del self._usage[uid]
            self._meter.forget(uid)
        for uid, pids in roots.items():
            tree = [pid for root in pids for pid in trees.get(root, [])]
            usage = self._usage.setdefault(uid, _Usage())
            if not tree:
                usage.cpu_cores = usage.memory_bytes = None
                continue
            seconds = podmetrics.cpu_seconds(tree)
            usage.cpu_cores = self._meter.update(uid, seconds, time.monotonic(), incarnation=tuple(pids))
            usage.memory_bytes = float(podmetrics.memory_bytes(tree))
        targeted = self._scaled_on_requests()
        scraped = [p for p in pods if _uid(p) in self._usage and _uid(p) in targeted]
        try:  # all scrapes together, bounded: this runs inside the daemon's reconcile pass
            async with asyncio.timeout(SCRAPE_BUDGET):
                totals = await asyncio.gather(*(asyncio.to_thread(self._scrape, p) for p in scraped))
        except TimeoutError:
            log.warning(
                "autoscaling: scraping %d pods took over %.0fs; skipped this round",
                len(scraped),
                SCRAPE_BUDGET,
            )
            return
        for pod, total in zip(scraped, totals, strict=True):
            if total is None:
                continue
            window = self._usage[_uid(pod)].requests
            window.append((now, total))
            while len(window) > 2 and now - window[1][0] >= REQUESTS_WINDOW:
                window.popleft()

    def _scaled_on_requests(self) -> set[str]:
        """The uids of the pods an HPA with the requests metric scales (their Deployments select them)."""
        uids: set[str] = set()
        for autoscaler in self.view.objects("HorizontalPodAutoscaler"):
            if not any(
                (m.get("pods") or {}).get("metric", {}).get("name") == REQUESTS_METRIC
                for m in (autoscaler.get("spec") or {}).get("metrics") or ()
            ):
                continue
            with contextlib.suppress(ValueError):
                target = self._target(autoscaler, "scaleTargetRef")
                if target is not None:
                    uids.update(_uid(p) for p in self._selected(target))
        return uids

    def _scrape(self, pod: dict[str, Any]) -> float | None:
        status, node = pod.get("status") or {}, (pod.get("spec") or {}).get("nodeName")
        if not status.get("podIP") or not node:
            return None
        try:
            code, body = http_get(
                self.net.node_netns(node_index(str(node))),
                "/stats/prometheus",
                host=str(status["podIP"]),
                port=METRICS_PORT,
                timeout=2.0,
            )
        except (OSError, AdminError, ValueError):
            return None
        return waypoint_requests_total(body.decode("utf-8", "replace")) if code == 200 else None

    # -- targets --------------------------------------------------------------------------------

    def _target(self, obj: dict[str, Any], field_name: str) -> dict[str, Any] | None:
        ref = (obj.get("spec") or {}).get(field_name) or {}
        if ref.get("kind") != "Deployment":
            raise ValueError(f"{field_name}: only a Deployment can be scaled here, not {ref.get('kind')!r}")
        return self.view.get("Deployment", str(ref.get("name")), str(meta(obj).get("namespace") or "default"))

    def _selected(self, deployment: dict[str, Any]) -> list[dict[str, Any]]:
        ns = meta(deployment).get("namespace") or "default"
        selector = (deployment.get("spec") or {}).get("selector") or {}
        return [
            p
            for p in self.view.objects("Pod")
            if (meta(p).get("namespace") or "default") == ns
            and selector_matches(selector, meta(p).get("labels") or {})
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]

    def _sample(self, pod: dict[str, Any]) -> hpa.PodSample:
        status = pod.get("status") or {}
        ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
        usage = self._usage.get(_uid(pod), _Usage())
        requests, unrequested = hpa.pod_requests(pod)
        rate = usage.request_rate()
        return hpa.PodSample(
            name=str(meta(pod).get("name")),
            ready=bool(ready and ready.get("status") == "True"),
            ready_since=replica_sets.parse_time(ready.get("lastTransitionTime")) if ready else None,
            started_at=replica_sets.parse_time(status.get("startTime")),
            phase=str(status.get("phase") or "Pending"),
            deleting=bool(meta(pod).get("deletionTimestamp")),
            cpu_cores=usage.cpu_cores,
            memory_bytes=usage.memory_bytes,
            requests=requests,
            unrequested=unrequested,
            metrics={} if rate is None else {REQUESTS_METRIC: rate},
        )

    # -- controllers ----------------------------------------------------------------------------

    async def _sync_hpa(self, autoscaler: dict[str, Any], pods: list[dict[str, Any]], now: float) -> None:
        target = self._target(autoscaler, "scaleTargetRef")
        if target is None:
            return
        replicas = (target.get("spec") or {}).get("replicas")
        current = 1 if replicas is None else int(replicas)
        samples = [self._sample(p) for p in self._selected(target)]
        history = self._hpa_history.setdefault(_uid(autoscaler), hpa.HpaHistory())
        decision = hpa.reconcile(autoscaler, current, samples, history, now=now)
        if decision.replicas is not None and decision.replicas != current:
            # the informer's copy may lag a status write of this very pass: scale the stored one
            fresh = await self.client.get(
                "Deployment", str(meta(target)["name"]), str(meta(target)["namespace"])
            )
            await self.client.update({**fresh, "spec": {**fresh["spec"], "replicas": decision.replicas}})
            log.info(
                "HorizontalPodAutoscaler %s/%s: %s %d -> %d",
                meta(autoscaler).get("namespace"),
                meta(autoscaler).get("name"),
                meta(target).get("name"),
                current,
                decision.replicas,
            )
        if decision.status != (autoscaler.get("status") or {}):
            await self.client.update({**autoscaler, "status": decision.status})

    async def _sync_vpa(self, recommender: dict[str, Any], pods: list[dict[str, Any]], now: float) -> None:
        target = self._target(recommender, "targetRef")
        if target is None:
            return
        state = self._vpa_state.setdefault(_uid(recommender), vpa.VpaState())
        for pod in self._selected(target):
            usage = self._usage.get(_uid(pod))
            containers = (pod.get("spec") or {}).get("containers") or [{}]
            if usage is None or (usage.cpu_cores is None and usage.memory_bytes is None):
                continue
            vpa.add_sample(
                state,
                str(meta(pod).get("name")),
                str(containers[0].get("name") or "main"),
                now,
                cpu_cores=usage.cpu_cores,
                memory_bytes=usage.memory_bytes,
            )
        recommendation = vpa.recommend(state, now, (recommender.get("spec") or {}).get("resourcePolicy"))
        provided = bool(recommendation.get("containerRecommendations"))
        old = recommender.get("status") or {}
        kept: dict[str, Any] = next(
            (c for c in old.get("conditions") or () if c.get("type") == "RecommendationProvided"), {}
        )
        condition: dict[str, Any] = {
            "type": "RecommendationProvided",
            "status": "True" if provided else "False",
        }
        condition["lastTransitionTime"] = (
            kept.get("lastTransitionTime")
            if kept.get("status") == condition["status"]
            else replica_sets.rfc3339(now)
        )
        status: dict[str, Any] = {"conditions": [condition]}
        if provided:
            status["recommendation"] = recommendation
        if status != old:
            await self.client.update({**recommender, "status": status})

    async def _sync_budget(self, budget: dict[str, Any], pods: list[dict[str, Any]], now: float) -> None:
        ns = str(meta(budget).get("namespace") or "default")
        owners = [o for kind in ("Deployment", "ReplicaSet") for o in self.view.objects(kind)]
        status = disruption.pdb_status(
            budget,
            [p for p in pods if (meta(p).get("namespace") or "default") == ns],
            expected_scale=disruption.expected_scale_of(owners, ns),
            now=replica_sets.rfc3339(now),
        )
        if status != (budget.get("status") or {}):
            with contextlib.suppress(StoreError):  # the store's Eviction may have just written it
                await self.client.update({**budget, "status": status})
