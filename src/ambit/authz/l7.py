"""L7 authorization: does an HTTP request through a waypoint pass the policies attached to it?

Pure: stdlib and ``ambit.model`` only, no I/O. The data model is :class:`ambit.model.policy.L7Authorization`
(Istio AuthorizationPolicies with ``targetRefs``, translated by ``ambit.control.translate_policy``); the
waypoint takes the policies that apply from the snapshot (``Snapshot.l7_policies_for``), builds a
:class:`RequestAttributes` (:func:`request_for`) and calls :func:`authorize_request`. A denial is
answered ``403`` with the body :data:`RBAC_DENIED_BODY`, as Envoy's RBAC filter answers.

Decision (:func:`authorize_request`), in Istio's order (Envoy's RBAC filters: DENY, then ALLOW):

1. dry-run policies never affect the decision; those that match are reported in
   ``L7Decision.dry_run_matches`` (Istio's shadow rules: logged, not enforced);
2. any matching DENY policy ⇒ deny;
3. no ALLOW policy at all ⇒ allow;
4. some ALLOW policy matches ⇒ allow;
5. else deny ("no ALLOW policy matched"). An ALLOW policy with no rules (``spec: {}``) therefore
   allows nothing.

Structure as in L4 (:mod:`ambit.authz.l4`): a policy matches if ANY rule matches (none: nothing); a
rule if ALL its clauses match (none: everything); a clause if ANY of its matches matches; a match if
every non-empty positive field has an entry that matches and no ``not_`` field has one. Fields, with
what Istio generates for Envoy (``pilot/pkg/security/authz/model/generator.go`` and
``pilot/pkg/security/authz/matcher/header.go``):

* ``principals`` / ``namespaces``: the peer identity WITHOUT ``spiffe://`` and its namespace. An
  empty value (no verified identity) is absent: it matches no string match, positive or ``not_``
  (so ``not_principals: ["*"]`` matches exactly the requests without an identity), as in L4;
* ``source_ips``: CIDRs against the source address (Envoy's ``direct_remote_ip``), three-valued as
  in L4: an entry or address that does not parse is *unknown*;
* ``hosts``: the request's authority (``:authority``/``Host``) **as received, port included**, compared
  **case-insensitively** (Istio's ``HostMatcher`` sets ``ignore_case`` on exact, prefix and suffix
  matches since the fix for GHSA-7774-7vr3-cc8j; ``*`` is presence). The port is NOT removed: Istio
  matches the header as sent, so ``hosts: ["example.com"]`` does not match ``example.com:8080``
  (Istio's advice is to list ``example.com:*`` too);
* ``methods``: the method, case-sensitive (Istio's ``HeaderMatcher`` on ``:method``);
* ``paths``: the URL path WITHOUT the query string (Envoy's path matcher), as the waypoint normalised
  it before policy and forwarding (:func:`ambit.protocol.paths.normalize_target` at
  :data:`~ambit.protocol.paths.WAYPOINT_NORMALIZATION`, Istio's ``MERGE_SLASHES``): dot segments
  removed, ``%``-escapes of unreserved characters decoded, ``\\`` and ``//`` made ``/``; ``%2F``/``%5C``
  stay encoded, so a DENY on ``/admin`` still misses ``/%2Fadmin`` (prefer ALLOW lists for paths).
  This module does not normalise itself: :func:`url_path` cuts a request target at ``?`` and turns
  an absolute-form target (``http://h/p``) into its path, as Envoy does;
* ``destination_ports``: the port the request was sent to;
* ``headers``: ``request.headers[name]`` — the header named (names compared in lower case), all of
  its values joined with ``,`` (Envoy's header matcher on a repeated header); ``*`` means the header
  is present, even with an empty value (Envoy's ``present_match``); a ``not_headers`` entry never
  excludes a request without that header. Pseudo-headers (``:authority``...) are not synthesised:
  use ``hosts``/``methods``/``paths``.

Fail closed as in L4: an ALLOW policy matches only if it matches for certain; a DENY policy matches
unless it certainly does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ambit.authz.common import IPAddress, Tri, all3, any3, decide, ips_any, not3, parse_ip, resolve
from ambit.authz.l4 import principal_of
from ambit.model.identity import Identity
from ambit.model.policy import HeaderMatch, L7Authorization, L7Match, MatchKind, StringMatch

RBAC_DENIED_BODY = "RBAC: access denied"
RBAC_DENIED_STATUS = 403


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What L7 authorization sees of one request."""

    method: str
    path: str  # the URL path WITHOUT the query string, as normalised by the waypoint
    host: str  # the authority as received (port included when sent)
    destination_port: int
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, value), in order, repeats kept
    source_principal: str = ""  # peer SPIFFE id WITHOUT "spiffe://"; "" = none
    source_namespace: str = ""
    source_ip: str = ""


@dataclass(frozen=True, slots=True)
class L7Decision:
    """The outcome of :func:`authorize_request`."""

    allowed: bool
    reason: str  # for logs: names the deciding policy, or "no ALLOW policy matched"
    policy: str | None  # key ns/name of the deciding policy (None when no policy decided)
    dry_run_matches: tuple[str, ...] = ()  # dry-run policies that matched (they never decide)


