"""The waypoint's local rate limiter (ambit.routing.rate_limit): token buckets with a fake clock — burst,
sustained rate, the split over replicas, overrides capped by total, no token taken on refusal, the LRU of
identities, rescaling when the replica count changes, state across config pushes; and what it needs from
the snapshot."""

from __future__ import annotations

import dataclasses

import pytest

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy
from ambit.model.workload import HealthStatus, Service, ServicePort, Workload
from ambit.routing.rate_limit import (
    ADMITTED,
    EVICTION_SCAN,
    MAX_IDENTITIES,
    RateDecision,
    RateLimiter,
    rate_limits_through,
    ready_replicas,
)
from ambit.state import Snapshot, resource_name
from ambit.state.snapshot import Entry, Resource

WEB = PolicyTarget(SERVICE_TARGET, "default", "web")
SLEEP = "cluster.local/ns/sleep/sa/sleep"
CURL = "cluster.local/ns/curl/sa/curl"
OTHER = "cluster.local/ns/default/sa/other"


def policy(
    name: str = "rl",
    *,
    total: RateLimit | None = None,
    identity: RateLimit | None = None,
    overrides: tuple[ClientOverride, ...] = (),
    targets: tuple[PolicyTarget, ...] = (WEB,),
) -> RateLimitPolicy:
    return RateLimitPolicy(name, "default", targets, total, identity, overrides)


def burst(
    limiter: RateLimiter, policies: list[RateLimitPolicy], principal: str, now: float, replicas: int = 1
) -> int:
    """How many requests at ``now`` are admitted before the first refusal (at most 1000)."""
    for admitted in range(1000):
        if not limiter.admit(policies, principal, now, replicas).allowed:
            return admitted
    return 1000


def sustained(
    limiter: RateLimiter,
    policies: list[RateLimitPolicy],
    principal: str,
    *,
    start: float,
    seconds: float,
    replicas: int = 1,
    step: float = 0.001,
) -> int:
    """Requests admitted out of one every ``step`` seconds in (start, start + seconds]."""
    admitted = 0
    for i in range(1, round(seconds / step) + 1):
        admitted += limiter.admit(policies, principal, start + i * step, replicas).allowed
    return admitted


# --- burst, refusal, retry-after ------------------------------------------------------------------


def test_burst_then_refusal_with_retry_after() -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(10, 5))]
    assert burst(limiter, limited, SLEEP, 0.0) == 5, "buckets start full: the burst"
    refusal = limiter.admit(limited, SLEEP, 0.0, 1)
    assert refusal == RateDecision(False, "default/rl", "total", 1, RateLimit(10, 5))
    assert limiter.admit(limited, SLEEP, 0.1, 1).allowed, "one token a tenth of a second later"
    control = RateLimiter()
    assert all(control.admit([], SLEEP, 0.0, 1) is ADMITTED for _ in range(1000)), "control: no policy"


@pytest.mark.parametrize(
    ("rate", "replicas", "elapsed", "retry_after"),
    [
        (1, 1, 0.0, 1),  # a token a second: 1 s
        (1, 5, 0.0, 5),  # a fifth of a token a second per replica: 5 s
        (1, 5, 2.5, 3),  # half way there: 2.5 s, rounded up
        (1, 2, 1.999, 1),  # 1 ms left: at least 1
        (100, 1, 0.0, 1),  # 10 ms: at least 1
    ],
)
def test_retry_after_is_the_wait_for_a_token_rounded_up(
    rate: int, replicas: int, elapsed: float, retry_after: int
) -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(rate, 1))]
    assert limiter.admit(limited, SLEEP, 0.0, replicas).allowed
    assert limiter.admit(limited, SLEEP, elapsed, replicas).retry_after == retry_after


def test_sustained_rate_over_ten_seconds() -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(10, 10))]
    assert burst(limiter, limited, SLEEP, 0.0) == 10
    assert abs(sustained(limiter, limited, SLEEP, start=0.0, seconds=10.0) - 100) <= 1
    unlimited = RateLimiter()
    assert sustained(unlimited, [], SLEEP, start=0.0, seconds=10.0, step=0.01) == 1000, (
        "control: without the policy"
    )


def test_two_replicas_each_enforce_half() -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(10, 10), identity=RateLimit(4, 4))]
    assert burst(limiter, limited, "", 0.0, replicas=2) == 2, "the identity burst: 4 / 2"
    assert burst(limiter, limited, SLEEP, 0.0, replicas=2) == 2
    assert burst(limiter, limited, CURL, 0.0, replicas=2) == 1, "then the total: 10 / 2 = 5 in all"
    second = RateLimiter()  # total alone: 5 a second after a burst of 5
    alone = [policy(total=RateLimit(10, 10))]
    assert burst(second, alone, SLEEP, 0.0, replicas=2) == 5
    assert abs(sustained(second, alone, SLEEP, start=0.0, seconds=10.0, replicas=2) - 50) <= 1


