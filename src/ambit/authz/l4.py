"""L4 authorization: does a connection pass a workload's policies? (ztunnel's ``state.rs`` / ``rbac.rs``).

Pure: stdlib and ``ambit.model`` only, no I/O. The policy data model and its structure are in
:mod:`ambit.model.policy`; this module evaluates it.

Decision (:func:`authorize`), in ztunnel's order:

1. dry-run policies never affect the decision; those that match are reported in
   ``Decision.dry_run_matches`` (for logging);
2. any matching DENY policy ⇒ deny;
3. no ALLOW policy at all ⇒ allow (the default with no policy);
4. some ALLOW policy matches ⇒ allow;
5. else deny ("no ALLOW policy matched").

Matching (:func:`matches`): a policy matches if ANY rule matches (no rules: matches nothing); a rule
if ALL its clauses match (no clauses: matches everything); a clause if ANY of its matches matches (no
matches: matches nothing); a match if every non-empty positive field has an entry that matches and no
``not_*`` field has one that matches (all fields empty: matches everything). Fields are checked
against the connection:

* ``principals`` / ``namespaces``: the verified peer identity, principal WITHOUT ``spiffe://``
  (``cluster.local/ns/default/sa/curl``), as translation stores them. An absent value (plaintext,
  no verified identity) matches no string match, positive or ``not_``. So a positive field never
  admits plaintext, and a ``not_`` field never excludes it: STRICT mode's synthesized
  ``DENY not_principals=["*"]`` therefore matches exactly the connections without a principal;
* ``source_ips`` / ``destination_ips``: CIDRs; a bare address is a /32 or /128, host bits are
  ignored (``10.0.0.1/8`` is ``10.0.0.0/8``), an IPv4-mapped IPv6 address or network
  (``::ffff:10.0.0.1``, ``::ffff:10.0.0.0/104``) is the IPv4 one; an IPv4 address is never inside
  an IPv6 network or the reverse;
* ``destination_ports``: the connection's destination port.

Fail closed on what cannot be understood: an entry that is not a CIDR (or a connection address that
is not an IP) makes that comparison *unknown*, and unknowns propagate (three-valued logic: an OR
with a true part is true, an AND with a false part is false, otherwise unknown). An ALLOW policy
matches only if it matches *for certain*; a DENY policy matches unless it *certainly* does not. So
a broken CIDR can only ever deny: whatever the entry was meant to be, a connection that
:func:`authorize` allows would be allowed under every reading of it. (Translation already drops
unparsable CIDRs; this is the guard for anything that reaches a proxy another way.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ambit.authz.common import IPAddress, Tri, all3, any3, decide, ips_any, not3, parse_ip, resolve
from ambit.model.identity import Identity
from ambit.model.policy import Authorization, Match, StringMatch


@dataclass(frozen=True, slots=True)
class Connection:
    """What L4 authorization sees of one connection."""

    source_principal: str | None  # peer identity WITHOUT "spiffe://"; None = plaintext / unverified
    source_namespace: str | None
    source_ip: str
    destination_ip: str
    destination_port: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`authorize`."""

    allowed: bool
    reason: str  # human-readable, names the deciding policy or "no ALLOW policy matched"
    policy: str | None  # key ns/name of the deciding policy (None when default)
    dry_run_matches: tuple[str, ...] = ()  # dry-run policies that matched (they never decide)


def principal_of(peer: Identity) -> str:
    """The principal string of a workload identity: its SPIFFE ID without ``spiffe://``."""
    return f"{peer.trust_domain}/ns/{peer.namespace}/sa/{peer.service_account}"


def connection_for(
    peer: Identity | None, source_ip: str, destination_ip: str, destination_port: int
) -> Connection:
    """The connection as authorization sees it; ``peer`` is the verified client identity (None: plaintext)."""
    if peer is None:
        return Connection(None, None, source_ip, destination_ip, destination_port)
    return Connection(principal_of(peer), peer.namespace, source_ip, destination_ip, destination_port)


# --- matching -------------------------------------------------------------------------------------


def _strings(patterns: tuple[StringMatch, ...], value: str | None) -> Tri:
    return any(pattern.matches(value) for pattern in patterns)


def _match_parts(
    match: Match, conn: Connection, src: IPAddress | None, dst: IPAddress | None
) -> Iterator[Tri]:
    """The result of each non-empty field of ``match``, cheapest first (consumed lazily)."""
    if match.destination_ports:
        yield conn.destination_port in match.destination_ports
    if match.not_destination_ports:
        yield conn.destination_port not in match.not_destination_ports
    if match.namespaces:
        yield _strings(match.namespaces, conn.source_namespace)
    if match.not_namespaces:
        yield not _strings(match.not_namespaces, conn.source_namespace)
    if match.principals:
        yield _strings(match.principals, conn.source_principal)
    if match.not_principals:
        yield not _strings(match.not_principals, conn.source_principal)
    if match.source_ips:
        yield ips_any(match.source_ips, src)
    if match.not_source_ips:
        yield not3(ips_any(match.not_source_ips, src))
    if match.destination_ips:
        yield ips_any(match.destination_ips, dst)
    if match.not_destination_ips:
        yield not3(ips_any(match.not_destination_ips, dst))


def _evaluate(policy: Authorization, conn: Connection) -> Tri:
    """Whether ``policy`` matches ``conn``: True, False, or None when it depends on an unparsable value."""
    src = parse_ip(conn.source_ip)
    dst = parse_ip(conn.destination_ip)
    return any3(
        all3(any3(all3(_match_parts(m, conn, src, dst)) for m in clause.matches) for clause in rule.clauses)
        for rule in policy.rules
    )


def _resolve(policy: Authorization, result: Tri) -> bool:
    return resolve(policy.action, result)


def matches(policy: Authorization, conn: Connection) -> bool:
    """Whether ``policy`` matches ``conn`` (unknowns resolved fail-closed by the policy's action).

    ``dry_run`` is not looked at here: a dry-run policy matches as if it were enforced.
    """
    return _resolve(policy, _evaluate(policy, conn))


def authorize(conn: Connection, policies: Iterable[Authorization]) -> Decision:
    """The L4 decision for ``conn`` under ``policies`` (those that apply to the destination workload).

    The deciding policy is the first matching one in the order given (a snapshot gives them sorted
    by key). Never raises for any connection.
    """
    return Decision(*decide(policies, lambda policy: _evaluate(policy, conn)))
