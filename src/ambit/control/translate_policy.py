"""AuthorizationPolicy and PeerAuthentication → ztunnel's L4 ``Authorization`` (Istio's IS-AUTHZ).

Follows Istio's ``pilot/pkg/serviceregistry/ambient/authorization.go`` and ``policies.go``; the
data model is ``ambit.model.policy`` (Istio's ``Group`` is our ``Rule``, Istio's ``Rules`` our
``Clause``). Exactly what happens:

AuthorizationPolicy
  * with ``targetRef`` / ``targetRefs``: not for ztunnel (a waypoint enforces it): skipped here, no
    warning; ``ambit.control.translate_policy_l7`` makes it an ``L7Authorization`` (and warns there);
  * action ``ALLOW`` (the default) or ``DENY``; ``AUDIT`` and ``CUSTOM``: skipped with a warning;
  * scope: no selector (or an empty ``matchLabels``, which Istio's API documents as "all workloads
    of the namespace") → ``NAMESPACE``, or ``GLOBAL`` in the root namespace; with a selector →
    ``WORKLOAD_SELECTOR``, listed on every matching workload of the policy's namespace, or of
    *every* namespace when the policy is in the root namespace;
  * annotation ``istio.io/dry-run`` → ``dry_run`` (ztunnel logs, never enforces); an unparsable
    value counts as false, with a warning;
  * each rule becomes a ``Rule`` whose clauses are ANDed:
      - all ``to`` entries → ONE clause, one ``Match`` per entry (entries are ORed):
        ``ports`` / ``notPorts`` → ``destination_ports`` / ``not_destination_ports``;
      - all ``from`` entries → ONE clause, one ``Match`` per entry: ``principals``,
        ``notPrincipals``, ``namespaces``, ``notNamespaces`` → string matches (``*`` presence,
        ``x*`` prefix, ``*x`` suffix, else exact); ``ipBlocks`` / ``notIpBlocks`` → CIDRs (a
        single IP becomes /32 or /128); ``serviceAccounts`` / ``notServiceAccounts`` (``sa`` or
        ``ns/sa``, ``ns`` defaulting to the policy's) → exact principals
        ``<trust-domain>/ns/<ns>/sa/<sa>``;
      - each ``when`` condition with an L4 key → its own clause with one ``Match``:
        ``source.ip`` → source_ips, ``source.namespace`` → namespaces, ``source.principal`` →
        principals, ``destination.ip`` → destination_ips, ``destination.port`` →
        destination_ports; ``notValues`` → the ``not_`` field;
  * L7-only attributes (``hosts``, ``notHosts``, ``methods``, ``notMethods``, ``paths``,
    ``notPaths``, ``requestPrincipals``, ``notRequestPrincipals``, ``remoteIpBlocks``,
    ``notRemoteIpBlocks``, ``trustDomains``, ``notTrustDomains``, any other ``when`` key):
      - in an ALLOW policy the whole rule is dropped (more restrictive: it can allow nothing);
      - in a DENY policy those attributes are removed and the rest of the rule is kept (a broader
        deny). A ``Match`` left empty matches every connection, so a clause containing one is
        dropped, and a rule left with no clause matches EVERY connection: the DENY then denies
        all traffic to the workloads it applies to. (Istio's newest istiod ships the empty match
        and ztunnel skips it, making such a DENY a no-op; ambit fails closed instead.)
    Either way a warning names the policy and the attributes;
  * ``spec: {}`` (or no rules) → ``rules=()``: an ALLOW matches nothing, so it allows nothing;
    ``rules: [{}]`` → one rule with no clauses, which matches everything;
  * principals are kept as written, WITHOUT a ``spiffe://`` scheme, as Istio does
    (``cluster.local/ns/default/sa/sleep``); the proxy compares them with the peer's SPIFFE ID with
    its ``spiffe://`` prefix removed. A value that starts with ``spiffe://`` can never match; it is
    kept (as Istio does) and a warning says so.

PeerAuthentication: see ``ambit.control.translate_peer_authn``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ambit.control.translate_common import DRY_RUN_ANNOTATION
from ambit.control.translate_peer_authn import (
    asks_for_disable,
    convert_port_level_peer_authentication,
    peer_authentication_keys,
    static_strict_policy,
)
from ambit.model.policy import (
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)
from ambit.resources.objects import (
    JSON,
    annotations_of,
    items,
    labels_subset,
    mapping,
    name_of,
    namespace_of,
    string_map,
    strings,
    text,
)

L4_WHEN_KEYS = frozenset(
    {"source.ip", "source.namespace", "source.principal", "destination.ip", "destination.port"}
)
_L7_OPERATION_FIELDS = ("hosts", "notHosts", "methods", "notMethods", "paths", "notPaths")
_L7_SOURCE_FIELDS = (
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "requestPrincipals",
    "notRequestPrincipals",
    "trustDomains",
    "notTrustDomains",
)
_PRESENCE = StringMatch(MatchKind.PRESENCE)
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass
class PolicySet:
    """The converted policies and what workloads need to list them."""

    policies: dict[str, Authorization] = field(default_factory=dict)
    # WORKLOAD_SELECTOR AuthorizationPolicies by namespace: (key, matchLabels); root namespace = all
    selectors: dict[str, list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    peer_authentications: list[JSON] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --- value conversions ------------------------------------------------------------------------------


def string_matches(values: Iterable[str]) -> tuple[StringMatch, ...]:
    return tuple(StringMatch.parse(v) for v in values)


def cidrs(values: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        try:
            out.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            continue  # rejected by validation; Istio skips unparsable values too
    return tuple(out)


def ports(values: Iterable[str]) -> tuple[int, ...]:
    out: list[int] = []
    for value in values:
        if value.isdigit() and 0 < int(value) <= 65535:
            out.append(int(value))
    return tuple(out)


def service_accounts(values: Iterable[str], namespace: str, trust_domain: str) -> tuple[StringMatch, ...]:
    out: list[StringMatch] = []
    for value in values:
        ns, slash, sa = value.partition("/")
        if not slash:
            ns, sa = namespace, value
        out.append(StringMatch(MatchKind.EXACT, f"{trust_domain}/ns/{ns}/sa/{sa}"))
    return tuple(out)


def source_fields(src: JSON, namespace: str, trust_domain: str) -> dict[str, Any]:
    """A rule's ``from.source`` as the fields L4 ``Match`` and ``L7Match`` share: namespaces,
    principals (``serviceAccounts`` included) and IP blocks, each with its ``not`` twin."""
    return {
        "namespaces": string_matches(strings(src, "namespaces")),
        "not_namespaces": string_matches(strings(src, "notNamespaces")),
        "principals": string_matches(strings(src, "principals"))
        + service_accounts(strings(src, "serviceAccounts"), namespace, trust_domain),
        "not_principals": string_matches(strings(src, "notPrincipals"))
        + service_accounts(strings(src, "notServiceAccounts"), namespace, trust_domain),
        "source_ips": cidrs(strings(src, "ipBlocks")),
        "not_source_ips": cidrs(strings(src, "notIpBlocks")),
    }


def _is_empty(match: Match) -> bool:
    return match == Match()


# --- AuthorizationPolicy -------------------------------------------------------------------------


def _convert_rule(rule: JSON, namespace: str, trust_domain: str) -> tuple[list[Clause], list[str]]:
    """The clauses of one policy rule (clauses that would match everything left out) and its L7 fields."""
    clauses: list[Clause] = []
    l7: list[str] = []

    to_matches: list[Match] = []
    for entry in items(rule, "to"):
        op = mapping(entry, "operation")
        l7 += [f for f in _L7_OPERATION_FIELDS if op.get(f)]
        to_matches.append(
            Match(
                destination_ports=ports(strings(op, "ports")),
                not_destination_ports=ports(strings(op, "notPorts")),
            )
        )
    if to_matches:
        clauses.append(Clause(tuple(to_matches)))

    from_matches: list[Match] = []
    for entry in items(rule, "from"):
        src = mapping(entry, "source")
        l7 += [f for f in _L7_SOURCE_FIELDS if src.get(f)]
        from_matches.append(Match(**source_fields(src, namespace, trust_domain)))
    if from_matches:
        clauses.append(Clause(tuple(from_matches)))

    for cond in items(rule, "when"):
        key = text(cond, "key")
        if key not in L4_WHEN_KEYS:
            l7.append(key)
            continue
        values, not_values = strings(cond, "values"), strings(cond, "notValues")
        if key == "source.ip":
            match = Match(source_ips=cidrs(values), not_source_ips=cidrs(not_values))
        elif key == "source.namespace":
            match = Match(namespaces=string_matches(values), not_namespaces=string_matches(not_values))
        elif key == "source.principal":
            match = Match(principals=string_matches(values), not_principals=string_matches(not_values))
        elif key == "destination.ip":
            match = Match(destination_ips=cidrs(values), not_destination_ips=cidrs(not_values))
        else:
            match = Match(destination_ports=ports(values), not_destination_ports=ports(not_values))
        clauses.append(Clause((match,)))

    # A clause with an empty match matches every connection: it constrains nothing.
    return [c for c in clauses if not any(_is_empty(m) for m in c.matches)], l7


def _parse_bool(value: str) -> bool | None:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def dry_run_of(obj: JSON, what: str, warnings: list[str]) -> bool:
    """The policy's ``istio.io/dry-run`` annotation; a value that is not a boolean is false, warned."""
    raw = annotations_of(obj).get(DRY_RUN_ANNOTATION)
    if raw is None:
        return False
    parsed = _parse_bool(raw)
    if parsed is None:
        warnings.append(f"{what}: annotation {DRY_RUN_ANNOTATION}={raw!r} is not a boolean; treated as false")
    return bool(parsed)