def test_a_burst_below_the_replica_count_still_admits_one() -> None:
    """Capacity burst / N has a floor of one token, or the bucket could never admit anything."""
    limiter = RateLimiter()
    assert burst(limiter, [policy(total=RateLimit(1, 1))], SLEEP, 0.0, replicas=3) == 1


# --- identity, overrides, total --------------------------------------------------------------------


def test_each_identity_has_its_own_bucket_and_no_identity_shares_one() -> None:
    limiter = RateLimiter()
    limited = [policy(identity=RateLimit(1, 2))]
    assert burst(limiter, limited, SLEEP, 0.0) == 2
    assert limiter.admit(limited, SLEEP, 0.0, 1) == RateDecision(
        False, "default/rl", "identity", 1, RateLimit(1, 2)
    )
    assert burst(limiter, limited, CURL, 0.0) == 2, "another client: its own bucket"
    assert burst(limiter, limited, "", 0.0) == 2
    assert burst(limiter, limited, "", 0.0) == 0, "clients without an identity share one bucket"


def test_an_override_gets_its_own_rate_shared_by_its_clients_and_capped_by_total() -> None:
    override = ClientOverride(RateLimit(5, 5), (SLEEP, CURL))
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(100, 100), identity=RateLimit(1, 1), overrides=(override,))]
    assert burst(limiter, limited, SLEEP, 0.0) == 5, "its own rate, not identity's 1"
    assert limiter.admit(limited, SLEEP, 0.0, 1).bucket == "override"
    assert burst(limiter, limited, CURL, 0.0) == 0, "one bucket for the clients one override names"
    assert burst(limiter, limited, OTHER, 0.0) == 1, "everyone else: identity"
    assert abs(sustained(limiter, limited, SLEEP, start=0.0, seconds=10.0) - 50) <= 1
    capped = RateLimiter()
    low_total = [policy(total=RateLimit(3, 3), overrides=(override,))]
    assert burst(capped, low_total, SLEEP, 0.0) == 3, "capped by total"
    assert capped.admit(low_total, SLEEP, 0.0, 1).bucket == "total"


def test_a_refused_request_takes_no_token_from_the_other_bucket() -> None:
    # Refused by total: the client's identity bucket keeps its tokens.
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(100, 1), identity=RateLimit(1, 2))]
    assert limiter.admit(limited, CURL, 0.0, 1).allowed  # CURL takes the only total token
    assert limiter.admit(limited, SLEEP, 0.0, 1).bucket == "total"
    assert limiter.admit(limited, SLEEP, 0.01, 1).allowed
    assert limiter.admit(limited, SLEEP, 0.02, 1).allowed, "SLEEP's refusal took none of its 2 tokens"
    assert limiter.admit(limited, SLEEP, 0.03, 1).bucket == "identity"
    # Refused by identity: the total keeps its token for another client.
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(1, 2), identity=RateLimit(1, 1))]
    assert limiter.admit(limited, SLEEP, 0.0, 1).allowed
    assert limiter.admit(limited, SLEEP, 0.0, 1).bucket == "identity"
    assert limiter.admit(limited, CURL, 0.0, 1).allowed, "the total's second token is still there"
    assert limiter.admit(limited, OTHER, 0.0, 1).bucket == "total"


def test_several_policies_all_apply_and_one_refusing_takes_nothing_from_the_others() -> None:
    loose, tight = policy("a", total=RateLimit(1, 3)), policy("b", identity=RateLimit(1, 1))
    limiter = RateLimiter()
    assert limiter.admit([tight, loose], SLEEP, 0.0, 1).allowed
    refusal = limiter.admit([tight, loose], SLEEP, 0.0, 1)
    assert (refusal.policy, refusal.bucket) == ("default/b", "identity")
    assert burst(limiter, [loose], SLEEP, 0.0) == 2, "policy a lost only the admitted request's token"
    assert limiter.admit([loose, loose], CURL, 1.0, 1).allowed, "a policy given twice counts once"
    assert limiter.admit([loose], CURL, 1.0, 1).bucket == "total"


