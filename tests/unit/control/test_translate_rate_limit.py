"""HTTPLocalRateLimitPolicy → the waypoint's RateLimitPolicy: fields, defaults, principals, targets that do
not exist, duplicated clients, versions."""

from __future__ import annotations

from typing import Any

from translate_builders import JSON, run, service, waypoint

from ambit.control.app import WATCHED_KINDS
from ambit.control.translate_rate_limit import convert_rate_limit_policy
from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy
from ambit.model.version import content_version

WEB = PolicyTarget(SERVICE_TARGET, "default", "web")


def rl(spec: JSON, name: str = "rl", ns: str = "default", *, targets: list[JSON] | None = None) -> JSON:
    refs = targets if targets is not None else [{"group": "", "kind": "Service", "name": "web"}]
    return {
        "apiVersion": "policy.ambit.dev/v1alpha1",
        "kind": "HTTPLocalRateLimitPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"targetRefs": refs, **spec},
    }


def translated(*objects: JSON, **kwargs: Any) -> tuple[dict[str, RateLimitPolicy], tuple[str, ...]]:
    result = run(service("web"), waypoint(), *objects, **kwargs)
    return dict(result.rate_limits), result.warnings


def only(*objects: JSON, **kwargs: Any) -> RateLimitPolicy:
    """The one rate limit policy, and no warnings."""
    values, warnings = translated(*objects, **kwargs)
    assert warnings == ()
    (value,) = values.values()
    return value


def test_every_field() -> None:
    value = only(
        rl(
            {
                "total": {"requestsPerSecond": 100, "burst": 20},
                "identity": {"requestsPerSecond": 10, "burst": 10},
                "overrides": [
                    {
                        "requestsPerSecond": 50,
                        "burst": 50,
                        "clientRefs": [
                            {"kind": "ServiceAccount", "namespace": "sleep", "name": "sleep"},
                            {"kind": "ServiceAccount", "name": "curl"},
                        ],
                    }
                ],
            },
            targets=[
                {"group": "", "kind": "Service", "name": "web"},
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "waypoint"},
            ],
        )
    )
    assert value == RateLimitPolicy(
        "rl",
        "default",
        (PolicyTarget(GATEWAY_TARGET, "default", "waypoint"), WEB),
        total=RateLimit(100, 20),
        identity=RateLimit(10, 10),
        overrides=(
            ClientOverride(
                RateLimit(50, 50), ("cluster.local/ns/sleep/sa/sleep", "cluster.local/ns/default/sa/curl")
            ),
        ),
    )


def test_burst_defaults_to_one_seconds_worth() -> None:
    value = only(
        rl(
            {
                "total": {"requestsPerSecond": 100},
                "identity": {"requestsPerSecond": 20},
                "overrides": [
                    {"requestsPerSecond": 25, "clientRefs": [{"kind": "ServiceAccount", "name": "a"}]}
                ],
            }
        )
    )
    assert value.total == RateLimit(100, 100)
    assert value.identity == RateLimit(20, 20)
    assert value.overrides[0].limit == RateLimit(25, 25)


def test_principals_use_the_mesh_trust_domain() -> None:
    spec = {"overrides": [{"requestsPerSecond": 1, "clientRefs": [{"kind": "ServiceAccount", "name": "a"}]}]}
    value = only(rl(spec), trust_domain="example.org")
    assert value.overrides[0].principals == ("example.org/ns/default/sa/a",)
    assert value.total is None and value.identity is None


