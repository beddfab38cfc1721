"""``policy.ambit.dev/v1alpha1 HTTPLocalRateLimitPolicy`` → the waypoint's ``RateLimitPolicy``.

Beyond Istio (which has no local rate limit API but an EnvoyFilter): the shape is Linkerd's
``HTTPLocalRateLimitPolicy`` (https://linkerd.io/2-edge/reference/rate-limiting/), attached like an Istio
waypoint policy. The data model and what a policy means is ``ambit.model.rate_limit``, the token buckets
``ambit.routing.rate_limit``. The object::

    apiVersion: policy.ambit.dev/v1alpha1
    kind: HTTPLocalRateLimitPolicy
    metadata: {name: httpbin-rl, namespace: httpbin}
    spec:
      targetRefs:                     # 1+: a core Service or a gateway.networking.k8s.io Gateway (a waypoint)
      - {group: "", kind: Service, name: httpbin}
      total: {requestsPerSecond: 100, burst: 20}      # optional: the whole target's rate
      identity: {requestsPerSecond: 10, burst: 10}    # optional: a default limit per client identity
      overrides:                                      # optional: these clients' limit instead of identity
      - requestsPerSecond: 50
        burst: 50
        clientRefs: [{kind: ServiceAccount, namespace: sleep, name: sleep}]

Validation (``ambit.resources.schemas``, ``rules``) has already required 1+ targets of those kinds in the
policy's namespace, counts of at least 1, at least one of total/identity/overrides, and no identity or
override ``requestsPerSecond`` above the total's (Linkerd's admission rule). Exactly what happens here:

* targets: each ``targetRefs`` entry becomes a ``PolicyTarget`` (sorted, each once). A target that does
  not exist (no such Service; no such Gateway of a waypoint class) is kept, with a warning — the policy
  applies as soon as it does, as Istio treats an AuthorizationPolicy's ``targetRefs``
  (``ambit.control.translate_policy_l7`` does not look them up either);
* ``burst`` unset → ``requestsPerSecond`` (one second's worth, Linkerd's GCRA quota);
* ``clientRefs`` → principals ``<trust-domain>/ns/<namespace>/sa/<name>`` (the namespace defaults to the
  policy's, as Linkerd), with the mesh's trust domain as ``translate_policy_l7`` writes ``serviceAccounts``;
* a ServiceAccount named by two overrides belongs to the first; the later mention is dropped with a
  warning (an override left with no client is dropped);
* a policy that cannot be translated is skipped with a warning naming it.

Warnings name the policy (``HTTPLocalRateLimitPolicy <ns>/<name>``). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from ambit.model.policy import GATEWAY_TARGET, SERVICE_TARGET, PolicyTarget
from ambit.model.rate_limit import ClientOverride, RateLimit, RateLimitPolicy, principal_for
from ambit.model.workload import Service, service_hostname
from ambit.resources.objects import JSON, items, mapping, name_of, namespace_or_default, text

POLICY_GROUP = "policy.ambit.dev"
KIND = "HTTPLocalRateLimitPolicy"
GATEWAY_GROUP = "gateway.networking.k8s.io"


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _limit(spec: JSON) -> RateLimit:
    rate = _count(spec.get("requestsPerSecond"))
    if rate is None:
        raise ValueError("requestsPerSecond is not an integer")
    burst = _count(spec.get("burst"))
    return RateLimit(rate, burst if burst is not None else rate)


def _targets(
    spec: JSON,
    namespace: str,
    what: str,
    *,
    services: Mapping[str, Service],
    waypoints: Collection[tuple[str, str]],
    cluster_domain: str,
    warnings: list[str],
) -> tuple[PolicyTarget, ...]:
    found: set[PolicyTarget] = set()
    for ref in items(spec, "targetRefs"):
        kind, name = text(ref, "kind"), text(ref, "name")
        ref_namespace = text(ref, "namespace") or namespace
        if ref_namespace != namespace:
            warnings.append(
                f"{what}: targetRef {kind} {ref_namespace}/{name} is in another namespace; ignored"
            )
            continue
        if kind == "Gateway":
            found.add(PolicyTarget(GATEWAY_TARGET, namespace, name))
            if (namespace, name) not in waypoints:
                warnings.append(
                    f"{what}: targetRef Gateway {namespace}/{name} is not a waypoint (no Gateway of class "
                    "istio-waypoint or ambit-waypoint by that name); the policy applies once it is"
                )
        elif kind == "Service":
            found.add(PolicyTarget(SERVICE_TARGET, namespace, name))
            if f"{namespace}/{service_hostname(name, namespace, cluster_domain)}" not in services:
                warnings.append(
                    f"{what}: targetRef Service {namespace}/{name} does not exist; "
                    "the policy applies once it does"
                )
        else:
            warnings.append(f"{what}: targetRef kind {kind!r} is not supported; ignored")
    return tuple(sorted(found, key=lambda t: (t.kind, t.namespace, t.name)))


def _overrides(
    spec: JSON, namespace: str, trust_domain: str, what: str, warnings: list[str]
) -> tuple[ClientOverride, ...]:
    out: list[ClientOverride] = []
    taken: set[str] = set()
    for position, entry in enumerate(items(spec, "overrides")):
        principals: list[str] = []
        for ref in items(entry, "clientRefs"):
            principal = principal_for(trust_domain, text(ref, "namespace") or namespace, text(ref, "name"))
            if principal in taken:
                if principal not in principals:
                    warnings.append(
                        f"{what}: overrides[{position}] names {principal}, which an earlier override already "
                        "limits; the earlier override applies to it"
                    )
                continue
            principals.append(principal)
            taken.add(principal)
        if not principals:
            warnings.append(f"{what}: overrides[{position}] is left with no client of its own; it is ignored")
            continue
        out.append(ClientOverride(_limit(entry), tuple(principals)))
    return tuple(out)


def convert_rate_limit_policy(
    obj: JSON,
    *,
    services: Mapping[str, Service],
    waypoints: Collection[tuple[str, str]],
    trust_domain: str,
    cluster_domain: str,
    warnings: list[str],
) -> RateLimitPolicy | None:
    """The waypoint's rate limit policy of one object, or None (with a warning) when it has none."""
    namespace, name = namespace_or_default(obj), name_of(obj)
    what = f"{KIND} {namespace}/{name}"
    spec = mapping(obj, "spec")
    try:
        targets = _targets(
            spec,
            namespace,
            what,
            services=services,
            waypoints=waypoints,
            cluster_domain=cluster_domain,
            warnings=warnings,
        )
        if not targets:
            warnings.append(f"{what}: no target a waypoint supports; the policy is ignored")
            return None
        total = _limit(mapping(spec, "total")) if spec.get("total") is not None else None
        identity = _limit(mapping(spec, "identity")) if spec.get("identity") is not None else None
        overrides = _overrides(spec, namespace, trust_domain, what, warnings)
        return RateLimitPolicy(name, namespace, targets, total, identity, overrides)
    except ValueError as exc:
        warnings.append(f"{what}: not translated: {exc}")
        return None


def convert_rate_limits(
    objects: Iterable[JSON],
    services: Mapping[str, Service],
    *,
    waypoints: Collection[tuple[str, str]],
    trust_domain: str,
    cluster_domain: str,
    warnings: list[str],
) -> dict[str, RateLimitPolicy]:
    """Every rate limit policy by key ``<namespace>/<name>``; problems are appended to ``warnings``."""
    out: dict[str, RateLimitPolicy] = {}
    for obj in objects:
        policy = convert_rate_limit_policy(
            obj,
            services=services,
            waypoints=waypoints,
            trust_domain=trust_domain,
            cluster_domain=cluster_domain,
            warnings=warnings,
        )
        if policy is not None:
            out[policy.key] = policy
    return out
