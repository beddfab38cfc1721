"""The rate limit model (ambit.model.rate_limit): what a value may hold, its key, which bucket a client
meets."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import (
    IDENTITY,
    OVERRIDE,
    ClientOverride,
    RateLimit,
    RateLimitPolicy,
    check_principal,
    principal_for,
)

WEB = PolicyTarget(SERVICE_TARGET, "default", "web")
SLEEP = "cluster.local/ns/sleep/sa/sleep"
CURL = "cluster.local/ns/curl/sa/curl"


def policy(**fields: object) -> RateLimitPolicy:
    values: dict[str, object] = {
        "name": "rl",
        "namespace": "default",
        "targets": (WEB,),
        "total": RateLimit(10, 5),
    }
    values.update(fields)
    return RateLimitPolicy(**values)  # type: ignore[arg-type]


def test_a_valid_policy_and_its_key() -> None:
    value = policy(
        targets=(WEB, PolicyTarget(GATEWAY_TARGET, "default", "waypoint")),
        identity=RateLimit(2, 2),
        overrides=(ClientOverride(RateLimit(5, 5), (SLEEP, CURL)),),
    )
    assert value.key == "default/rl"
    assert principal_for("cluster.local", "sleep", "sleep") == SLEEP
    assert check_principal(SLEEP) == SLEEP


def test_the_client_limit_is_the_override_else_identity_else_none() -> None:
    override = ClientOverride(RateLimit(5, 5), (SLEEP,))
    value = policy(identity=RateLimit(2, 3), overrides=(ClientOverride(RateLimit(1, 1), (CURL,)), override))
    assert value.client_limit(SLEEP) == (OVERRIDE, 1, RateLimit(5, 5))
    assert value.client_limit("cluster.local/ns/other/sa/x") == (IDENTITY, -1, RateLimit(2, 3))
    assert value.client_limit("") == (IDENTITY, -1, RateLimit(2, 3)), "no identity: the shared bucket"
    assert policy().client_limit(SLEEP) is None, "control: without identity or override, no client bucket"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: RateLimit(0, 1), "requests_per_second 0 is not an integer of at least 1"),
        (lambda: RateLimit(1, 0), "burst 0 is not an integer of at least 1"),
        (lambda: RateLimit(True, 1), "requests_per_second True"),
        (lambda: RateLimit(1.5, 2), "requests_per_second 1.5"),  # type: ignore[arg-type]
        (lambda: ClientOverride(RateLimit(1, 1), ()), "names no client"),
        (lambda: ClientOverride(RateLimit(1, 1), (SLEEP, SLEEP)), "names a client twice"),
        (
            lambda: ClientOverride(RateLimit(1, 1), ("spiffe://cluster.local/ns/a/sa/b",)),
            "is not of the form",
        ),
        (lambda: ClientOverride(RateLimit(1, 1), ("cluster.local/ns/a",)), "is not of the form"),
        (lambda: ClientOverride(RateLimit(1, 1), ("cluster.local/ns/a/sb/b",)), "is not of the form"),
        (lambda: ClientOverride(RateLimit(1, 1), ("Cluster.Local/ns/a/sa/b",)), "trust domain"),
        (lambda: ClientOverride(RateLimit(1, 1), ("cluster.local/ns/a b/sa/b",)), "namespace"),
        (lambda: policy(targets=()), "has no target"),
        (lambda: policy(targets=(PolicyTarget(SERVICE_TARGET, "other", "web"),)), "in another namespace"),
        (lambda: policy(total=None), "sets none of total, identity and overrides"),
        (lambda: policy(name=""), "policy name is empty"),
        (lambda: policy(namespace="a/b"), "namespace 'a/b' may contain only"),
        (
            lambda: policy(
                overrides=(
                    ClientOverride(RateLimit(1, 1), (SLEEP,)),
                    ClientOverride(RateLimit(2, 2), (CURL, SLEEP)),
                )
            ),
            "named by two overrides",
        ),
    ],
)
def test_invalid_values_are_refused(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_each_limit_alone_is_enough() -> None:
    assert policy(total=None, identity=RateLimit(1, 1)).identity == RateLimit(1, 1)
    only_override = policy(total=None, overrides=(ClientOverride(RateLimit(1, 1), (SLEEP,)),))
    assert only_override.client_limit(SLEEP) == (OVERRIDE, 0, RateLimit(1, 1))
    assert only_override.client_limit(CURL) is None
