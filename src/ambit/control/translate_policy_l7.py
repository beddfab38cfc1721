"""AuthorizationPolicy with ``targetRefs`` → the waypoint's ``L7Authorization`` (Istio's waypoint policy).

The L4 translation (``ambit.control.translate_policy``) skips every policy with ``targetRef`` /
``targetRefs``; this module makes them what waypoints enforce. The data model is
``ambit.model.policy`` (``L7Rule`` = ALL of ``L7Clause``s, ``L7Clause`` = ANY of ``L7Match``es) and the
evaluator ``ambit.authz.l7``. Exactly what happens:

* targets: ``targetRefs``, plus the deprecated singular ``targetRef`` (both are used if both are set,
  which validation refuses). Supported: kind ``Gateway`` of group ``gateway.networking.k8s.io`` (a
  waypoint) and kind ``Service`` of the core group (``""`` or ``core``). A reference's namespace
  defaults to the policy's; Istio allows no other, so a cross-namespace reference is ignored with a
  warning, as is any other kind (``ServiceEntry``, ``GatewayClass``, ...). A policy left with no
  target is ignored, with a warning. Targets are sorted and each kept once;
* ``spec.selector`` (a non-empty ``matchLabels``) together with target references: Istio rejects the
  policy; it is ignored, with a warning (and ztunnel does not get it either);
* action ``ALLOW`` (the default) or ``DENY``; ``AUDIT`` and ``CUSTOM``: ignored, with a warning;
* annotation ``istio.io/dry-run`` → ``dry_run``, read as the L4 path reads it;
* each rule becomes an ``L7Rule`` whose clauses are ANDed, as in L4:
    - all ``to`` entries → ONE clause, one ``L7Match`` per entry: ``hosts``, ``methods``, ``paths``
      (string matches: ``*`` presence, ``x*`` prefix, ``*x`` suffix, else exact), ``ports``, each
      with its ``not`` twin;
    - all ``from`` entries → ONE clause, one ``L7Match`` per entry: ``principals`` and
      ``serviceAccounts`` (as exact principals ``<trust-domain>/ns/<ns>/sa/<sa>``), ``namespaces``,
      ``ipBlocks``, each with its ``not`` twin; principals WITHOUT ``spiffe://``, exactly as L4;
    - each ``when`` condition → its own clause with one ``L7Match``: ``source.ip``,
      ``source.namespace``, ``source.principal``, ``destination.port``, ``request.headers[<name>]``
      (name in lower case); ``notValues`` → the ``not_`` field;
* what a waypoint cannot evaluate: ``requestPrincipals``, ``remoteIpBlocks``, ``trustDomains`` (and
  their ``not`` twins), a path template (``{*}`` / ``{**}`` in ``paths`` / ``notPaths``), any other
  ``when`` key (``request.auth.*``, ``remote.ip``, ``destination.ip``, ``connection.sni``, ...). As
  for L4: in an ALLOW policy the whole rule is dropped (it can allow nothing: more restrictive); in a
  DENY policy the attribute is removed and the rest of the rule is kept (broader). A match left empty
  matches every request, so its clause is dropped, and a rule left with no clause denies every
  request to the policy's targets. Either way a warning names the policy and the attributes;
* ``spec: {}`` (or no rules) → ``rules=()``: an ALLOW matches nothing, so it allows nothing.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from ambit.control.translate_policy import (
    cidrs,
    dry_run_of,
    has_target_refs,
    ports,
    source_fields,
    string_matches,
    warn_spiffe_principals,
)
from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    PolicyTarget,
)
from ambit.resources.objects import JSON, items, mapping, name_of, namespace_of, string_map, strings, text

GATEWAY_GROUP = "gateway.networking.k8s.io"
CORE_GROUPS = frozenset({"", "core"})
HEADER_KEY_PREFIX = "request.headers["
_UNSUPPORTED_SOURCE_FIELDS = (
    "requestPrincipals",
    "notRequestPrincipals",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
    "trustDomains",
    "notTrustDomains",
)
_PATH_TEMPLATE = ("{*}", "{**}")


def header_name(key: str) -> str | None:
    """The header a ``request.headers[<name>]`` key names (lower case), or None for any other key."""
    if not key.startswith(HEADER_KEY_PREFIX) or not key.endswith("]"):
        return None
    name = key[len(HEADER_KEY_PREFIX) : -1]
    if not name or "[" in name or "]" in name:
        return None
    return name.lower()


# --- targets ------------------------------------------------------------------------------------


def _targets(spec: JSON, namespace: str, what: str, warnings: list[str]) -> tuple[PolicyTarget, ...]:
    refs = list(items(spec, "targetRefs"))
    single = spec.get("targetRef")
    if isinstance(single, dict):
        refs.append(single)
    found: set[PolicyTarget] = set()
    for ref in refs:
        kind, group, name = text(ref, "kind"), text(ref, "group"), text(ref, "name")
        ref_ns = text(ref, "namespace") or namespace
        shown = f"{kind} {ref_ns}/{name}"
        if ref_ns != namespace:
            warnings.append(
                f"{what}: targetRef {shown} is in another namespace; a policy can only target objects "
                "of its own namespace; that target is ignored"
            )
            continue
        if kind == "Gateway" and group == GATEWAY_GROUP:
            found.add(PolicyTarget(GATEWAY_TARGET, namespace, name))
        elif kind == "Service" and group in CORE_GROUPS:
            found.add(PolicyTarget(SERVICE_TARGET, namespace, name))
        else:
            warnings.append(
                f"{what}: targetRef {group or 'core'}/{shown} is not supported (a waypoint enforces "
                f"policies on a {GATEWAY_GROUP} Gateway or a core Service); that target is ignored"
            )
    return tuple(sorted(found, key=lambda t: (t.kind, t.namespace, t.name)))


# --- rules --------------------------------------------------------------------------------------


def _paths(op: JSON, field: str, unsupported: list[str]) -> tuple[str, ...]:
    values = strings(op, field)
    if any(marker in value for value in values for marker in _PATH_TEMPLATE):
        unsupported.append(f"{field} (path template)")
        return ()
    return tuple(values)


def _convert_rule(rule: JSON, namespace: str, trust_domain: str) -> tuple[list[L7Clause], list[str]]:
    """The clauses of one rule (clauses that would match everything left out) and what it holds that
    a waypoint cannot evaluate (those attributes are already left out of the clauses)."""
    clauses: list[L7Clause] = []
    unsupported: list[str] = []

    to_matches: list[L7Match] = []
    for entry in items(rule, "to"):
        op = mapping(entry, "operation")
        to_matches.append(
            L7Match(
                hosts=string_matches(strings(op, "hosts")),
                not_hosts=string_matches(strings(op, "notHosts")),
                methods=string_matches(strings(op, "methods")),
                not_methods=string_matches(strings(op, "notMethods")),
                paths=string_matches(_paths(op, "paths", unsupported)),
                not_paths=string_matches(_paths(op, "notPaths", unsupported)),
                destination_ports=ports(strings(op, "ports")),
                not_destination_ports=ports(strings(op, "notPorts")),
            )
        )
    if to_matches:
        clauses.append(L7Clause(tuple(to_matches)))

    from_matches: list[L7Match] = []
    for entry in items(rule, "from"):
        src = mapping(entry, "source")
        unsupported += [f for f in _UNSUPPORTED_SOURCE_FIELDS if src.get(f)]
        from_matches.append(L7Match(**source_fields(src, namespace, trust_domain)))
    if from_matches:
        clauses.append(L7Clause(tuple(from_matches)))

    for cond in items(rule, "when"):
        key = text(cond, "key")
        values, not_values = strings(cond, "values"), strings(cond, "notValues")
        header = header_name(key)
        if header is not None:
            match = L7Match(
                headers=(HeaderMatch(header, string_matches(values)),) if values else (),
                not_headers=(HeaderMatch(header, string_matches(not_values)),) if not_values else (),
            )
        elif key == "source.ip":
            match = L7Match(source_ips=cidrs(values), not_source_ips=cidrs(not_values))
        elif key == "source.namespace":
            match = L7Match(namespaces=string_matches(values), not_namespaces=string_matches(not_values))
        elif key == "source.principal":
            match = L7Match(principals=string_matches(values), not_principals=string_matches(not_values))
        elif key == "destination.port":
            match = L7Match(destination_ports=ports(values), not_destination_ports=ports(not_values))
        else:
            unsupported.append(key)
            continue
        clauses.append(L7Clause((match,)))

    # A clause with an empty match matches every request: it constrains nothing.
    empty = L7Match()
    return [c for c in clauses if empty not in c.matches], unsupported


# --- policies -----------------------------------------------------------------------------------


def convert_l7_authorization_policy(
    obj: JSON, *, trust_domain: str, warnings: list[str]
) -> L7Authorization | None:
    """The waypoint policy of one AuthorizationPolicy, or None (no target references, or ignored)."""
    spec = mapping(obj, "spec")
    if not has_target_refs(spec):
        return None
    ns, name = namespace_of(obj), name_of(obj)
    what = f"AuthorizationPolicy {ns}/{name}"
    if string_map(mapping(spec, "selector").get("matchLabels")):
        warnings.append(
            f"{what}: selector and targetRef(s) cannot both be set (Istio rejects such a policy); "
            "the policy is ignored"
        )
        return None
    action_text = text(spec, "action", "ALLOW") or "ALLOW"
    if action_text not in ("ALLOW", "DENY"):
        warnings.append(f"{what}: waypoints do not support the {action_text} action; the policy is ignored")
        return None
    action = Action(action_text)
    targets = _targets(spec, ns, what, warnings)
    if not targets:
        warnings.append(f"{what}: no target a waypoint supports; the policy is ignored")
        return None
    dry_run = dry_run_of(obj, what, warnings)

    rules: list[L7Rule] = []
    found: set[str] = set()
    emptied: list[str] = []
    for position, rule in enumerate(items(spec, "rules")):
        warn_spiffe_principals(rule, what, warnings)
        clauses, unsupported = _convert_rule(rule, ns, trust_domain)
        found.update(unsupported)
        if unsupported and action is Action.ALLOW:
            continue  # a condition the waypoint cannot check can never be met: the rule allows nothing
        if unsupported and not clauses:
            emptied.append(str(position))
        rules.append(L7Rule(tuple(clauses)))
    if found:
        shown = ", ".join(sorted(found))
        if action is Action.ALLOW:
            effect = "Within an ALLOW policy, rules using them are omitted: more restrictive."
        else:
            effect = "The DENY policy is enforced without them: broader."
            if emptied:
                effect += (
                    f" Rule(s) {', '.join(emptied)} keep no other condition and now deny every request "
                    "to the policy's targets."
                )
        warnings.append(f"{what}: waypoints cannot evaluate {shown}. {effect}")
    return L7Authorization(
        name=name, namespace=ns, action=action, targets=targets, rules=tuple(rules), dry_run=dry_run
    )


def convert_l7_policies(
    authorization_policies: Iterable[JSON], *, trust_domain: str, warnings: list[str]
) -> dict[str, L7Authorization]:
    """Every waypoint policy by key ``<namespace>/<name>``; problems are appended to ``warnings``."""
    out: dict[str, L7Authorization] = {}
    for obj in authorization_policies:
        policy = convert_l7_authorization_policy(obj, trust_domain=trust_domain, warnings=warnings)
        if policy is not None:
            out[policy.key] = policy
    return out
