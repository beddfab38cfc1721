"""Node liveness over the fabric: each node's heartbeat, and the node lifecycle controller.

**Heartbeat** (the kubelet's node Lease, ``coordination.k8s.io/v1`` ``kube-node-lease/<node>``): every
:data:`HEARTBEAT_INTERVAL` seconds the daemon renews each node's Lease *from inside that node's network
namespace*, over the fabric: a TLS connection (the node's client certificate,
:mod:`ambit.runtime.fabric_pki`) to the store's listener on the fabric bridge
(``172.30.0.1:6443``), ``PUT`` of the Lease with a new ``renewTime``. A node cut off the fabric cannot
renew it, exactly as a partitioned kubelet cannot reach the API server.

**Lifecycle** (Kubernetes' node lifecycle controller, ``monitorNodeHealth``): a node whose Lease was
not renewed for the grace period (``ambit up --node-grace``, default 8 s; Kubernetes' default is 50 s
since v1.32) gets its ``Ready`` condition ``Unknown`` (reason ``NodeStatusUnknown``, "Kubelet stopped
posting node status."), and the kubelet role writes every pod on it ``Ready: False`` (Kubernetes'
``MarkPodsNotReady``) and keeps it so while the node is not ready, so the control plane drops their
endpoints from every proxy's config; when the heartbeat returns the node is ``Ready`` and the probes
mark the pods ready again. Pods are not evicted (Kubernetes' taint-based eviction waits 300 s).

What a cut does *not* sever in this runtime (a known difference from a real cluster): the daemon runs
every node's kubelet role and reaches pods through namespaces and filesystem sockets, so processes on a
cut node keep running and its control-plane replica still reads the store through the filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ambit.net.tasks import spawn
from ambit.runtime import nsexec, replica_sets
from ambit.runtime.controllers.view import ClusterView, meta
from ambit.runtime.fabric_pki import FabricPki
from ambit.runtime.layout import STORE_FABRIC_PORT
from ambit.runtime.netplan import FABRIC_STORE_ADDRESS
from ambit.store import StoreClient
from ambit.store.server import NODE_LEASE_NAMESPACE
from ambit.store.types import StoreError

log = logging.getLogger("ambit.runtime.daemon")

HEARTBEAT_INTERVAL = (
    2.0  # Kubernetes renews every 10 s, a quarter of its 40 s lease; here a quarter of the 8 s grace
)
HEARTBEAT_TIMEOUT = 1.5
NOT_READY_REASON = "NodeStatusUnknown"
NOT_READY_MESSAGE = "Kubelet stopped posting node status."


def micro_time(epoch: float) -> str:
    """``metav1.MicroTime`` as serialized: RFC 3339 with microseconds."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    for pattern in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        with contextlib.suppress(ValueError):
            return datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp()
    return None


def lease(node: str, grace: float, now: float) -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE},
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": max(1, round(grace)),
            "renewTime": micro_time(now),
        },
    }


