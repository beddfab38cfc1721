"""The waypoint controller: each waypoint Gateway becomes a Deployment, Service, ServiceAccount and PDB.

For every Gateway of class `istio-waypoint` (or `ambit-waypoint`) it writes, into the store, with
ownerReferences to the Gateway (so deleting the Gateway deletes them: the store cascades):

* a ServiceAccount named after the Gateway (the waypoint's identity);
* a Deployment of `ambit.dev/replicas` replicas (default 2) spread across nodes, pods labelled
  `gateway.networking.k8s.io/gateway-name` and `istio.io/dataplane-mode: none` (a waypoint speaks
  HBONE itself and is never captured);
* a Service on 15008 (HBONE) and 15021 (readiness), labelled so no waypoint binds to it;
* a PodDisruptionBudget with minAvailable 1.

`desired_objects` is pure. `reconcile` is idempotent and safe when several control-plane replicas run
it at once: creates that lose the race (409 AlreadyExists) and updates that lose a compare-and-swap
(409 Conflict) are re-read and retried, so exactly one set exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from ambit.net.tasks import spawn
from ambit.resources.objects import (
    DATAPLANE_MODE,
    DATAPLANE_MODE_NONE,
    GATEWAY_MANAGED_LABEL,
    GATEWAY_NAME_LABEL,
    MESH_CONTROLLER,
    is_waypoint,
)
from ambit.resources.source import (
    ADDED,
    MODIFIED,
    AlreadyExists,
    Conflict,
    Key,
    NotFound,
    ObjectSource,
    StoreError,
)
from ambit.store import Informer

_log = logging.getLogger(__name__)

REPLICAS_ANNOTATION = "ambit.dev/replicas"
DEFAULT_REPLICAS = 2
WAYPOINT_COMMAND = ["ambit", "waypoint"]
_MAX_ATTEMPTS = 5

Obj = dict[str, Any]


def replicas_of(gateway: Mapping[str, Any]) -> int:
    text = gateway.get("metadata", {}).get("annotations", {}).get(REPLICAS_ANNOTATION)
    if text is None:
        return DEFAULT_REPLICAS
    try:
        value = int(text)
    except ValueError:
        _log.warning(
            "Gateway %s: %s=%r is not a number; using %d", _name(gateway), REPLICAS_ANNOTATION, text, 2
        )
        return DEFAULT_REPLICAS
    return max(0, value)


def desired_objects(gateway: Mapping[str, Any]) -> list[Obj]:
    """The objects a waypoint Gateway should own (pure)."""
    meta = gateway["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    owner = {
        "apiVersion": gateway.get("apiVersion", "gateway.networking.k8s.io/v1"),
        "kind": "Gateway",
        "name": name,
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    selector = {GATEWAY_NAME_LABEL: name}
    labels = {GATEWAY_NAME_LABEL: name, GATEWAY_MANAGED_LABEL: MESH_CONTROLLER}

    def metadata() -> Obj:
        return {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(owner)],
        }

    pod_labels = {**selector, DATAPLANE_MODE: DATAPLANE_MODE_NONE}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata()},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": metadata(),
            "spec": {
                "replicas": replicas_of(gateway),
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": name,
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": dict(selector)},
                            }
                        ],
                        "containers": [
                            {
                                "name": "istio-proxy",
                                "image": "ambit/waypoint",
                                "command": [*WAYPOINT_COMMAND, "--gateway", name, "--namespace", namespace],
                                "ports": [
                                    {"name": "mesh", "containerPort": 15008, "protocol": "TCP"},
                                    {"name": "status-port", "containerPort": 15021, "protocol": "TCP"},
                                    {"name": "metrics", "containerPort": 15020, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/healthz/ready", "port": 15021}},
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(),
            "spec": {
                "type": "ClusterIP",
                "selector": dict(selector),
                "ports": [
                    {"name": "mesh", "port": 15008, "targetPort": 15008, "protocol": "TCP"},
                    {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
                ],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": metadata(),
            "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(selector)}},
        },
    ]


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _drifted(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when a managed field differs (spec, our labels, owner); others' additions are left alone."""
    if existing.get("spec", {}) != {**existing.get("spec", {}), **desired.get("spec", {})}:
        return True
    have = existing.get("metadata", {})
    want = desired["metadata"]
    if any(have.get("labels", {}).get(k) != v for k, v in want["labels"].items()):
        return True
    owners = {o.get("uid") for o in have.get("ownerReferences", [])}
    return not {o["uid"] for o in want["ownerReferences"]} <= owners


def _merged(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> Obj:
    merged = dict(existing)
    merged["spec"] = {**existing.get("spec", {}), **desired.get("spec", {})}
    meta = dict(existing["metadata"])
    meta["labels"] = {**meta.get("labels", {}), **desired["metadata"]["labels"]}
    owners = [
        o
        for o in meta.get("ownerReferences", [])
        if o.get("uid") != desired["metadata"]["ownerReferences"][0]["uid"]
    ]
    meta["ownerReferences"] = owners + desired["metadata"]["ownerReferences"]
    merged["metadata"] = meta
    return merged


async def ensure(client: ObjectSource, desired: Obj) -> str:
    """Create or converge one object; returns created|updated|unchanged."""
    meta = desired["metadata"]
    for _ in range(_MAX_ATTEMPTS):
        try:
            existing = await client.get(desired["kind"], meta["name"], meta["namespace"])
        except NotFound:
            try:
                await client.create(desired)
                return "created"
            except AlreadyExists:
                continue  # another replica won the race: converge on what it wrote
        if not _drifted(existing, desired):
            return "unchanged"
        try:
            await client.update(_merged(existing, desired))
            return "updated"
        except (Conflict, NotFound):
            continue  # a concurrent writer moved it: read again
    raise Conflict(f"{desired['kind']} {_name(desired)} kept changing under us", status=409)


async def reconcile(client: ObjectSource, gateway: Mapping[str, Any]) -> dict[str, str]:
    """Bring one waypoint Gateway's objects to their desired state."""
    results = {}
    for obj in desired_objects(gateway):
        results[f"{obj['kind']}/{_name(obj)}"] = await ensure(client, obj)
    return results


class WaypointController:
    """Watches Gateways and reconciles the waypoint ones; deletion is the store's owner cascade."""

    def __init__(self, client: ObjectSource, *, resync_period: float = 60.0) -> None:
        self.client = client
        self.informer = Informer(client, ["Gateway"], resync_period=resync_period, on_resync=self._resync)
        self._queue: asyncio.Queue[tuple[str, Obj]] = self.informer.subscribe_queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.informer.start()
        self._task = spawn(self._run(), name="waypoint-controller")
        await self.informer.wait_synced()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.informer.close()

    async def _resync(self, cache: Mapping[Key, Obj]) -> None:
        for obj in list(cache.values()):
            await self._queue.put((MODIFIED, obj))

    async def _run(self) -> None:
        while True:
            change, gateway = await self._queue.get()
            if change not in (ADDED, MODIFIED) or not is_waypoint(gateway):
                continue
            try:
                results = await reconcile(self.client, gateway)
            except StoreError as exc:
                _log.warning("waypoint %s: reconcile failed: %s", _name(gateway), exc)
                continue
            changed = {k: v for k, v in results.items() if v != "unchanged"}
            if changed:
                _log.info("waypoint %s: %s", _name(gateway), changed)
