"""The waypoint's local rate limiter (pure: no I/O, the time is passed in): token buckets for
``policy.ambit.dev/v1alpha1 HTTPLocalRateLimitPolicy`` (:mod:`ambit.model.rate_limit`).

What one request meets, for the policies that apply to it (:func:`rate_limits_through`: those targeting
the waypoint's Gateway — all its traffic — plus those targeting the Service addressed, as the L7
authorization policies are gathered; each policy once):

* each policy has a ``total`` bucket (if set) and a client bucket: the bucket of the override naming the
  client's principal (one bucket per override, shared by the clients it names, as Linkerd), else the
  client's own ``identity`` bucket (one per principal; every client without an identity — ``""`` —
  shares one, as Linkerd's unmeshed sources), else none;
* the request is admitted only if EVERY bucket of every applicable policy holds a whole token; then each
  gives one. A refused request takes no token from any bucket (unlike Linkerd, whose GCRA check of the
  total spends its cell even when the identity check then refuses). The refusal names the bucket that
  needs the longest wait — ``total``, ``identity`` or ``override`` — and its policy; ``retry_after`` is
  that wait rounded up to whole seconds, at least 1 (the ``retry-after`` of the 429);
* buckets start full; they refill continuously at their rate up to their capacity.

**Several waypoint replicas: the limits are service-wide.** Every replica enforces each bucket at
``requestsPerSecond / N`` tokens a second with a capacity of ``burst / N`` (at least 1 token, so a bucket
can always admit a request: with ``burst < N`` the service-wide burst is N, not ``burst``), where N is the
number of READY replicas of this waypoint in this replica's own snapshot (:func:`ready_replicas`: the
healthy endpoints of the waypoint's own Service; at least 1). When N changes, every bucket keeps its fill
fraction and takes the new capacity and rate (lazily, when next used). The split assumes the client
ztunnels spread the load evenly over the ready replicas — they do, per connection: each new HBONE
connection goes to a replica drawn at random (``routing.outbound``, capacity-weighted). When they do not
(a few long-lived, busy connections; one client whose requests ride one connection; a replica the
clients do not know about yet), the admitted rate is LOWER than written, never higher: each replica
admits at most its 1/N share, so a client pinned to one replica gets ``identity / N`` and a service whose
load lands on one replica gets ``total / N``. The sum over replicas exceeds the written limit only
transiently, while replicas see different N (a rollout: a new replica counted by some snapshots and not
others) or through the 1-token capacity floor. ``total`` per replica (N = 1) is the way to read the
numbers as per-proxy limits, as Linkerd's and Envoy's local rate limits are.

State (:class:`RateLimiter`) lives as long as the waypoint and survives config pushes: a policy's buckets
are kept while that part of the policy is unchanged (the total bucket while ``total`` is the same, the
identity buckets while ``identity`` is, an override's bucket while an equal override exists) and are
made afresh (full) otherwise. Memory is bounded: per policy, identity buckets live in an LRU of at most
``max_identities`` (10,000) principals. A full bucket is equivalent to a fresh one, so evicting one loses
nothing: when the LRU is full, the full ones among its oldest entries are evicted first, and only when
none is full is the least recently used one dropped (that client then starts again from a full bucket).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET
from ambit.model.rate_limit import IDENTITY, OVERRIDE, TOTAL, ClientOverride, RateLimit, RateLimitPolicy
from ambit.model.workload import HealthStatus, Service, service_hostname
from ambit.state.snapshot import Snapshot

MAX_IDENTITIES = 10_000  # identity buckets kept per policy
EVICTION_SCAN = 64  # oldest LRU entries looked at for a full (lossless to evict) bucket
_EPSILON = 1e-9  # float slack: a bucket within this of a whole token holds one


@dataclass(frozen=True, slots=True)
class RateDecision:
    """What :meth:`RateLimiter.admit` decided. Refused: which policy (its key), which bucket (``"total"``,
    ``"identity"`` or ``"override"``) with which limit as written (service-wide), and ``retry_after``
    in whole seconds (>= 1)."""

    allowed: bool
    policy: str = ""
    bucket: str = ""
    retry_after: int = 0
    limit: RateLimit | None = None


ADMITTED = RateDecision(True)


class _Bucket:
    """One token bucket at ``limit`` divided among ``replicas``; ``stamp`` is when it was last refilled."""

    __slots__ = ("capacity", "limit", "rate", "replicas", "stamp", "tokens")

    def __init__(self, limit: RateLimit, replicas: int, now: float) -> None:
        self.limit = limit
        self.replicas = replicas
        self.rate = limit.requests_per_second / replicas
        self.capacity = max(limit.burst / replicas, 1.0)
        self.tokens = self.capacity  # buckets start full
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def update(self, replicas: int, now: float) -> None:
        """Refill up to ``now``; with another replica count, take its rate and capacity, keeping the fill
        fraction."""
        self.refill(now)
        if replicas != self.replicas:
            fraction = self.tokens / self.capacity
            self.replicas = replicas
            self.rate = self.limit.requests_per_second / replicas
            self.capacity = max(self.limit.burst / replicas, 1.0)
            self.tokens = fraction * self.capacity

    def wait(self) -> float:
        """Seconds until the bucket holds a whole token (0: it holds one now)."""
        missing = 1.0 - self.tokens
        return 0.0 if missing <= _EPSILON else missing / self.rate

    @property
    def full(self) -> bool:
        return self.tokens >= self.capacity - _EPSILON


class _PolicyState:
    """One policy's buckets in this replica."""

    __slots__ = ("by_principal", "identities", "overrides", "policy", "total")

    policy: RateLimitPolicy
    by_principal: dict[str, int]  # principal -> the index of the override naming it
    total: _Bucket | None
    identities: OrderedDict[str, _Bucket]  # principal -> its bucket, least recently used first
    overrides: list[_Bucket]  # one per override, in order

    def __init__(
        self, policy: RateLimitPolicy, previous: _PolicyState | None, replicas: int, now: float
    ) -> None:
        self.policy = policy
        self.by_principal = {p: i for i, o in enumerate(policy.overrides) for p in o.principals}
        if previous is not None and previous.policy.total == policy.total:
            self.total = previous.total
        else:
            self.total = None if policy.total is None else _Bucket(policy.total, replicas, now)
        self.identities = (
            previous.identities
            if previous is not None and previous.policy.identity == policy.identity
            else OrderedDict()
        )
        old: dict[ClientOverride, _Bucket] = {}
        if previous is not None:
            old = dict(zip(previous.policy.overrides, previous.overrides, strict=True))
        self.overrides = [old.get(o) or _Bucket(o.limit, replicas, now) for o in policy.overrides]


