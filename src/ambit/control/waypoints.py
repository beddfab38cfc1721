"""The waypoint controller: each waypoint Gateway becomes a Deployment, Service, ServiceAccount and PDB.

For every Gateway of class `istio-waypoint` (or `ambit-waypoint`) it writes, into the store, with
ownerReferences to the Gateway (so deleting the Gateway deletes them: the store cascades):

* a ServiceAccount named after the Gateway (the waypoint's identity);
* a Deployment of `ambit.dev/replicas` replicas (default 2; Istio's is 1) spread across nodes by a
  hostname topology spread constraint, with Istio's waypoint resources (requests 100m CPU / 128Mi,
  limits 2 CPU / 1Gi: `global.waypoint.resources` in istio/istio
  manifests/charts/istio-control/istio-discovery/values.yaml), pods labelled
  `gateway.networking.k8s.io/gateway-name`, `istio.io/dataplane-mode: none` (a waypoint speaks
  HBONE itself and is never captured) and `networking.istio.io/tunnel: http` (so its workload is
  reached over HBONE), running `ambit waypoint run --gateway <name> --namespace <ns>`;
* a Service on 15008 (HBONE) and 15021 (readiness), labelled so no waypoint binds to it;
* a PodDisruptionBudget with minAvailable 1;
* with the Gateway annotation `ambit.dev/autoscale-max-replicas: N` (`ambit waypoint apply
  --autoscale N`), a HorizontalPodAutoscaler (autoscaling/v2) of the Deployment: `minReplicas: 2`
  (never fewer, so the PDB above never blocks every drain; Kubernetes' own default of 1 is kept for
  HPAs users write), `maxReplicas: N`, on the Pods metric `istio_requests_per_second` (each replica's
  rate of `istio_requests_total{reporter="waypoint"}`, measured by the runtime) with an average target
  of `ambit.dev/autoscale-target-rps` (default 100) per replica. Removing the annotation deletes it.

`spec.infrastructure.labels` and `.annotations` (Gateway API GEP-1867) go on every one of them and on
the pod template; the controller's own labels win a clash (a waypoint pod is never enrolled).
`spec.infrastructure.parametersRef` is not read.

The Deployment's `spec.replicas` is the controller's only at creation and when the Gateway's
`ambit.dev/replicas` annotation changes (the value it was last set from is kept in the Deployment's
`ambit.dev/gateway-replicas` annotation); in between it belongs to whoever scales the Deployment (an
autoscaler, `ambit scale`), so the controller never fights them. Every other managed field is
repaired when it drifts.

After each reconcile the Gateway's status (`Accepted`, `Programmed`, `addresses`) is written from
`ambit.control.waypoint_status`, only when it differs from the stored one.

`desired_objects` is pure. `reconcile` is idempotent and safe when several control-plane replicas run
it at once: creates that lose the race (409 AlreadyExists) and updates that lose a compare-and-swap
(409 Conflict) are re-read and retried, so exactly one set exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ambit.control.translate_common import TUNNEL_LABEL
from ambit.control.waypoint_status import gateway_status
from ambit.net.tasks import spawn
from ambit.resources.objects import (
    DATAPLANE_MODE,
    DATAPLANE_MODE_NONE,
    GATEWAY_MANAGED_LABEL,
    GATEWAY_NAME_LABEL,
    MESH_CONTROLLER,
    WAYPOINT_AUTOSCALE_MAX,
    WAYPOINT_AUTOSCALE_RPS,
    WAYPOINT_REPLICAS,
    annotations_of,
    is_waypoint,
    mapping,
    name_of,
    namespace_or_default,
    string_map,
    uid_of,
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

REPLICAS_ANNOTATION = WAYPOINT_REPLICAS
APPLIED_REPLICAS_ANNOTATION = (
    "ambit.dev/gateway-replicas"  # on the Deployment: the value its replicas came from
)
DEFAULT_REPLICAS = 2
AUTOSCALE_MIN_REPLICAS = 2
DEFAULT_TARGET_RPS = 100
REQUESTS_METRIC = "istio_requests_per_second"
WAYPOINT_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"cpu": "2", "memory": "1Gi"},
}
WAYPOINT_COMMAND = ["ambit", "waypoint", "run"]
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
            "Gateway %s: %s=%r is not a number; using %d",
            _name(gateway),
            REPLICAS_ANNOTATION,
            text,
            DEFAULT_REPLICAS,
        )
        return DEFAULT_REPLICAS
    return max(0, value)


def replicas_source(gateway: Mapping[str, Any]) -> str:
    """What the Deployment's replicas are set from: the annotation's text, or "" for the default."""
    return str(annotations_of(gateway).get(REPLICAS_ANNOTATION, ""))


def autoscale_of(gateway: Mapping[str, Any]) -> tuple[int, int] | None:
    """(maxReplicas, target requests/s per replica) when the Gateway asks for an autoscaler."""
    annotations = annotations_of(gateway)
    text = annotations.get(WAYPOINT_AUTOSCALE_MAX)
    if text is None:
        return None
    try:
        high = max(AUTOSCALE_MIN_REPLICAS, int(text))
        target = int(annotations.get(WAYPOINT_AUTOSCALE_RPS, DEFAULT_TARGET_RPS))
    except ValueError:
        _log.warning(
            "Gateway %s: %s / %s must be numbers; no autoscaler", _name(gateway), text, WAYPOINT_AUTOSCALE_RPS
        )
        return None
    return high, max(1, target)


def infrastructure_metadata(gateway: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """``spec.infrastructure.labels`` and ``.annotations`` (string values only; others are ignored)."""
    infra = mapping(gateway, "spec", "infrastructure")
    return string_map(infra.get("labels")), string_map(infra.get("annotations"))


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
    infra_labels, infra_annotations = infrastructure_metadata(gateway)
    labels = {**infra_labels, GATEWAY_NAME_LABEL: name, GATEWAY_MANAGED_LABEL: MESH_CONTROLLER}

    def metadata(**annotations: str) -> Obj:
        meta: Obj = {
            "name": name,
            "namespace": namespace,
            "labels": dict(labels),
            "ownerReferences": [dict(owner)],
        }
        if infra_annotations or annotations:
            meta["annotations"] = {**infra_annotations, **annotations}
        return meta

    # never captured by a ztunnel (dataplane-mode none), and it speaks HBONE itself (tunnel: http)
    pod_labels = {**infra_labels, **selector, DATAPLANE_MODE: DATAPLANE_MODE_NONE, TUNNEL_LABEL: "http"}
    pod_metadata: Obj = {"labels": pod_labels}
    if infra_annotations:
        pod_metadata["annotations"] = dict(infra_annotations)
    deployment_metadata = metadata(**{APPLIED_REPLICAS_ANNOTATION: replicas_source(gateway)})
    autoscale = autoscale_of(gateway)
    autoscaler: list[Obj] = []
    if autoscale is not None:
        autoscaler.append(
            {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": metadata(),
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                    "minReplicas": AUTOSCALE_MIN_REPLICAS,
                    "maxReplicas": autoscale[0],
                    "metrics": [
                        {
                            "type": "Pods",
                            "pods": {
                                "metric": {"name": REQUESTS_METRIC},
                                "target": {"type": "AverageValue", "averageValue": str(autoscale[1])},
                            },
                        }
                    ],
                },
            }
        )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata()},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": deployment_metadata,
            "spec": {
                "replicas": replicas_of(gateway),
                "selector": {"matchLabels": dict(selector)},
                "template": {
                    "metadata": pod_metadata,
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
                                "resources": copy.deepcopy(WAYPOINT_RESOURCES),
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
        *autoscaler,
    ]


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata", {})
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _owned_by_scaler(existing: Mapping[str, Any], desired: Obj) -> Obj:
    """``desired`` without ``spec.replicas`` when the Gateway's replica annotation has not changed.

    Then the Deployment's replica count belongs to whoever scaled it last (an autoscaler, ``scale``).
    """
    if desired["kind"] != "Deployment":
        return desired
    wanted = desired["metadata"]["annotations"][APPLIED_REPLICAS_ANNOTATION]
    if annotations_of(existing).get(APPLIED_REPLICAS_ANNOTATION) != wanted:
        return desired
    spec = {k: v for k, v in desired["spec"].items() if k != "replicas"}
    return {**desired, "spec": spec}


def _drifted(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when a managed field differs (spec, our labels and annotations, owner); others' additions stay."""
    if existing.get("spec", {}) != {**existing.get("spec", {}), **desired.get("spec", {})}:
        return True
    have = existing.get("metadata", {})
    want = desired["metadata"]
    for field in ("labels", "annotations"):
        if any(have.get(field, {}).get(k) != v for k, v in want.get(field, {}).items()):
            return True
    owners = {o.get("uid") for o in have.get("ownerReferences", [])}
    return not {o["uid"] for o in want["ownerReferences"]} <= owners