def test_the_refusal_names_the_bucket_with_the_longest_wait() -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(1, 1), identity=RateLimit(1, 1))]
    assert limiter.admit(limited, SLEEP, 0.0, 1).allowed
    # Both empty at 0.5; total refills in 0.5 s, SLEEP's identity in 0.5 s too: tie -> total (first).
    assert limiter.admit(limited, SLEEP, 0.5, 1).bucket == "total"
    assert limiter.admit(limited, CURL, 1.0, 1).allowed  # total empty again, SLEEP's identity full
    decision = limiter.admit(limited, SLEEP, 1.2, 1)
    assert (decision.bucket, decision.retry_after) == ("total", 1)
    slow = [policy(total=RateLimit(10, 1), identity=RateLimit(1, 1))]
    limiter = RateLimiter()
    assert limiter.admit(slow, SLEEP, 0.0, 1).allowed
    assert limiter.admit(slow, SLEEP, 0.05, 1).bucket == "identity", "0.95 s beats the total's 0.05 s"


# --- memory ---------------------------------------------------------------------------------------


def test_identity_buckets_are_bounded() -> None:
    assert MAX_IDENTITIES == 10_000
    limiter = RateLimiter(max_identities=10)
    limited = [policy(identity=RateLimit(1, 1))]
    for i in range(1000):
        assert limiter.admit(limited, f"cluster.local/ns/n/sa/c{i}", i * 0.001, 1).allowed
        assert limiter.tracked_identities("default/rl") <= 10
    assert limiter.tracked_identities("default/rl") == 10
    with pytest.raises(ValueError, match="max_identities 0"):
        RateLimiter(max_identities=0)


def test_a_full_bucket_is_evicted_before_an_older_one_that_is_not() -> None:
    limited = [policy(identity=RateLimit(1, 2))]
    limiter = RateLimiter(max_identities=2)
    assert burst(limiter, limited, SLEEP, 0.0) == 2  # SLEEP: least recently used, empty
    assert limiter.admit(limited, CURL, 0.1, 1).allowed  # CURL: one token left, full by 1.1
    assert limiter.admit(limited, OTHER, 1.2, 1).allowed  # no room: CURL (full) goes, not SLEEP
    assert burst(limiter, limited, SLEEP, 1.2) == 1, "SLEEP kept its state: 1.2 tokens, not a fresh 2"
    # Control: with none full, the least recently used goes, and comes back with a fresh bucket.
    limiter = RateLimiter(max_identities=2)
    assert burst(limiter, limited, SLEEP, 0.0) == 2
    assert burst(limiter, limited, CURL, 0.0) == 2
    assert limiter.admit(limited, OTHER, 0.0, 1).allowed  # evicts SLEEP
    assert limiter.tracked_identities("default/rl") == 2
    assert limiter.admit(limited, SLEEP, 0.0, 1).allowed, "SLEEP's empty bucket was forgotten"


def test_the_eviction_scan_is_bounded() -> None:
    """Only the oldest EVICTION_SCAN entries are looked at: a full bucket behind them is not found, and the
    least recently used one goes instead."""
    limited = [policy(identity=RateLimit(1, 2))]
    limiter = RateLimiter(max_identities=EVICTION_SCAN + 1)
    for i in range(EVICTION_SCAN):
        assert burst(limiter, limited, f"td/ns/n/sa/c{i}", 0.0) == 2
    assert limiter.admit(limited, SLEEP, 0.0, 1).allowed  # SLEEP: the newest, full again at t=1
    assert limiter.admit(limited, CURL, 1.0, 1).allowed  # no full one among the oldest 64: c0 goes
    assert limiter.tracked_identities("default/rl") == EVICTION_SCAN + 1
    assert burst(limiter, limited, "td/ns/n/sa/c1", 1.0) == 1, "c1 kept its state: 1 token, not 2"
    assert burst(limiter, limited, "td/ns/n/sa/c0", 1.0) == 2, "c0 was forgotten: a fresh bucket"


# --- replicas and config pushes -------------------------------------------------------------------


def test_a_new_replica_count_rescales_the_buckets_keeping_their_fill() -> None:
    limiter = RateLimiter()
    limited = [policy(total=RateLimit(10, 10))]
    for _ in range(5):
        assert limiter.admit(limited, SLEEP, 0.0, 1).allowed  # half the burst: 5 of 10 left
    assert burst(limiter, limited, SLEEP, 0.0, replicas=2) == 2, "half of a capacity of 5: 2.5 tokens"
    assert burst(limiter, limited, SLEEP, 1.0, replicas=2) == 5, "refilled at 5 a second, up to 5"
    assert burst(limiter, limited, SLEEP, 10.0, replicas=1) == 10, "full again: the whole burst"
    control = RateLimiter()
    assert burst(control, limited, SLEEP, 0.0, replicas=1) == 10, "control: with one replica, the whole burst"
    assert burst(RateLimiter(), limited, SLEEP, 0.0, replicas=0) == 10, "fewer than one counts as one"


