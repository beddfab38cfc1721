"""The state store: the single writer of a proxy's current :class:`~ambit.state.snapshot.Snapshot`.

One writer (the xDS client, or a local file source) calls :meth:`StateStore.apply`; readers take
:attr:`StateStore.current` once per decision and keep that snapshot for as long as they need a
consistent view. Subscribers are plain callbacks, called synchronously after each change with the
new snapshot; the asyncio edge wraps them (e.g. to wake tasks). A failing subscriber is logged and
does not stop the others or the write. Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

from ambit.state.snapshot import Entry, Snapshot, check_entry

log = logging.getLogger(__name__)

Subscriber = Callable[[Snapshot], None]


class StateStore:
    """Holds the current snapshot and replaces it atomically on every change."""

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._current = initial if initial is not None else Snapshot.empty()
        self._subscribers: list[Subscriber] = []
        self.changes = 0

    @property
    def current(self) -> Snapshot:
        return self._current

    def apply(self, upserts: Mapping[str, Entry] | None = None, removals: Iterable[str] = ()) -> Snapshot:
        """Set ``upserts`` (name -> (version, value)) and drop ``removals``; return the new snapshot.

        Raises ValueError (and changes nothing) when an entry is misnamed. Subscribers are told only
        when something changed (a resource added, removed, or at a different version).
        """
        upserts = upserts or {}
        for name, entry in upserts.items():
            check_entry(name, entry)
        current = self._current
        removals = [name for name in removals if name in current.entries and name not in upserts]
        changed = {
            name: entry
            for name, entry in upserts.items()
            if name not in current.entries or current.entries[name] != entry
        }
        if not changed and not removals:
            return current
        return self._publish(current.with_changes(changed, removals))

    def replace(self, entries: Mapping[str, Entry]) -> Snapshot:
        """Replace everything with ``entries`` (e.g. state read back from disk after a restart)."""
        snapshot = Snapshot(entries)
        if dict(snapshot.entries) == dict(self._current.entries):
            return self._current
        return self._publish(snapshot)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(snapshot)`` after every change; returns a function that unsubscribes."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def _publish(self, snapshot: Snapshot) -> Snapshot:
        self._current = snapshot
        self.changes += 1
        for subscriber in list(self._subscribers):
            try:
                subscriber(snapshot)
            except Exception:
                log.exception("state store subscriber %r failed", subscriber)
        return snapshot
