"""Outlier detection and circuit breaking for a waypoint's upstream Service, as Envoy does them (pure: the
caller passes the time; no I/O).

:class:`OutlierTracker` is Envoy's consecutive-error outlier detection
(``source/common/upstream/outlier_detection_impl.cc``) configured as Istio configures it from a
DestinationRule (``ambit.model.traffic_policy.OutlierDetection``; Istio's ``applyOutlierDetection``
turns success-rate detection off and never sets ``always_eject_one_host``, ``max_ejection_time`` or
jitter). One tracker per upstream Service (an Envoy cluster); hosts are workload uids:

* **counting** (``putHttpResponseCode``): a 5xx adds one to the host's consecutive-5xx count; a 502, 503
  or 504 also adds one to its consecutive-gateway-error count, any other 5xx resets that one; anything
  below 500 resets both. ``None`` (no response: connect failure, reset, or a timeout the caller does not
  pass as 504) counts as 503, as Envoy maps a local-origin connect failure when external and local
  errors are not split (Istio's default);
* **detection, inline**: when a count becomes *equal* to its threshold (``==``, so it fires once per
  run) the host is ejected at once, unless it is already ejected (then nothing happens and the count
  goes on), or the cap forbids it. After a detection that count starts again from 0, ejected or not
  ("to allow the monitor to detect a bout of consecutive error responses even if the monitor is not
  charged with an interleaved non-error code");
* **the cap** (``ejectHost``): a host is ejected only if ``100 * (ejected + 1) / hosts <=
  max_ejection_percent``: with Istio's default 10 % and fewer than 10 hosts **nothing is ejected**
  (Envoy ejects one host regardless only with ``always_eject_one_host``, added in Envoy 1.31 and never
  set by Istio). ``hosts`` is the size of the Service's load-balancing pool;
* **ejection time**: ``min(base_ejection_time * m, max_ejection_time)`` where ``max_ejection_time`` is
  Envoy's default, ``max(300 s, base_ejection_time)``, and ``m`` the host's multiplier: +1 at every
  ejection while ``m * base < max + base``, and -1 at every interval sweep at which the host is not
  ejected and was returned at least one interval before (``onIntervalTimer``): "If the host is healthy
  during that check, the ejection time multiplier is decremented" (Envoy's outlier detection overview).
  So the first ejection lasts ``base``, an ejection soon after the return ``2 * base``, and a host that
  stays healthy for ``m`` intervals is back to ``base``;
* **return** (``checkHostForUneject``): at the first **interval sweep** at or after the ejection time has
  passed, not earlier: sweeps run every ``interval`` from the tracker's ``start`` (Envoy arms the timer
  when the cluster is created). Returning resets both counts;
* :meth:`OutlierTracker.ejected` says which of the given hosts are ejected now, never more than
  ``max_ejection_percent`` of them (the cap again, for a pool that shrank since; the ones ejected first
  stay ejected), and none at all when fewer than ``min_health_percent`` of them would be left (Envoy's
  panic threshold, which Istio sets to ``minHealthPercent``, default 0: off).

Times must not go backwards; an earlier ``now`` than one already seen is taken as the latest.

:class:`PendingLimiter` is one of Envoy's circuit-breaker counters (``max_pending_requests``,
``max_requests``, ``max_connections`` of ``ambit.model.traffic_policy.ConnectionPool``): at most
``limit`` held at once, ``None`` unlimited (Istio's default). A request refused by it is answered 503
with the response flag ``UO`` (upstream overflow, :data:`FLAG_UPSTREAM_OVERFLOW`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from ambit.model.traffic_policy import OutlierDetection

FLAG_UPSTREAM_OVERFLOW = "UO"  # Envoy's response flag for a circuit-breaker overflow (503)
DEFAULT_MAX_EJECTION_TIME = 300.0  # Envoy's max_ejection_time default (or base_ejection_time if larger)
GATEWAY_ERRORS = frozenset({502, 503, 504})
CONNECT_FAILURE_STATUS = 503  # what Envoy counts for a local-origin connect failure (no split)
_EPSILON = 1e-9


@dataclass(slots=True)
class _Host:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    ejected_at: float | None = None  # when the current ejection began; None: not ejected
    multiplier: int = 0  # Envoy's eject_time_backoff: now while ejected, else as of returned_at
    returned_at: float | None = None  # the sweep that last returned it
    ejections: int = 0


@dataclass(frozen=True, slots=True)
class HostState:
    """One host as the tracker sees it (for a config dump and tests)."""

    uid: str
    ejected: bool
    returns_at: float | None  # the sweep at which an ejected host returns; None when not ejected
    ejections: int  # how many times it has been ejected
    multiplier: int  # the ejection-time multiplier now
    consecutive_5xx: int
    consecutive_gateway_errors: int


class OutlierTracker:
    """Envoy's consecutive-error outlier detection for one upstream Service (see the module docstring)."""

    def __init__(self, detection: OutlierDetection, *, start: float = 0.0) -> None:
        self.detection = detection
        self.start = start
        self.max_ejection_time = max(DEFAULT_MAX_EJECTION_TIME, detection.base_ejection_time)
        self._hosts: dict[str, _Host] = {}
        self._pool: frozenset[str] = frozenset()
        self._now = start

    # -- time ------------------------------------------------------------------------------------

    def _clock(self, now: float) -> float:
        self._now = max(self._now, now)
        return self._now

    def _sweep_at_or_after(self, when: float) -> float:
        """The first interval sweep at or after ``when`` (sweeps: ``start + k * interval``, k >= 1)."""
        interval = self.detection.interval
        k = max(1, math.ceil((when - self.start) / interval - _EPSILON))
        return self.start + k * interval

    def _returns_at(self, host: _Host) -> float:
        assert host.ejected_at is not None
        duration = min(self.detection.base_ejection_time * host.multiplier, self.max_ejection_time)
        return self._sweep_at_or_after(host.ejected_at + duration)

    def _settle(self, host: _Host, now: float) -> None:
        """Apply the sweeps up to ``now``: return the host if its ejection time has passed."""
        if host.ejected_at is None:
            return
        returns_at = self._returns_at(host)
        if returns_at <= now + _EPSILON:
            host.ejected_at = None
            host.returned_at = returns_at
            host.consecutive_5xx = host.consecutive_gateway = 0

    def _multiplier(self, host: _Host, now: float) -> int:
        """The multiplier at ``now``: one less for every sweep at least an interval after the return."""
        if host.ejected_at is not None or host.returned_at is None:
            return host.multiplier
        sweeps = math.floor((now - host.returned_at) / self.detection.interval + _EPSILON)
        return max(0, host.multiplier - max(0, sweeps))

    # -- detection -------------------------------------------------------------------------------

    def observe(self, uid: str, status: int | None, now: float, *, hosts: int | None = None) -> bool:
        """Record the outcome of one request to ``uid``: its response status, or None when there was no
        response (connect failure, reset). True when this ejects the host. ``hosts`` is the size of the
        Service's pool for the cap; None: the hosts last given to :meth:`ejected` or :meth:`retain`
        (and ``uid``)."""
        now = self._clock(now)
        host = self._hosts.setdefault(uid, _Host())
        self._settle(host, now)
        code = CONNECT_FAILURE_STATUS if status is None else status
        detection = self.detection
        ejected = False
        if 500 <= code <= 599:
            if code in GATEWAY_ERRORS:
                host.consecutive_gateway += 1
                if host.consecutive_gateway == detection.consecutive_gateway_errors:
                    ejected = self._detected(uid, host, now, hosts)
                    if ejected or host.ejected_at is None:
                        host.consecutive_gateway = 0
            else:
                host.consecutive_gateway = 0
            host.consecutive_5xx += 1
            if host.consecutive_5xx == detection.consecutive_5xx and not ejected:
                ejected = self._detected(uid, host, now, hosts)
                if ejected or host.ejected_at is None:
                    host.consecutive_5xx = 0
        else:
            host.consecutive_5xx = host.consecutive_gateway = 0
        return ejected

    def _detected(self, uid: str, host: _Host, now: float, hosts: int | None) -> bool:
        """A detector fired for ``host``: eject it if it is not ejected yet and the cap allows."""
        if host.ejected_at is not None:
            return False  # already ejected: Envoy ignores the detection (and keeps counting)
        pool = hosts if hosts is not None else len(self._pool | {uid})
        active = 0
        for other in self._hosts.values():
            self._settle(other, now)
            active += other.ejected_at is not None
        if 100.0 * (active + 1) / max(pool, 1) > self.detection.max_ejection_percent:
            return False  # Envoy's ejections_overflow
        host.multiplier = self._multiplier(host, now)
        host.ejected_at = now
        host.ejections += 1
        base = self.detection.base_ejection_time
        if host.multiplier * base < self.max_ejection_time + base:
            host.multiplier += 1
        return True

    # -- queries ---------------------------------------------------------------------------------

    def ejected(self, uids: Iterable[str], now: float) -> frozenset[str]:
        """Which of ``uids`` (the Service's load-balancing pool) are ejected at ``now``: at most
        ``max_ejection_percent`` of them (those ejected first), and none when fewer than
        ``min_health_percent`` would be left (panic). Remembers ``uids`` as the pool."""
        now = self._clock(now)
        candidates = list(dict.fromkeys(uids))
        self._pool = frozenset(candidates)
        found: list[tuple[float, str]] = []
        for uid in candidates:
            host = self._hosts.get(uid)
            if host is None:
                continue
            self._settle(host, now)
            if host.ejected_at is not None:
                found.append((host.ejected_at, uid))
        total = len(candidates)
        allowed = self.detection.max_ejection_percent * total // 100
        found.sort()
        kept = found[:allowed]
        if 100 * (total - len(kept)) < self.detection.min_health_percent * total:
            return frozenset()
        return frozenset(uid for _, uid in kept)

    def retain(self, uids: Iterable[str]) -> None:
        """The Service's hosts changed: forget every other host (Envoy drops a removed host's monitor),
        and take ``uids`` as the pool."""
        self._pool = frozenset(uids)
        for uid in [uid for uid in self._hosts if uid not in self._pool]:
            del self._hosts[uid]

    def state(self, now: float) -> list[HostState]:
        """Every host the tracker holds state for, by uid."""
        now = self._clock(now)
        out: list[HostState] = []
        for uid in sorted(self._hosts):
            host = self._hosts[uid]
            self._settle(host, now)
            out.append(
                HostState(
                    uid=uid,
                    ejected=host.ejected_at is not None,
                    returns_at=self._returns_at(host) if host.ejected_at is not None else None,
                    ejections=host.ejections,
                    multiplier=self._multiplier(host, now),
                    consecutive_5xx=host.consecutive_5xx,
                    consecutive_gateway_errors=host.consecutive_gateway,
                )
            )
        return out


class PendingLimiter:
    """One circuit-breaker counter: at most ``limit`` held at once (None: unlimited). A refusal is an
    overflow: answer 503 with :data:`FLAG_UPSTREAM_OVERFLOW`. Not thread-safe (one event loop)."""

    def __init__(self, limit: int | None) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit {limit!r} is not at least 1 (None: unlimited)")
        self.limit = limit
        self.in_use = 0
        self.overflows = 0

    def try_acquire(self) -> bool:
        """Take one if the limit allows (True); else count an overflow (False)."""
        if self.limit is not None and self.in_use >= self.limit:
            self.overflows += 1
            return False
        self.in_use += 1
        return True

    def release(self) -> None:
        """Give one back; raises RuntimeError when none is held."""
        if self.in_use == 0:
            raise RuntimeError("PendingLimiter.release() without a matching try_acquire()")
        self.in_use -= 1

    def resize(self, limit: int | None) -> None:
        """A new limit (a config change); what is held stays held, and counts against it."""
        if limit is not None and limit < 1:
            raise ValueError(f"limit {limit!r} is not at least 1 (None: unlimited)")
        self.limit = limit
