"""L4 authorization policies as proxies see them (Istio's `istio.security.Authorization`).

Data only; evaluation lives in `ambit.authz`. Structure and meaning, as in Istio:

* a policy matches a connection if ANY of its rules matches; a policy with no rules matches nothing
  (so an ALLOW policy with no rules, which is what `spec: {}` becomes, allows nothing);
* a rule matches if ALL of its clauses match;
* a clause matches if ANY of its matches matches;
* a match matches if every non-empty positive field matches and no `not_*` field matches.

Scope says which workloads a policy applies to: GLOBAL (root namespace, every workload),
NAMESPACE (no selector: every workload in its namespace), WORKLOAD_SELECTOR (only workloads that
list the policy key in `Workload.authorization_policies`).
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


# The synthesized policy PeerAuthentication STRICT becomes (Istio: istio_converted_static_strict).
STRICT_POLICY_NAME = "istio_converted_static_strict"