class RateLimiter:
    """Token buckets for the rate limit policies one waypoint replica applies (see the module docstring).

    Not thread-safe; one per waypoint replica, used from its event loop."""

    def __init__(self, *, max_identities: int = MAX_IDENTITIES) -> None:
        if max_identities < 1:
            raise ValueError(f"max_identities {max_identities} is not at least 1")
        self.max_identities = max_identities
        self._states: dict[str, _PolicyState] = {}

    def admit(
        self, policies: Sequence[RateLimitPolicy], principal: str, now: float, replicas: int
    ) -> RateDecision:
        """Admit one request from ``principal`` (the client's SPIFFE ID without ``spiffe://``; ``""``
        for none) under every policy of ``policies`` at time ``now`` (seconds, monotonic), with
        ``replicas`` ready waypoint replicas (< 1 counts as 1). Takes a token from every bucket if all
        hold one; else takes none and says which refused."""
        if not policies:
            return ADMITTED
        replicas = max(int(replicas), 1)
        unique = {policy.key: policy for policy in policies}
        checks: list[tuple[str, str, _Bucket]] = []
        for key in sorted(unique):
            state = self._state(unique[key], replicas, now)
            if state.total is not None:
                state.total.update(replicas, now)
                checks.append((key, TOTAL, state.total))
            client = self._client_bucket(state, principal, replicas, now)
            if client is not None:
                checks.append((key, *client))
        refusing: tuple[str, str, _Bucket] | None = None
        longest = 0.0
        for check in checks:
            wait = check[2].wait()
            if wait > longest:
                refusing, longest = check, wait
        if refusing is None:
            for _key, _bucket, bucket in checks:
                bucket.tokens = max(bucket.tokens - 1.0, 0.0)
            return ADMITTED
        key, which, bucket = refusing
        return RateDecision(False, key, which, max(1, math.ceil(longest - _EPSILON)), bucket.limit)

    def retain(self, keys: Collection[str]) -> None:
        """Forget the buckets of every policy whose key is not in ``keys`` (call it with the snapshot's
        ``rate_limits`` keys when the config changes, so removed policies free their state)."""
        for key in [k for k in self._states if k not in keys]:
            del self._states[key]

    def tracked_identities(self, key: str) -> int:
        """How many identity buckets the policy ``key`` holds (0 when it has no state)."""
        state = self._states.get(key)
        return 0 if state is None else len(state.identities)

    @property
    def policies(self) -> tuple[str, ...]:
        """The keys of the policies this limiter holds buckets for, sorted."""
        return tuple(sorted(self._states))

    # -- state ------------------------------------------------------------------------------------

    def _state(self, policy: RateLimitPolicy, replicas: int, now: float) -> _PolicyState:
        state = self._states.get(policy.key)
        if state is None or state.policy is not policy:
            if state is not None and state.policy == policy:
                state.policy = policy  # the same policy from a new snapshot: keep everything
            else:
                state = _PolicyState(policy, state, replicas, now)
                self._states[policy.key] = state
        return state

    def _client_bucket(
        self, state: _PolicyState, principal: str, replicas: int, now: float
    ) -> tuple[str, _Bucket] | None:
        index = state.by_principal.get(principal) if principal else None
        if index is not None:
            bucket = state.overrides[index]
            bucket.update(replicas, now)
            return OVERRIDE, bucket
        limit = state.policy.identity
        if limit is None:
            return None
        identities = state.identities
        found = identities.get(principal)
        if found is None:
            if len(identities) >= self.max_identities:
                self._evict(identities, now)
            found = _Bucket(limit, replicas, now)
            identities[principal] = found
        else:
            identities.move_to_end(principal)
            found.update(replicas, now)
        return IDENTITY, found

    def _evict(self, identities: OrderedDict[str, _Bucket], now: float) -> None:
        """Make room for one: drop the full buckets among the oldest ``EVICTION_SCAN`` (lossless), else
        the least recently used one."""
        full: list[str] = []
        for position, (principal, bucket) in enumerate(identities.items()):
            if position >= EVICTION_SCAN:
                break
            bucket.refill(now)
            if bucket.full:
                full.append(principal)
        for principal in full:
            del identities[principal]
        if not full:
            identities.popitem(last=False)


