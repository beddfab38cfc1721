"""Outlier ejection of waypoint replicas, as a client ztunnel keeps it (pure: the caller passes the time).

A replica that refuses a connection or times out is ejected: for 5 s the first time, then twice as long
each time it fails again while ejected or soon after (5, 10, 20, 40, 60 s: at most 60 s), the way Envoy's
outlier detection grows ``base_ejection_time``. A success ends the ejection and resets the count.
Ejected replicas are tried last, never dropped, and at most half of a waypoint's replicas count as
ejected at once (Envoy's ``max_ejection_percent`` 50): with two replicas at most one, so traffic is
never refused only because the client thinks every replica is bad.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

BASE_EJECTION = 5.0
MAX_EJECTION = 60.0
MAX_EJECTED_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class Ejection:
    """One replica's ejection: until when, how many failures in a row, and the last reason."""

    uid: str
    until: float
    failures: int
    reason: str


class Ejections:
    """Per-replica ejection state of one client (keyed by the replica's workload uid)."""

    def __init__(self, *, base: float = BASE_EJECTION, maximum: float = MAX_EJECTION) -> None:
        self.base = base
        self.maximum = maximum
        self._state: dict[str, Ejection] = {}

    def failed(self, uid: str, now: float, reason: str) -> Ejection:
        """Record a refused or timed-out connection to ``uid``; returns its new ejection."""
        previous = self._state.get(uid)
        fresh = previous is None or now >= previous.until + self.maximum  # long since forgiven
        failures = 1 if fresh or previous is None else previous.failures + 1
        duration = min(self.base * 2 ** (failures - 1), self.maximum)
        ejection = Ejection(uid, now + duration, failures, reason)
        self._state[uid] = ejection
        return ejection

    def succeeded(self, uid: str) -> None:
        """A connection to ``uid`` worked: it is no longer ejected and its count starts again."""
        self._state.pop(uid, None)

    def ejected(self, uids: Iterable[str], now: float) -> frozenset[str]:
        """Which of ``uids`` (one waypoint's usable replicas) are ejected now: at most half of them,
        those whose ejection runs longest first."""
        candidates = list(dict.fromkeys(uids))
        active = [e for uid in candidates if (e := self._state.get(uid)) is not None and e.until > now]
        allowed = int(len(candidates) * MAX_EJECTED_FRACTION)
        active.sort(key=lambda e: (-e.until, e.uid))
        return frozenset(e.uid for e in active[:allowed])

    def snapshot(self, now: float) -> list[Ejection]:
        """Every ejection still running (for the config dump), by uid; expired ones are forgotten
        only after their failure count no longer matters (``maximum`` past their end)."""
        for uid in [uid for uid, e in self._state.items() if e.until + self.maximum <= now]:
            del self._state[uid]
        return sorted((e for e in self._state.values() if e.until > now), key=lambda e: e.uid)
