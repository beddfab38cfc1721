"""Live inbound connections, re-authorized whenever the config changes (facts §1.6).

"Policy changes re-check open connections and close those no longer allowed": every inbound
connection (HBONE and plaintext) is registered here with what L4 authorization looked at — the
destination workload, the verified peer identity, the source IP and the destination address.
:meth:`ConnectionRegistry.recheck` runs :func:`ambit.authz.authorize` again against a new snapshot
and aborts the connections it now denies: the client gets an HBONE stream reset (or a TCP RST for
plaintext) and the app a TCP RST. A connection whose workload has left the config is closed too
(fail closed).

:meth:`ConnectionRegistry.follow` subscribes to the :class:`~ambit.state.store.StateStore`; changes
are coalesced into one recheck on the next event-loop iteration, so a burst of updates costs one pass
and the writer (the xDS client) never waits for it. A connection whose workload and policy list are
unchanged (the same objects) since its last check is skipped, so a change that touches no policy of
a workload costs a lookup per connection, not an evaluation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ambit.authz import authorize, connection_for
from ambit.model.identity import Identity
from ambit.model.policy import Authorization
from ambit.model.workload import Workload
from ambit.net.duplex import Duplex, StreamAborted
from ambit.proxy.config_dump import ConnectionView
from ambit.state.snapshot import Snapshot
from ambit.state.store import StateStore

log = logging.getLogger(__name__)


class PolicyRevoked(StreamAborted):
    """The connection was closed because authorization no longer allows it."""


@dataclass(eq=False, slots=True)
class LiveConnection:
    """One admitted inbound connection and what its authorization depended on."""

    workload_uid: str
    peer: Identity | None  # None: plaintext
    source_ip: str
    destination_ip: str
    destination_port: int
    ends: tuple[Duplex, ...]  # aborted (RST / RST_STREAM) when the connection is revoked
    workload: Workload | None = None  # the value last checked against
    policies: tuple[Authorization, ...] | None = None
    revoked: str | None = field(default=None)  # why it was closed by a recheck
    started: float = field(default_factory=time.monotonic)  # for the age in /config_dump

    def describe(self, now: float | None = None) -> ConnectionView:
        """This connection as ``/config_dump`` shows it (``ambit ztunnel-config connections``)."""
        client = self.ends[0] if self.ends else None
        workload = self.workload
        return ConnectionView(
            direction="inbound",
            protocol="TCP" if self.peer is None else "HBONE",
            source=self.source_ip,
            destination=f"{self.destination_ip}:{self.destination_port}",
            source_identity=None if self.peer is None else str(self.peer),
            destination_identity=None if workload is None else str(workload.identity),
            workload_uid=self.workload_uid,
            workload=None if workload is None else f"{workload.namespace}/{workload.name}",
            age_seconds=round((time.monotonic() if now is None else now) - self.started, 3),
            bytes_received=0 if client is None else client.bytes_in,  # from the client
            bytes_sent=0 if client is None else client.bytes_out,  # to the client
        )

    def abort(self, reason: str) -> None:
        self.revoked = reason
        error = PolicyRevoked(reason)
        for end in self.ends:
            end.abort(error)


class ConnectionRegistry:
    """Every live inbound connection on this ztunnel; see the module docstring."""

    def __init__(self) -> None:
        self._live: set[LiveConnection] = set()
        self._scheduled: asyncio.Handle | None = None
        self._pending: Snapshot | None = None
        self.revoked_total = 0

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[LiveConnection]:
        return iter(list(self._live))

    def register(
        self,
        workload: Workload,
        peer: Identity | None,
        source_ip: str,
        destination: tuple[str, int],
        ends: tuple[Duplex, ...],
        *,
        policies: tuple[Authorization, ...] | None = None,
    ) -> LiveConnection:
        """Track an admitted connection; ``policies`` are those it was admitted under (if known)."""
        conn = LiveConnection(
            workload.uid, peer, source_ip, destination[0], destination[1], ends, workload, policies
        )
        self._live.add(conn)
        return conn

    def unregister(self, conn: LiveConnection) -> None:
        self._live.discard(conn)

    def describe(self) -> tuple[ConnectionView, ...]:
        """Every live connection, oldest first (the ``connections`` of ``/config_dump``)."""
        now = time.monotonic()
        return tuple(c.describe(now) for c in sorted(self._live, key=lambda c: c.started))

    def for_workload(self, uid: str) -> list[LiveConnection]:
        return [c for c in self._live if c.workload_uid == uid]

    def recheck(self, snapshot: Snapshot) -> int:
        """Re-authorize every live connection against ``snapshot``; abort the denied ones; return how many."""
        closed = 0
        for conn in list(self._live):
            reason = self._verdict(conn, snapshot)
            if reason is None:
                continue
            log.info(
                "closing connection %s -> %s:%s of %s: %s",
                conn.source_ip,
                conn.destination_ip,
                conn.destination_port,
                conn.workload_uid,
                reason,
            )
            self._live.discard(conn)
            conn.abort(reason)
            closed += 1
        self.revoked_total += closed
        return closed

    def follow(self, store: StateStore) -> Callable[[], None]:
        """Recheck after every change of ``store`` (coalesced per loop iteration); returns unsubscribe."""
        return store.subscribe(self._changed)

    def close(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self._pending = None

    # -- internals ------------------------------------------------------------------------------

    def _changed(self, snapshot: Snapshot) -> None:
        self._pending = snapshot
        if self._scheduled is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous writer): do it now
            self._run_pending()
            return
        self._scheduled = loop.call_soon(self._run_pending)

    def _run_pending(self) -> None:
        self._scheduled = None
        snapshot, self._pending = self._pending, None
        if snapshot is not None and self._live:
            self.recheck(snapshot)

    @staticmethod
    def _verdict(conn: LiveConnection, snapshot: Snapshot) -> str | None:
        """Why ``conn`` must close under ``snapshot``, or None when it may stay."""
        workload = snapshot.workloads.get(conn.workload_uid)
        if workload is None:
            return f"workload {conn.workload_uid} is no longer in the config"
        policies = snapshot.policies_for(workload)
        if workload is conn.workload and policies == conn.policies:
            return None
        decision = authorize(
            connection_for(conn.peer, conn.source_ip, conn.destination_ip, conn.destination_port), policies
        )
        if not decision.allowed:
            return decision.reason
        conn.workload, conn.policies = workload, policies
        return None
