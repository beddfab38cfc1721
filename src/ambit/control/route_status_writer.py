"""The route status controller: writes each GAMMA route's ``status.parents`` (``ambit.control.route_status``).

It watches HTTPRoute, GRPCRoute, TCPRoute, Service and ReferenceGrant objects through its own
informer. A route that is added or changed is queued; a Service or a ReferenceGrant that is added,
changed or deleted in namespace N queues every route that depends on N: the routes of N and the routes
whose backendRefs or RequestMirror backends name N (``route_status.backend_namespaces``; a grant in N
only ever permits references *to* N, so no other route can change, and a grant whose ``from`` entries
were edited away is still covered, since the queueing does not read them). A resync (every 60 s)
queues every route, which repairs whatever a failed write left. One task drains the queue (a route
queued twice while waiting is written once).

Writing one route (``write_route_status``) reads the route, the Services of its namespace and of the
namespaces its backends name, and the ReferenceGrants of those namespaces from the store (not from
the informer's cache: a fresh read is what makes two writers agree), computes the
status and writes it with compare-and-swap only when it differs from the stored one. On a conflict
(409: someone wrote the route meanwhile, perhaps another control-plane replica) it reads again; the
loser of a race finds the winner's status equal to its own (same conditions, the winner's
``lastTransitionTime``) and stops. So several replicas run it at once without flapping, and a route
whose status is settled is never written again (its ``resourceVersion`` stops changing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ambit.control.reference_grants import REFERENCE_GRANT, ReferenceGrants
from ambit.control.route_status import backend_namespaces, route_status, services_from_objects
from ambit.control.translate_routes import GATEWAY_ROUTE_KINDS
from ambit.net.tasks import spawn
from ambit.resources.objects import kind_of, name_of, namespace_of
from ambit.resources.source import DELETED, Conflict, Key, NotFound, ObjectSource, StoreError
from ambit.store import Informer

_log = logging.getLogger(__name__)

WATCHED_KINDS = (*GATEWAY_ROUTE_KINDS, "Service", REFERENCE_GRANT)
_MAX_ATTEMPTS = 5

Obj = dict[str, Any]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def write_route_status(
    client: ObjectSource,
    kind: str,
    name: str,
    namespace: str,
    *,
    cluster_domain: str = "cluster.local",
    now: Callable[[], str] = _now,
) -> bool:
    """Write the route's status when it differs from the stored one; True when it wrote."""
    for _ in range(_MAX_ATTEMPTS):
        try:
            current = await client.get(kind, name, namespace)
        except NotFound:
            return False
        listed: list[Obj] = []
        for ns in sorted(backend_namespaces(current)):
            listed += (await client.list(("Service", REFERENCE_GRANT), ns)).items
        services = services_from_objects(listed, cluster_domain=cluster_domain)
        grants = ReferenceGrants.from_objects(listed)
        stored = current.get("status")
        status = route_status(
            current, services, stored, now=now(), cluster_domain=cluster_domain, grants=grants
        )
        if status == (stored if isinstance(stored, dict) else {}):
            return False
        try:
            await client.update({**current, "status": status})
        except Conflict:
            continue  # written meanwhile (perhaps by another replica): read again
        except NotFound:
            return False
        return True
    raise Conflict(f"{kind} {namespace}/{name}: status kept changing under us", status=409)


class RouteStatusController:
    """Keeps every HTTPRoute's, GRPCRoute's and TCPRoute's Service-parent status current."""

    def __init__(
        self, client: ObjectSource, *, resync_period: float = 60.0, cluster_domain: str = "cluster.local"
    ) -> None:
        self.client = client
        self.cluster_domain = cluster_domain
        self.informer = Informer(
            client, WATCHED_KINDS, resync_period=resync_period, on_resync=self._resync, name="route-status"
        )
        self.informer.subscribe(self._on_change)
        self._pending: dict[tuple[str, str, str], None] = {}  # (kind, namespace, name), in arrival order
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.informer.start()
        self._task = spawn(self._run(), name="route-status-controller")
        await self.informer.wait_synced()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.informer.close()

    # ------------------------------------------------------------------ queue

    def _enqueue(self, kind: str, namespace: str, name: str) -> None:
        self._pending[(kind, namespace, name)] = None
        self._wake.set()

    def _enqueue_dependents(self, namespace: str) -> None:
        """Queue every route whose status depends on the Services and ReferenceGrants of ``namespace``."""
        for (kind, ns, name), route in list(self.informer.cache.items()):
            if kind in GATEWAY_ROUTE_KINDS and (ns == namespace or namespace in backend_namespaces(route)):
                self._enqueue(kind, ns, name)

    def _on_change(self, change: str, obj: Obj) -> None:
        kind = kind_of(obj)
        if kind in GATEWAY_ROUTE_KINDS:
            if change != DELETED:
                self._enqueue(kind, namespace_of(obj), name_of(obj))
        elif kind in ("Service", REFERENCE_GRANT):
            self._enqueue_dependents(namespace_of(obj))

    def _resync(self, cache: Mapping[Key, Obj]) -> None:
        for kind, namespace, name in list(cache):
            if kind in GATEWAY_ROUTE_KINDS:
                self._enqueue(kind, namespace, name)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                kind, namespace, name = next(iter(self._pending))
                del self._pending[(kind, namespace, name)]
                try:
                    wrote = await write_route_status(
                        self.client, kind, name, namespace, cluster_domain=self.cluster_domain
                    )
                except StoreError as exc:
                    _log.warning("%s %s/%s: status not written: %s", kind, namespace, name, exc)
                    continue
                if wrote:
                    _log.info("%s %s/%s: status updated", kind, namespace, name)