def test_a_target_that_does_not_exist_is_kept_with_a_warning() -> None:
    """As Istio for an AuthorizationPolicy's targetRefs: the policy applies once the target exists."""
    values, warnings = translated(
        rl(
            {"total": {"requestsPerSecond": 5}},
            targets=[
                {"kind": "Service", "name": "nope"},
                {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "missing"},
            ],
        )
    )
    assert values["default/rl"].targets == (
        PolicyTarget(GATEWAY_TARGET, "default", "missing"),
        PolicyTarget(SERVICE_TARGET, "default", "nope"),
    )
    assert warnings == (
        "HTTPLocalRateLimitPolicy default/rl: targetRef Gateway default/missing is not a waypoint (no "
        "Gateway of class istio-waypoint or ambit-waypoint by that name); the policy applies once it is",
        "HTTPLocalRateLimitPolicy default/rl: targetRef Service default/nope does not exist; the policy "
        "applies once it does",
    )
    assert only(rl({"total": {"requestsPerSecond": 5}})).targets == (WEB,), (
        "control: an existing one warns not"
    )


def test_a_client_named_by_two_overrides_belongs_to_the_first() -> None:
    sleep = {"kind": "ServiceAccount", "namespace": "sleep", "name": "sleep"}
    values, warnings = translated(
        rl(
            {
                "overrides": [
                    {"requestsPerSecond": 5, "clientRefs": [sleep]},
                    {"requestsPerSecond": 7, "clientRefs": [sleep, {"kind": "ServiceAccount", "name": "b"}]},
                    {"requestsPerSecond": 9, "clientRefs": [sleep, sleep]},
                ]
            }
        )
    )
    assert values["default/rl"].overrides == (
        ClientOverride(RateLimit(5, 5), ("cluster.local/ns/sleep/sa/sleep",)),
        ClientOverride(RateLimit(7, 7), ("cluster.local/ns/default/sa/b",)),
    )
    assert warnings == (
        "HTTPLocalRateLimitPolicy default/rl: overrides[1] names cluster.local/ns/sleep/sa/sleep, which an "
        "earlier override already limits; the earlier override applies to it",
        "HTTPLocalRateLimitPolicy default/rl: overrides[2] is left with no client of its own; it is ignored",
        "HTTPLocalRateLimitPolicy default/rl: overrides[2] names cluster.local/ns/sleep/sa/sleep, which an "
        "earlier override already limits; the earlier override applies to it",
    )


def test_a_repeated_target_counts_once_and_policies_are_by_key() -> None:
    values, warnings = translated(
        rl({"total": {"requestsPerSecond": 1}}, targets=[{"kind": "Service", "name": "web"}] * 2),
        rl({"identity": {"requestsPerSecond": 1}}, name="other"),
    )
    assert warnings == ()
    assert sorted(values) == ["default/other", "default/rl"]
    assert values["default/rl"].targets == (WEB,)


def test_an_object_that_skipped_validation_is_skipped_with_a_warning() -> None:
    """Translation never raises on an odd object (the store's objects are validated; this one is not)."""
    warnings: list[str] = []
    odd = rl({"total": {"requestsPerSecond": "many"}})
    assert (
        convert_rate_limit_policy(
            odd,
            services={},
            waypoints=(),
            trust_domain="cluster.local",
            cluster_domain="cluster.local",
            warnings=warnings,
        )
        is None
    )
    assert (
        warnings[-1]
        == "HTTPLocalRateLimitPolicy default/rl: not translated: requestsPerSecond is not an integer"
    )
    no_target = rl({"total": {"requestsPerSecond": 1}}, targets=[{"kind": "Deployment", "name": "x"}])
    assert (
        convert_rate_limit_policy(
            no_target,
            services={},
            waypoints=(),
            trust_domain="cluster.local",
            cluster_domain="cluster.local",
            warnings=warnings,
        )
        is None
    )
    assert (
        warnings[-1]
        == "HTTPLocalRateLimitPolicy default/rl: no target a waypoint supports; the policy is ignored"
    )


def test_the_control_plane_watches_and_versions_them() -> None:
    assert "HTTPLocalRateLimitPolicy" in WATCHED_KINDS
    result = run(service("web"), rl({"total": {"requestsPerSecond": 3}}))
    value = result.rate_limits["default/rl"]
    assert result.versions["rl/default/rl"] == content_version(value)
    assert not any(name.startswith("rl/") for name in run(service("web")).versions), (
        "control: none without one"
    )