class NodeLifecycle:
    def __init__(
        self,
        nodes: list[str],
        *,
        client: StoreClient,
        view: ClusterView,
        pki: FabricPki,
        node_netns: dict[str, str],
        grace: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.nodes = nodes
        self.client = client
        self.view = view
        self.pki = pki
        self.node_netns = node_netns
        self.grace = grace
        self._clock = clock
        self._clock_start = clock()
        # node → (the renewTime last seen, when it was seen) and when its last heartbeat was answered
        self._seen: dict[str, tuple[str, float]] = {}
        self._succeeded: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.failures: dict[str, str] = {}

    # -- heartbeats ----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [spawn(self._heartbeat(n), name=f"heartbeat-{n}") for n in self.nodes]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _heartbeat(self, node: str) -> None:
        context: ssl.SSLContext | None = None
        while True:
            started = time.monotonic()
            try:
                if context is None:
                    context = self.pki.client_context(node)
                async with asyncio.timeout(HEARTBEAT_TIMEOUT):
                    await self._renew(node, context)
                self._succeeded[node] = self._clock()
                if node in self.failures:
                    log.info("node %s: heartbeat renewed again", node)
                    self.failures.pop(node, None)
            except Exception as exc:  # never stop renewing: a dead loop would leave the node NotReady
                reason = str(exc) or type(exc).__name__
                if self.failures.get(node) != reason:
                    log.warning("node %s: heartbeat failed: %s", node, reason)
                self.failures[node] = reason
            await asyncio.sleep(max(0.0, HEARTBEAT_INTERVAL - (time.monotonic() - started)))

    async def _renew(self, node: str, context: Any) -> None:
        sock = await asyncio.to_thread(nsexec.socket_in_netns, self.node_netns[node])
        sock.setblocking(False)
        try:
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (FABRIC_STORE_ADDRESS, STORE_FABRIC_PORT))
        except BaseException:
            sock.close()
            raise
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=FABRIC_STORE_ADDRESS
        )
        try:
            body = json.dumps(lease(node, self.grace, time.time())).encode()
            path = f"/objects/Lease/{NODE_LEASE_NAMESPACE}/{node}"
            head = (
                f"PUT {path} HTTP/1.1\r\nHost: {FABRIC_STORE_ADDRESS}:{STORE_FABRIC_PORT}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            status = await reader.readline()
            parts = status.split()
            if len(parts) < 2 or parts[1] != b"200":
                raise ValueError(f"the store answered {status.decode('latin-1').strip()!r}")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()

    # -- lifecycle -----------------------------------------------------------------------------

    def restart_clock(self) -> None:
        """Give every node a full grace period from now (the store was away: no renewal could land)."""
        self._clock_start = self._clock()

    def node_ready(self, node: str) -> bool:
        """Whether a renewal of ``node``'s Lease was *observed* within the grace period, timed by this
        daemon's own clock, as Kubernetes' node lifecycle controller does (the ``renewTime`` a node
        writes is compared with the last one seen, never with the clock: a stale Lease after a store
        restart, or a node's clock, cannot decide). A new daemon, or a store back from a hold, gives
        every node one grace period.

        One more condition, because this daemon also sends the heartbeats: a node turns NotReady only
        while its heartbeat is *failing* (its last attempt could not reach the store). A renewal that
        succeeded but is not yet in the informer, or no attempt at all because this process was stalled,
        is no evidence of a cut and never takes a node's pods out of service (on a busy machine that
        would be an outage made by the observer)."""
        found = self.view.get("Lease", node, NODE_LEASE_NAMESPACE)
        renewed = ((found or {}).get("spec") or {}).get("renewTime")
        now = self._clock()
        seen = self._seen.get(node)
        if isinstance(renewed, str) and (seen is None or seen[0] != renewed):
            seen = self._seen[node] = (renewed, now)
        last = max(
            self._clock_start,
            seen[1] if seen is not None else self._clock_start,
            self._succeeded.get(node, self._clock_start),
        )
        return now - last <= self.grace or node not in self.failures

    async def sync(self) -> None:
        for node in self.nodes:
            ready = self.node_ready(node)
            obj = self.view.get("Node", node)
            if obj is not None:
                await self._write_node(obj, ready)

    async def _write_node(self, obj: dict[str, Any], ready: bool) -> None:
        status = dict(obj.get("status") or {})
        conditions = [c for c in status.get("conditions") or () if c.get("type") != "Ready"]
        old: dict[str, Any] = next(
            (c for c in status.get("conditions") or () if c.get("type") == "Ready"), {}
        )
        want = "True" if ready else "Unknown"
        if old.get("status") == want:
            return
        condition: dict[str, Any] = {
            "type": "Ready",
            "status": want,
            "reason": "KubeletReady" if ready else NOT_READY_REASON,
            "message": "kubelet is posting ready status" if ready else NOT_READY_MESSAGE,
            "lastTransitionTime": replica_sets.rfc3339(time.time()),
        }
        status["conditions"] = [*conditions, condition]
        try:
            await self.client.update({**obj, "status": status})
        except StoreError as exc:
            log.debug("status of node %s: %s", meta(obj).get("name"), exc)
            return
        log.log(
            logging.INFO if ready else logging.WARNING,
            "node %s is %s",
            meta(obj).get("name"),
            "Ready" if ready else "NotReady (no heartbeat)",
        )


def listening_socket(netns: str) -> socket.socket:
    """The store's fabric listener socket, bound inside the fabric namespace."""

    def setup(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((FABRIC_STORE_ADDRESS, STORE_FABRIC_PORT))
        sock.listen(128)
        sock.setblocking(False)

    return nsexec.socket_in_netns(netns, setup=setup)