# -- what the waypoint needs from its snapshot ---------------------------------------------------


def ready_replicas(snapshot: Snapshot, namespace: str, gateway: str) -> int:
    """How many replicas of the waypoint ``namespace/gateway`` are ready in ``snapshot``: the HEALTHY
    endpoints of the waypoint's own Service (the one the waypoint controller makes, named after the
    Gateway: ``<gateway>.<namespace>.svc.<domain>``); at least 1 (the replica asking is one)."""
    key = f"{namespace}/{service_hostname(gateway, namespace)}"
    if key not in snapshot.services:  # another cluster domain: find it by name
        key = next(
            (k for k, s in snapshot.services.items() if s.namespace == namespace and s.name == gateway), key
        )
    ready = sum(1 for w in snapshot.endpoints(key) if w.status is HealthStatus.HEALTHY)
    return max(ready, 1)


def rate_limits_through(
    snapshot: Snapshot, namespace: str, gateway: str, service: Service | None
) -> tuple[RateLimitPolicy, ...]:
    """The rate limit policies for traffic through the waypoint ``namespace/gateway``: those targeting its
    Gateway (all traffic), plus those targeting ``service`` when the traffic is service-addressed (as the
    L7 authorization policies); each once, sorted by key."""
    found = {p.key: p for p in snapshot.rate_limits_for(GATEWAY_TARGET, namespace, gateway)}
    if service is not None:
        for policy in snapshot.rate_limits_for(SERVICE_TARGET, service.namespace, service.name):
            found.setdefault(policy.key, policy)
    return tuple(found[key] for key in sorted(found))