def test_state_survives_a_config_push_while_the_policy_is_unchanged() -> None:
    original = policy(total=RateLimit(1, 2), identity=RateLimit(1, 2))
    limiter = RateLimiter()
    assert burst(limiter, [original], SLEEP, 0.0) == 2
    assert burst(limiter, [dataclasses.replace(original)], SLEEP, 0.0) == 0, "an equal policy: same buckets"
    # identity changed: the total keeps its (empty) state, identity buckets start afresh
    new_identity = dataclasses.replace(original, identity=RateLimit(1, 3))
    assert limiter.admit([new_identity], SLEEP, 0.0, 1).bucket == "total"
    # total changed: a fresh, full total
    new_total = dataclasses.replace(new_identity, total=RateLimit(1, 5))
    assert burst(limiter, [new_total], SLEEP, 0.0) == 3, "the fresh identity bucket (3) stops it first"
    assert limiter.policies == ("default/rl",)
    limiter.retain(["default/other"])
    assert limiter.policies == ()
    assert burst(limiter, [new_total], SLEEP, 0.0) == 3, "forgotten: fresh buckets again"


def test_an_override_bucket_survives_while_an_equal_override_exists() -> None:
    sleep = ClientOverride(RateLimit(1, 2), (SLEEP,))
    curl = ClientOverride(RateLimit(1, 2), (CURL,))
    limiter = RateLimiter()
    assert burst(limiter, [policy(overrides=(sleep, curl))], SLEEP, 0.0) == 2
    assert burst(limiter, [policy(overrides=(sleep, curl))], CURL, 0.0) == 2
    reordered = policy(overrides=(ClientOverride(RateLimit(1, 3), (CURL,)), sleep))
    assert burst(limiter, [reordered], SLEEP, 0.0) == 0, "the same override, moved: its bucket moves"
    assert burst(limiter, [reordered], CURL, 0.0) == 3, "a changed override: a fresh bucket"


# --- from the snapshot ----------------------------------------------------------------------------

WAYPOINT_KEY = "default/waypoint.default.svc.cluster.local"


def entries(*values: Resource) -> dict[str, Entry]:
    return {resource_name(v): ("1", v) for v in values}


def replica(uid: str, service_key: str = WAYPOINT_KEY, *, ready: bool = True) -> Workload:
    return Workload(
        uid,
        uid,
        "default",
        "waypoint",
        "n1",
        (f"10.244.0.{len(uid)}",),
        status=HealthStatus.HEALTHY if ready else HealthStatus.UNHEALTHY,
        services=((service_key, ()),),
    )


def waypoint_service(hostname: str = "waypoint.default.svc.cluster.local") -> Service:
    return Service("waypoint", "default", hostname, ("10.96.0.9",), (ServicePort(15008),))


def test_ready_replicas_counts_the_healthy_endpoints_of_the_waypoints_service() -> None:
    snap = Snapshot.build(
        entries(waypoint_service(), replica("a"), replica("bb"), replica("ccc", ready=False))
    )
    assert ready_replicas(snap, "default", "waypoint") == 2
    assert ready_replicas(snap, "default", "other") == 1, "none known: this replica is one"
    assert ready_replicas(Snapshot.empty(), "default", "waypoint") == 1
    other_domain = "default/waypoint.default.svc.example.org"
    snap = Snapshot.build(
        entries(
            waypoint_service("waypoint.default.svc.example.org"),
            replica("a", other_domain),
            replica("bb", other_domain),
            replica("ccc", other_domain),
        )
    )
    assert ready_replicas(snap, "default", "waypoint") == 3, "found by name in another cluster domain"


def test_rate_limits_through_a_waypoint() -> None:
    on_gateway = policy(
        "gw", total=RateLimit(1, 1), targets=(PolicyTarget(GATEWAY_TARGET, "default", "waypoint"),)
    )
    on_web = policy("web", total=RateLimit(1, 1))
    on_both = policy(
        "both", total=RateLimit(1, 1), targets=(WEB, PolicyTarget(GATEWAY_TARGET, "default", "waypoint"))
    )
    on_api = policy("api", total=RateLimit(1, 1), targets=(PolicyTarget(SERVICE_TARGET, "default", "api"),))
    snap = Snapshot.build(entries(on_gateway, on_web, on_both, on_api))
    web = Service("web", "default", "web.default.svc.cluster.local", ("10.96.0.10",), (ServicePort(80),))
    assert rate_limits_through(snap, "default", "waypoint", web) == (on_both, on_gateway, on_web)
    assert rate_limits_through(snap, "default", "waypoint", None) == (on_both, on_gateway), "pod-addressed"
    assert rate_limits_through(snap, "default", "other", None) == ()