def warn_spiffe_principals(rule: JSON, what: str, warnings: list[str]) -> None:
    """Warn about principals written with ``spiffe://`` (kept as written; they never match)."""
    for entry in items(rule, "from"):
        src = mapping(entry, "source")
        for value in strings(src, "principals") + strings(src, "notPrincipals"):
            if value.startswith("spiffe://"):
                warnings.append(
                    f"{what}: principal {value!r} includes 'spiffe://'; principals are written without "
                    "it (like 'cluster.local/ns/default/sa/sleep') and this value never matches"
                )


def has_target_refs(spec: JSON) -> bool:
    """Whether an AuthorizationPolicy spec names ``targetRef`` or ``targetRefs`` (a waypoint's policy)."""
    return spec.get("targetRef") is not None or bool(spec.get("targetRefs"))


def convert_authorization_policy(
    obj: JSON, *, root_namespace: str, trust_domain: str, out: PolicySet
) -> Authorization | None:
    ns, name = namespace_of(obj), name_of(obj)
    what = f"AuthorizationPolicy {ns}/{name}"
    spec = mapping(obj, "spec")
    if has_target_refs(spec):
        return None  # enforced by a waypoint, not by ztunnel (ambit.control.translate_policy_l7)
    action_text = text(spec, "action", "ALLOW") or "ALLOW"
    if action_text not in ("ALLOW", "DENY"):
        out.warnings.append(
            f"{what}: ztunnel does not support the {action_text} action; the policy is ignored"
        )
        return None
    action = Action(action_text)

    dry_run = dry_run_of(obj, what, out.warnings)

    selector = string_map(mapping(spec, "selector").get("matchLabels"))
    if selector:
        scope = Scope.WORKLOAD_SELECTOR
    elif ns == root_namespace:
        scope = Scope.GLOBAL
    else:
        scope = Scope.NAMESPACE

    rules: list[Rule] = []
    found_l7: set[str] = set()
    emptied: list[str] = []
    for position, rule in enumerate(items(spec, "rules")):
        warn_spiffe_principals(rule, what, out.warnings)
        clauses, l7 = _convert_rule(rule, ns, trust_domain)
        found_l7.update(l7)
        if l7 and action is Action.ALLOW:
            continue  # an HTTP condition can never be met at L4: the rule can never allow
        if l7 and not clauses:
            emptied.append(str(position))
        rules.append(Rule(tuple(clauses)))
    if found_l7:
        shown = ", ".join(sorted(found_l7))
        if action is Action.ALLOW:
            effect = "Within an ALLOW policy, rules matching HTTP attributes are omitted: more restrictive."
        else:
            effect = "The DENY policy is enforced without the HTTP attributes: broader."
            if emptied:
                effect += (
                    f" Rule(s) {', '.join(emptied)} keep no L4 condition and now deny every connection "
                    "to the workloads the policy applies to."
                )
        out.warnings.append(
            f"{what}: ztunnel does not support HTTP attributes (found: {shown}); "
            f"in ambient mode a waypoint (targetRefs) enforces HTTP rules. {effect}"
        )

    policy = Authorization(
        name=name, namespace=ns, scope=scope, action=action, rules=tuple(rules), dry_run=dry_run
    )
    if scope is Scope.WORKLOAD_SELECTOR:
        out.selectors.setdefault(ns, []).append((policy.key, selector))
    return policy


