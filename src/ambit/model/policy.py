"""Authorization policies as proxies see them: L4 (Istio's `istio.security.Authorization`) and L7.

Data only; evaluation lives in `ambit.authz`. Structure and meaning, as in Istio:

* a policy matches a connection if ANY of its rules matches; a policy with no rules matches nothing
  (so an ALLOW policy with no rules, which is what `spec: {}` becomes, allows nothing);
* a rule matches if ALL of its clauses match;
* a clause matches if ANY of its matches matches;
* a match matches if every non-empty positive field matches and no `not_*` field matches.

Scope says which workloads a policy applies to: GLOBAL (root namespace, every workload),
NAMESPACE (no selector: every workload in its namespace), WORKLOAD_SELECTOR (only workloads that
list the policy key in `Workload.authorization_policies`).

L7 policies (`L7Authorization`, what a waypoint enforces: Istio AuthorizationPolicies with
`targetRefs`) have the same ANY/ALL structure (`L7Rule` = ALL of `L7Clause`s, `L7Clause` = ANY of
`L7Match`es, a policy with no rules matches nothing) and apply to the Gateways (waypoints) and Services
named in `targets` instead of a scope. An `L7Match` adds the HTTP attributes to the L4 ones: hosts,
methods, paths and request headers, each with a `not_` twin. How each field is compared (hosts
case-insensitive, paths without the query string, headers joined with ``,``) is `ambit.authz.l7`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Scope(Enum):
    GLOBAL = "GLOBAL"
    NAMESPACE = "NAMESPACE"
    WORKLOAD_SELECTOR = "WORKLOAD_SELECTOR"


class Action(Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class MatchKind(Enum):
    EXACT = "EXACT"
    PREFIX = "PREFIX"
    SUFFIX = "SUFFIX"
    PRESENCE = "PRESENCE"


@dataclass(frozen=True, slots=True)
class StringMatch:
    """Istio's string match: `*` alone is presence, `x*` a prefix, `*x` a suffix, else exact."""

    kind: MatchKind
    value: str = ""

    @classmethod
    def parse(cls, text: str) -> StringMatch:
        if text == "*":
            return cls(MatchKind.PRESENCE)
        if text.endswith("*"):
            return cls(MatchKind.PREFIX, text[:-1])
        if text.startswith("*"):
            return cls(MatchKind.SUFFIX, text[1:])
        return cls(MatchKind.EXACT, text)

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.kind is MatchKind.PRESENCE:
            return value != ""
        if self.kind is MatchKind.PREFIX:
            return value.startswith(self.value)
        if self.kind is MatchKind.SUFFIX:
            return value.endswith(self.value)
        return value == self.value


@dataclass(frozen=True, slots=True)
class Match:
    """One set of L4 conditions. IP fields hold CIDRs (`10.0.0.0/8`, single IPs as /32 or /128)."""

    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    source_ips: tuple[str, ...] = ()
    not_source_ips: tuple[str, ...] = ()
    destination_ips: tuple[str, ...] = ()
    not_destination_ips: tuple[str, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Clause:
    matches: tuple[Match, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    clauses: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class Authorization:
    """One L4 policy as sent to ztunnel."""

    name: str
    namespace: str
    scope: Scope
    action: Action
    rules: tuple[Rule, ...]
    dry_run: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# --- L7 (waypoint) policies ----------------------------------------------------------------------

GATEWAY_TARGET = "Gateway"  # a waypoint (gateway.networking.k8s.io Gateway)
SERVICE_TARGET = "Service"  # a core Service whose traffic a waypoint handles
TARGET_KINDS = frozenset({GATEWAY_TARGET, SERVICE_TARGET})


@dataclass(frozen=True, slots=True)
class PolicyTarget:
    """What an L7 policy is attached to: a Gateway (waypoint) or a Service, by namespace and name."""

    kind: str  # GATEWAY_TARGET | SERVICE_TARGET
    namespace: str
    name: str

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"policy target kind {self.kind!r} is not one of {sorted(TARGET_KINDS)}")


@dataclass(frozen=True, slots=True)
class HeaderMatch:
    """A request header (name in lower case) whose value matches ANY of ``values``."""

    name: str
    values: tuple[StringMatch, ...]


@dataclass(frozen=True, slots=True)
class L7Match:
    """One set of L7 conditions: the L4 source and port fields plus the HTTP ones.

    Every non-empty positive field must have an entry that matches, and no ``not_`` field may have one.
    ``source_ips`` hold CIDRs as in :class:`Match`."""

    principals: tuple[StringMatch, ...] = ()
    not_principals: tuple[StringMatch, ...] = ()
    namespaces: tuple[StringMatch, ...] = ()
    not_namespaces: tuple[StringMatch, ...] = ()
    source_ips: tuple[str, ...] = ()
    not_source_ips: tuple[str, ...] = ()
    hosts: tuple[StringMatch, ...] = ()
    not_hosts: tuple[StringMatch, ...] = ()
    methods: tuple[StringMatch, ...] = ()
    not_methods: tuple[StringMatch, ...] = ()
    paths: tuple[StringMatch, ...] = ()
    not_paths: tuple[StringMatch, ...] = ()
    destination_ports: tuple[int, ...] = ()
    not_destination_ports: tuple[int, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    not_headers: tuple[HeaderMatch, ...] = ()


@dataclass(frozen=True, slots=True)
class L7Clause:
    matches: tuple[L7Match, ...]


@dataclass(frozen=True, slots=True)
class L7Rule:
    clauses: tuple[L7Clause, ...]


@dataclass(frozen=True, slots=True)
class L7Authorization:
    """One L7 policy as sent to waypoints: applies to the requests a waypoint handles for ``targets``."""

    name: str
    namespace: str
    action: Action
    targets: tuple[PolicyTarget, ...]
    rules: tuple[L7Rule, ...]
    dry_run: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


# The synthesized policy PeerAuthentication STRICT becomes (Istio: istio_converted_static_strict).
STRICT_POLICY_NAME = "istio_converted_static_strict"