def url_path(target: str) -> str:
    """The path of a request target: cut at ``?``; an absolute-form target (``http://h:80/p?q``) gives
    ``/p`` (``/`` when it has no path). Nothing else is changed."""
    path = target.partition("?")[0]
    if not path.startswith("/"):
        scheme, sep, rest = path.partition("://")
        if sep and scheme and "/" not in scheme:
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
    return path


def request_for(
    *,
    method: str,
    target: str,
    host: str,
    destination_port: int,
    headers: Iterable[tuple[str, str]] = (),
    peer: Identity | None = None,
    source_ip: str = "",
) -> RequestAttributes:
    """The request as authorization sees it: ``target`` as received (path cut by :func:`url_path`),
    header names in lower case, ``peer`` the verified client identity (None: none)."""
    return RequestAttributes(
        method=method,
        path=url_path(target),
        host=host,
        destination_port=destination_port,
        headers=tuple((name.lower(), value) for name, value in headers),
        source_principal=principal_of(peer) if peer is not None else "",
        source_namespace=peer.namespace if peer is not None else "",
        source_ip=source_ip,
    )


class _Request:
    """A request prepared once for every policy: parsed address, header map, lower-case host."""

    __slots__ = ("headers", "host", "method", "namespace", "path", "port", "principal", "source")

    def __init__(self, request: RequestAttributes) -> None:
        joined: dict[str, list[str]] = {}
        for name, value in request.headers:
            joined.setdefault(name.lower(), []).append(value)
        self.headers = {name: ",".join(values) for name, values in joined.items()}
        self.host = request.host.lower() or None
        self.method = request.method or None
        self.path = request.path.partition("?")[0] or None
        self.port = request.destination_port
        self.principal = request.source_principal or None
        self.namespace = request.source_namespace or None
        self.source: IPAddress | None = parse_ip(request.source_ip)


def _strings(patterns: tuple[StringMatch, ...], value: str | None) -> bool:
    return any(pattern.matches(value) for pattern in patterns)


def _hosts(patterns: tuple[StringMatch, ...], host: str | None) -> bool:
    return any(StringMatch(p.kind, p.value.lower()).matches(host) for p in patterns)


def _header(match: HeaderMatch, headers: dict[str, str]) -> bool:
    value = headers.get(match.name.lower())
    if value is None:
        return False
    return any(v.kind is MatchKind.PRESENCE or v.matches(value) for v in match.values)


def _headers(matches: tuple[HeaderMatch, ...], headers: dict[str, str]) -> bool:
    return any(_header(m, headers) for m in matches)


def _match_parts(match: L7Match, req: _Request) -> Iterator[Tri]:
    """The result of each non-empty field of ``match``, cheapest first (consumed lazily)."""
    if match.destination_ports:
        yield req.port in match.destination_ports
    if match.not_destination_ports:
        yield req.port not in match.not_destination_ports
    if match.methods:
        yield _strings(match.methods, req.method)
    if match.not_methods:
        yield not _strings(match.not_methods, req.method)
    if match.paths:
        yield _strings(match.paths, req.path)
    if match.not_paths:
        yield not _strings(match.not_paths, req.path)
    if match.hosts:
        yield _hosts(match.hosts, req.host)
    if match.not_hosts:
        yield not _hosts(match.not_hosts, req.host)
    if match.namespaces:
        yield _strings(match.namespaces, req.namespace)
    if match.not_namespaces:
        yield not _strings(match.not_namespaces, req.namespace)
    if match.principals:
        yield _strings(match.principals, req.principal)
    if match.not_principals:
        yield not _strings(match.not_principals, req.principal)
    if match.headers:
        yield _headers(match.headers, req.headers)
    if match.not_headers:
        yield not _headers(match.not_headers, req.headers)
    if match.source_ips:
        yield ips_any(match.source_ips, req.source)
    if match.not_source_ips:
        yield not3(ips_any(match.not_source_ips, req.source))


def _evaluate(policy: L7Authorization, req: _Request) -> Tri:
    return any3(
        all3(any3(all3(_match_parts(m, req)) for m in clause.matches) for clause in rule.clauses)
        for rule in policy.rules
    )


def _resolve(policy: L7Authorization, result: Tri) -> bool:
    return resolve(policy.action, result)


def request_matches(policy: L7Authorization, request: RequestAttributes) -> bool:
    """Whether ``policy`` matches ``request`` (unknowns resolved fail-closed by the policy's action).

    ``dry_run`` is not looked at here: a dry-run policy matches as if it were enforced."""
    return _resolve(policy, _evaluate(policy, _Request(request)))


def authorize_request(policies: Iterable[L7Authorization], request: RequestAttributes) -> L7Decision:
    """The L7 decision for ``request`` under ``policies`` (those attached to the waypoint and to the
    service addressed). The deciding policy is the first matching one in the order given (the
    snapshot gives them sorted by key); a policy given twice (it targets both the waypoint and the
    service) counts once. Never raises for any request."""
    req = _Request(request)
    return L7Decision(*decide(policies, lambda policy: _evaluate(policy, req), once_per_key=True))