def convert_policies(
    authorization_policies: Iterable[JSON],
    peer_authentications: Iterable[JSON],
    *,
    root_namespace: str,
    trust_domain: str,
) -> PolicySet:
    out = PolicySet()
    for obj in authorization_policies:
        policy = convert_authorization_policy(
            obj, root_namespace=root_namespace, trust_domain=trust_domain, out=out
        )
        if policy is not None:
            out.policies[policy.key] = policy
    pas = list(peer_authentications)
    out.peer_authentications = pas
    if pas:
        static = static_strict_policy(root_namespace)
        out.policies[static.key] = static
    for pa in pas:
        if asks_for_disable(pa):
            out.warnings.append(
                f"PeerAuthentication {namespace_of(pa)}/{name_of(pa)}: mode DISABLE is ignored in ambient "
                "mode (mTLS between ambient workloads cannot be turned off); treated as PERMISSIVE"
            )
        converted = convert_port_level_peer_authentication(pa, pas, root_namespace)
        if converted is not None:
            out.policies[converted.key] = converted
    return out


def workload_policy_keys(
    policies: PolicySet, namespace: str, pod_labels: dict[str, str], root_namespace: str
) -> tuple[str, ...]:
    """Every policy key a workload lists: matching selector policies and its PeerAuthentication keys."""
    candidates = policies.selectors.get(namespace, [])
    if namespace != root_namespace:
        candidates = candidates + policies.selectors.get(root_namespace, [])
    keys = {key for key, selector in candidates if labels_subset(selector, pod_labels)}
    keys.update(
        peer_authentication_keys(policies.peer_authentications, namespace, pod_labels, root_namespace)
    )
    return tuple(sorted(k for k in keys if k in policies.policies))
