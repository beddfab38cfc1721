"""Local rate limits as a waypoint applies them: ``policy.ambit.dev/v1alpha1 HTTPLocalRateLimitPolicy``.

Data only; translation is ``ambit.control.translate_rate_limit``, the token buckets
``ambit.routing.rate_limit``. Stdlib only. The shape is Linkerd's ``HTTPLocalRateLimitPolicy``
(https://linkerd.io/2-edge/reference/rate-limiting/: ``total``, ``identity``, ``overrides`` with
``clientRefs``), attached with Gateway API ``targetRefs`` like an Istio waypoint policy, plus a ``burst``:

* a :class:`RateLimitPolicy` is one object (``name``, ``namespace``); it applies to the requests a
  waypoint handles for each of its ``targets`` (:class:`~ambit.model.policy.PolicyTarget`: a
  ``Gateway``, i.e. a waypoint — all traffic through it — or a ``Service`` of the policy's own namespace
  — the traffic addressed to that Service). Every target shares the policy's buckets: a policy listing
  two Services gives them one ``total`` between them (write two policies for two rates);
* :class:`RateLimit` is a token bucket: ``requests_per_second`` tokens a second, at most ``burst`` held
  (the source's default burst is one second's worth, ``requests_per_second``, as Linkerd's GCRA quota);
* ``total``: one bucket for all the policy's traffic (None: no overall limit);
* ``identity``: one bucket PER CLIENT IDENTITY (a SPIFFE principal) at this limit; every client without
  an identity shares one bucket, as Linkerd's unmeshed sources (None: no per-client limit);
* ``overrides``: a :class:`ClientOverride` gives the clients it lists a limit INSTEAD of ``identity``;
  like Linkerd's, one override is one bucket shared by the clients it names. A principal is named by at
  most one override of a policy;
* a request is admitted only if its client's bucket (its override, else ``identity``, else none) AND the
  ``total`` bucket both hold a token — so a client is also capped by ``total`` — and every policy that
  applies admits it; a refused request takes no token from any bucket.

Principals are written as the L7 authorization model writes them (``ambit.model.policy``): the SPIFFE
ID WITHOUT ``spiffe://``, ``<trust-domain>/ns/<namespace>/sa/<service-account>``.

Keys: :attr:`RateLimitPolicy.key` is ``<namespace>/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ambit.model.identity import IdentityError, check_segment, check_trust_domain
from ambit.model.policy import PolicyTarget

TOTAL = "total"
IDENTITY = "identity"
OVERRIDE = "override"
BUCKETS = frozenset({TOTAL, IDENTITY, OVERRIDE})  # which bucket refused a request


def _count(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} {value!r} is not an integer of at least 1")


def check_principal(principal: str) -> str:
    """``principal`` if it is ``<trust-domain>/ns/<namespace>/sa/<service-account>``, else ValueError."""
    if not isinstance(principal, str):
        raise ValueError(f"principal {principal!r} is not a string")
    parts = principal.split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise ValueError(
            f"principal {principal!r} is not of the form <trust-domain>/ns/<namespace>/sa/<service-account>"
        )
    try:
        check_trust_domain(parts[0])
        check_segment("namespace", parts[2])
        check_segment("service account", parts[4])
    except IdentityError as exc:
        raise ValueError(f"principal {principal!r}: {exc}") from None
    return principal


def principal_for(trust_domain: str, namespace: str, service_account: str) -> str:
    """The principal of a service account: ``<trust-domain>/ns/<namespace>/sa/<service-account>``."""
    return f"{trust_domain}/ns/{namespace}/sa/{service_account}"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``requests_per_second`` tokens a second, at most ``burst`` held (both >= 1)."""

    requests_per_second: int
    burst: int

    def __post_init__(self) -> None:
        _count("requests_per_second", self.requests_per_second)
        _count("burst", self.burst)


@dataclass(frozen=True, slots=True)
class ClientOverride:
    """The clients ``principals`` (1+, each once) share one bucket at ``limit`` instead of ``identity``."""

    limit: RateLimit
    principals: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.limit, RateLimit):
            raise ValueError(f"override limit {self.limit!r} is not a RateLimit")
        if not self.principals:
            raise ValueError("an override names no client")
        for principal in self.principals:
            check_principal(principal)
        if len(set(self.principals)) != len(self.principals):
            raise ValueError(f"an override names a client twice: {list(self.principals)}")


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """One HTTPLocalRateLimitPolicy (see the module docstring)."""

    name: str
    namespace: str
    targets: tuple[PolicyTarget, ...]
    total: RateLimit | None = None
    identity: RateLimit | None = None
    overrides: tuple[ClientOverride, ...] = ()

    def __post_init__(self) -> None:
        try:
            check_segment("policy name", self.name)
            check_segment("namespace", self.namespace)
        except IdentityError as exc:
            raise ValueError(str(exc)) from None
        if not self.targets:
            raise ValueError(f"rate limit policy {self.key} has no target")
        for target in self.targets:
            if not isinstance(target, PolicyTarget):
                raise ValueError(f"target {target!r} is not a PolicyTarget")
            if target.namespace != self.namespace:
                raise ValueError(
                    f"rate limit policy {self.key} targets {target.kind} {target.namespace}/{target.name} "
                    "in another namespace"
                )
        if self.total is None and self.identity is None and not self.overrides:
            raise ValueError(f"rate limit policy {self.key} sets none of total, identity and overrides")
        seen: set[str] = set()
        for override in self.overrides:
            twice = seen.intersection(override.principals)
            if twice:
                raise ValueError(f"rate limit policy {self.key}: {sorted(twice)} named by two overrides")
            seen.update(override.principals)

    @property
    def key(self) -> str:
        """The object: ``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"

    def client_limit(self, principal: str) -> tuple[str, int, RateLimit] | None:
        """The bucket a client's requests count against besides ``total``: (``"override"``, the
        override's index, its limit) when an override names ``principal``, else (``"identity"``, -1,
        ``identity``), else None. ``""`` (no identity) is named by no override."""
        if principal:
            for index, override in enumerate(self.overrides):
                if principal in override.principals:
                    return OVERRIDE, index, override.limit
        if self.identity is not None:
            return IDENTITY, -1, self.identity
        return None
