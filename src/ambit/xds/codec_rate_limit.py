"""Wire ↔ model for the RateLimitPolicy type (``rl/`` names): an HTTPLocalRateLimitPolicy's targets, total,
per-identity limit and client overrides, read only by waypoints (:mod:`ambit.model.rate_limit`).

Decoding checks a policy name and namespace that are SPIFFE segments, 1+ targets of a known kind in the
policy's namespace, rates and bursts of at least 1 where a limit is set, overrides with a limit and 1+
well-formed principals (``<trust-domain>/ns/<namespace>/sa/<service-account>``, each named by one override
only), and at least one limit; the dispatch (:func:`ambit.xds.codec.resource_from_any`) then checks the key
agrees with the resource name. Anything wrong raises :class:`~ambit.xds.codec_fields.XdsRejected`.
"""

from __future__ import annotations

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy, check_principal
from ambit.state.snapshot import resource_name
from ambit.xds.codec_fields import XdsRejected, enum_value, required, segment, uint32
from ambit.xds.pb.ratelimit.v1 import rate_limit_pb2

_TARGET_TO_PB = {GATEWAY_TARGET: rate_limit_pb2.GATEWAY, SERVICE_TARGET: rate_limit_pb2.SERVICE}
_TARGET_FROM_PB: dict[int, str] = {v: k for k, v in _TARGET_TO_PB.items()}


def _limit_to_pb(name: str, limit: RateLimit, what: str) -> rate_limit_pb2.RateLimit:
    return rate_limit_pb2.RateLimit(
        requests_per_second=uint32(name, limit.requests_per_second, f"{what} requests_per_second"),
        burst=uint32(name, limit.burst, f"{what} burst"),
    )


def rate_limit_to_pb(policy: RateLimitPolicy) -> rate_limit_pb2.RateLimitPolicy:
    name = resource_name(policy)
    pb = rate_limit_pb2.RateLimitPolicy(
        name=policy.name,
        namespace=policy.namespace,
        targets=[
            rate_limit_pb2.PolicyTarget(kind=_TARGET_TO_PB[t.kind], namespace=t.namespace, name=t.name)
            for t in policy.targets
        ],
        overrides=[
            rate_limit_pb2.ClientOverride(
                limit=_limit_to_pb(name, o.limit, "override"), principals=list(o.principals)
            )
            for o in policy.overrides
        ],
    )
    if policy.total is not None:
        pb.total.CopyFrom(_limit_to_pb(name, policy.total, "total"))
    if policy.identity is not None:
        pb.identity.CopyFrom(_limit_to_pb(name, policy.identity, "identity"))
    return pb


def _count(name: str, what: str, value: int) -> int:
    if value < 1:
        raise XdsRejected(name, f"{what} {value} is not at least 1")
    return value


def _limit_from_pb(name: str, pb: rate_limit_pb2.RateLimit, what: str) -> RateLimit:
    return RateLimit(
        requests_per_second=_count(name, f"{what} requests_per_second", pb.requests_per_second),
        burst=_count(name, f"{what} burst", pb.burst),
    )


def _target_from_pb(name: str, namespace: str, pb: rate_limit_pb2.PolicyTarget) -> PolicyTarget:
    target = PolicyTarget(
        kind=enum_value(name, _TARGET_FROM_PB, pb.kind, "rate limit target kind"),
        namespace=segment(name, "target namespace", pb.namespace),
        name=required(name, "target name", pb.name),
    )
    if target.namespace != namespace:
        raise XdsRejected(
            name, f"target {target.kind} {target.namespace}/{target.name} is in another namespace"
        )
    return target


def _principal(name: str, value: str) -> str:
    try:
        return check_principal(value)
    except ValueError as exc:
        raise XdsRejected(name, str(exc)) from None


def _override_from_pb(name: str, index: int, pb: rate_limit_pb2.ClientOverride) -> ClientOverride:
    what = f"override {index}"
    if not pb.HasField("limit"):
        raise XdsRejected(name, f"{what} has no limit")
    if not pb.principals:
        raise XdsRejected(name, f"{what} names no client")
    principals = tuple(_principal(name, p) for p in pb.principals)
    if len(set(principals)) != len(principals):
        raise XdsRejected(name, f"{what} names a client twice")
    return ClientOverride(_limit_from_pb(name, pb.limit, what), principals)


def rate_limit_from_pb(name: str, pb: rate_limit_pb2.RateLimitPolicy) -> RateLimitPolicy:
    namespace = segment(name, "namespace", pb.namespace)
    policy_name = segment(name, "rate limit policy name", pb.name)
    if not pb.targets:
        raise XdsRejected(name, "rate limit policy has no target")
    targets = tuple(_target_from_pb(name, namespace, t) for t in pb.targets)
    total = _limit_from_pb(name, pb.total, "total") if pb.HasField("total") else None
    identity = _limit_from_pb(name, pb.identity, "identity") if pb.HasField("identity") else None
    overrides = tuple(_override_from_pb(name, i, o) for i, o in enumerate(pb.overrides))
    if total is None and identity is None and not overrides:
        raise XdsRejected(name, "rate limit policy sets none of total, identity and overrides")
    try:
        return RateLimitPolicy(policy_name, namespace, targets, total, identity, overrides)
    except ValueError as exc:  # what is left: a client named by two overrides
        raise XdsRejected(name, str(exc)) from None