def _merged(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> Obj:
    merged = dict(existing)
    merged["spec"] = {**existing.get("spec", {}), **desired.get("spec", {})}
    meta = dict(existing["metadata"])
    for field in ("labels", "annotations"):
        if desired["metadata"].get(field):
            meta[field] = {**meta.get(field, {}), **desired["metadata"][field]}
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
        wanted = _owned_by_scaler(existing, desired)
        if not _drifted(existing, wanted):
            return "unchanged"
        try:
            await client.update(_merged(existing, wanted))
            return "updated"
        except (Conflict, NotFound):
            continue  # a concurrent writer moved it: read again
    raise Conflict(f"{desired['kind']} {_name(desired)} kept changing under us", status=409)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def write_status(
    client: ObjectSource,
    gateway: Mapping[str, Any],
    *,
    cluster_domain: str = "cluster.local",
    now: Callable[[], str] = _now,
) -> bool:
    """Write the Gateway's status when it differs from the stored one; True when it wrote.

    Reads the Gateway again first (the event may be stale) and writes with compare-and-swap, so two
    control-plane replicas converge on one status: the loser of a race re-reads, finds the status it
    would write already there (same conditions, the winner's ``lastTransitionTime``), and stops.
    """
    name, namespace = name_of(gateway), namespace_or_default(gateway)
    for _ in range(_MAX_ATTEMPTS):
        try:
            current = await client.get("Gateway", name, namespace)
        except NotFound:
            return False
        if uid_of(current) != uid_of(gateway) or not is_waypoint(current):
            return False
        try:
            service: Obj | None = await client.get("Service", name, namespace)
        except NotFound:
            service = None
        status = gateway_status(current, service, now=now(), cluster_domain=cluster_domain)
        if status == current.get("status"):
            return False
        try:
            await client.update({**current, "status": status})
        except Conflict:
            continue  # written meanwhile (perhaps by another replica): read again
        except NotFound:
            return False
        return True
    raise Conflict(f"Gateway {namespace}/{name}: status kept changing under us", status=409)


async def reconcile(client: ObjectSource, gateway: Mapping[str, Any]) -> dict[str, str]:
    """Bring one waypoint Gateway's objects to their desired state."""
    results = {}
    desired = desired_objects(gateway)
    for obj in desired:
        results[f"{obj['kind']}/{_name(obj)}"] = await ensure(client, obj)
    if not any(obj["kind"] == "HorizontalPodAutoscaler" for obj in desired):
        results["HorizontalPodAutoscaler"] = await _remove_autoscaler(client, gateway)
    return results


async def _remove_autoscaler(client: ObjectSource, gateway: Mapping[str, Any]) -> str:
    """Delete the HPA this controller made for the Gateway (owned by it) once autoscaling is off."""
    name, namespace = name_of(gateway), namespace_or_default(gateway)
    try:
        existing = await client.get("HorizontalPodAutoscaler", name, namespace)
    except NotFound:
        return "absent"
    owners = existing.get("metadata", {}).get("ownerReferences") or []
    if not any(ref.get("uid") == uid_of(gateway) for ref in owners):
        return "not ours"
    with contextlib.suppress(NotFound):
        await client.delete("HorizontalPodAutoscaler", name, namespace)
    return "deleted"


class WaypointController:
    """Watches Gateways and reconciles the waypoint ones; deletion is the store's owner cascade."""

    def __init__(
        self, client: ObjectSource, *, resync_period: float = 60.0, cluster_domain: str = "cluster.local"
    ) -> None:
        self.client = client
        self.cluster_domain = cluster_domain
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
                if await write_status(self.client, gateway, cluster_domain=self.cluster_domain):
                    results["status"] = "updated"
            except StoreError as exc:
                _log.warning("waypoint %s: reconcile failed: %s", _name(gateway), exc)
                continue
            changed = {k: v for k, v in results.items() if v != "unchanged"}
            if changed:
                _log.info("waypoint %s: %s", _name(gateway), changed)
