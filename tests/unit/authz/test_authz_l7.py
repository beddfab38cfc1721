"""L7 authorization (waypoints): every field and its not_ twin, ANY/ALL structure, Istio's decision order."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.authz import (
    RBAC_DENIED_BODY,
    L7Decision,
    RequestAttributes,
    authorize_request,
    request_for,
    request_matches,
    url_path,
)
from ambit.model.identity import Identity
from ambit.model.policy import (
    GATEWAY_TARGET,
    Action,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    PolicyTarget,
    StringMatch,
)

ALLOW, DENY = Action.ALLOW, Action.DENY
CURL = "cluster.local/ns/default/sa/curl"
WAYPOINT = PolicyTarget(GATEWAY_TARGET, "default", "waypoint")


def s(*texts: str) -> tuple[StringMatch, ...]:
    return tuple(StringMatch.parse(t) for t in texts)


def req(**overrides: Any) -> RequestAttributes:
    base = RequestAttributes(
        method="GET",
        path="/api/items",
        host="web.default.svc.cluster.local",
        destination_port=8080,
        headers=(("x-user", "alice"), ("accept", "text/html"), ("accept", "application/json")),
        source_principal=CURL,
        source_namespace="default",
        source_ip="10.244.1.5",
    )
    return dataclasses.replace(base, **overrides)


def pol(action: Action, *rules: L7Rule, name: str = "p", dry_run: bool = False) -> L7Authorization:
    return L7Authorization(name, "default", action, (WAYPOINT,), rules, dry_run=dry_run)


def one(**fields: Any) -> L7Rule:
    """A rule of one clause holding one match."""
    return L7Rule((L7Clause((L7Match(**fields),)),))


def header(name: str, *values: str) -> tuple[HeaderMatch, ...]:
    return (HeaderMatch(name, s(*values)),)


# (match fields, request overrides, matches?) — each field positive and its not_ twin.
FIELD_CASES = [
    # principals / namespaces (source identity, without spiffe://)
    pytest.param({"principals": s(CURL)}, {}, True, id="principals exact"),
    pytest.param({"principals": s("*/sa/curl")}, {}, True, id="principals suffix"),
    pytest.param({"principals": s("cluster.local/ns/other/*")}, {}, False, id="principals prefix miss"),
    pytest.param({"principals": s("*")}, {"source_principal": ""}, False, id="principals * needs identity"),
    pytest.param({"not_principals": s(CURL)}, {}, False, id="notPrincipals excludes"),
    pytest.param(
        {"not_principals": s("*")}, {"source_principal": ""}, True, id="notPrincipals * = no identity"
    ),
    pytest.param({"not_principals": s(CURL)}, {"source_principal": ""}, True, id="notPrincipals no identity"),
    pytest.param({"namespaces": s("default")}, {}, True, id="namespaces"),
    pytest.param({"namespaces": s("prod-*")}, {}, False, id="namespaces miss"),
    pytest.param({"namespaces": s("default")}, {"source_namespace": ""}, False, id="namespaces absent"),
    pytest.param({"not_namespaces": s("default")}, {}, False, id="notNamespaces excludes"),
    pytest.param({"not_namespaces": s("other")}, {}, True, id="notNamespaces other"),
    # source IPs (CIDRs)
    pytest.param({"source_ips": ("10.244.0.0/16",)}, {}, True, id="sourceIps"),
    pytest.param({"source_ips": ("10.0.0.0/16",)}, {}, False, id="sourceIps miss"),
    pytest.param(
        {"source_ips": ("10.244.1.5/32",)}, {"source_ip": "::ffff:10.244.1.5"}, True, id="mapped v4"
    ),
    pytest.param({"not_source_ips": ("10.244.0.0/16",)}, {}, False, id="notSourceIps excludes"),
    pytest.param({"not_source_ips": ("fd00::/8",)}, {}, True, id="notSourceIps other family"),
    # hosts: case-insensitive, port as received
    pytest.param({"hosts": s("web.default.svc.cluster.local")}, {}, True, id="hosts exact"),
    pytest.param({"hosts": s("WEB.Default.svc.cluster.local")}, {}, True, id="hosts pattern case"),
    pytest.param(
        {"hosts": s("web.default.svc.cluster.local")},
        {"host": "Web.DEFAULT.svc.cluster.local"},
        True,
        id="hosts request case",
    ),
    pytest.param(
        {"hosts": s("web.default.svc.cluster.local")},
        {"host": "web.default.svc.cluster.local:80"},
        False,
        id="hosts exact does not strip the port",
    ),
    pytest.param(
        {"hosts": s("web.default.svc.cluster.local:*")},
        {"host": "web.default.svc.cluster.local:80"},
        True,
        id="hosts with port prefix",
    ),
    pytest.param({"hosts": s("*.svc.CLUSTER.local")}, {}, True, id="hosts suffix case"),
    pytest.param({"hosts": s("*")}, {"host": ""}, False, id="hosts * needs a host"),
    pytest.param({"not_hosts": s("WEB.default.svc.cluster.local")}, {}, False, id="notHosts excludes"),
    pytest.param({"not_hosts": s("api.*")}, {}, True, id="notHosts other"),
    # methods: case-sensitive
    pytest.param({"methods": s("GET", "HEAD")}, {}, True, id="methods"),
    pytest.param({"methods": s("get")}, {}, False, id="methods case-sensitive"),
    pytest.param({"methods": s("*")}, {}, True, id="methods *"),
    pytest.param({"not_methods": s("GET")}, {}, False, id="notMethods excludes"),
    pytest.param({"not_methods": s("POST")}, {}, True, id="notMethods other"),
    # paths: URL path without the query, raw
    pytest.param({"paths": s("/api/items")}, {}, True, id="paths exact"),
    pytest.param({"paths": s("/api/*")}, {}, True, id="paths prefix"),
    pytest.param({"paths": s("*/items")}, {}, True, id="paths suffix"),
    pytest.param({"paths": s("/api/items")}, {"path": "/api/items?x=1"}, True, id="paths query ignored"),
    pytest.param({"paths": s("/API/items")}, {}, False, id="paths case-sensitive"),
    pytest.param({"paths": s("/api/items")}, {"path": "/api//items"}, False, id="paths not normalised"),
    pytest.param({"not_paths": s("/api/*")}, {}, False, id="notPaths excludes"),
    pytest.param({"not_paths": s("/admin*")}, {}, True, id="notPaths other"),
    # destination ports
    pytest.param({"destination_ports": (8080, 9090)}, {}, True, id="ports"),
    pytest.param({"destination_ports": (80,)}, {}, False, id="ports miss"),
    pytest.param({"not_destination_ports": (8080,)}, {}, False, id="notPorts excludes"),
    pytest.param({"not_destination_ports": (80,)}, {}, True, id="notPorts other"),
    # request headers
    pytest.param({"headers": header("x-user", "alice")}, {}, True, id="header exact"),
    pytest.param({"headers": header("X-User", "alice")}, {}, True, id="header name case"),
    pytest.param({"headers": header("x-user", "Alice")}, {}, False, id="header value case-sensitive"),
    pytest.param({"headers": header("x-user", "al*", "bob")}, {}, True, id="header any value"),
    pytest.param(
        {"headers": header("x-user", "*")},
        {"headers": (("x-user", ""),)},
        True,
        id="header * present even empty",
    ),
    pytest.param({"headers": header("x-user", "*")}, {"headers": ()}, False, id="header * absent"),
    pytest.param(
        {"headers": header("accept", "text/html,application/json")},
        {},
        True,
        id="repeated header joined with comma",
    ),
    pytest.param({"headers": header("accept", "text/html")}, {}, False, id="repeated header whole value"),
    pytest.param({"headers": header("accept", "*json")}, {}, True, id="repeated header suffix"),
    pytest.param({"not_headers": header("x-user", "alice")}, {}, False, id="notHeader excludes"),
    pytest.param({"not_headers": header("x-user", "bob")}, {}, True, id="notHeader other value"),
    pytest.param(
        {"not_headers": header("x-user", "alice")},
        {"headers": ()},
        True,
        id="notHeader never excludes an absent header",
    ),
    # no fields: matches everything
    pytest.param({}, {}, True, id="empty match"),
]


@pytest.mark.parametrize(("fields", "overrides", "expected"), FIELD_CASES)
def test_fields(fields: dict[str, Any], overrides: dict[str, Any], expected: bool) -> None:
    request = req(**overrides)
    assert request_matches(pol(ALLOW, one(**fields)), request) is expected
    assert request_matches(pol(DENY, one(**fields)), request) is expected
    allow = authorize_request([pol(ALLOW, one(**fields))], request)
    assert allow.allowed is expected
    deny = authorize_request([pol(DENY, one(**fields))], request)
    assert deny.allowed is not expected


def test_structure_rules_any_clauses_all_matches_any() -> None:
    get = L7Match(methods=s("GET"))
    post = L7Match(methods=s("POST"))
    api = L7Match(paths=s("/api/*"))
    admin = L7Match(paths=s("/admin"))
    r = req()
    # a clause is ANY of its matches
    assert request_matches(pol(ALLOW, L7Rule((L7Clause((post, get)),))), r)
    assert not request_matches(pol(ALLOW, L7Rule((L7Clause((post, admin)),))), r)
    # a rule is ALL of its clauses
    assert request_matches(pol(ALLOW, L7Rule((L7Clause((get,)), L7Clause((api,))))), r)
    assert not request_matches(pol(ALLOW, L7Rule((L7Clause((get,)), L7Clause((admin,))))), r)
    # a policy is ANY of its rules
    assert request_matches(pol(ALLOW, L7Rule((L7Clause((admin,)),)), L7Rule((L7Clause((get,)),))), r)
    # a match is ALL of its fields
    assert not request_matches(pol(ALLOW, one(methods=s("GET"), paths=s("/admin"))), r)
    # edges: a rule with no clauses matches everything; a clause with no matches matches nothing
    assert request_matches(pol(ALLOW, L7Rule(())), r)
    assert not request_matches(pol(ALLOW, L7Rule((L7Clause(()),))), r)


def test_no_policies_allow() -> None:
    decision = authorize_request([], req())
    assert decision == L7Decision(True, "allowed: no ALLOW policy applies", None)


def test_empty_allow_policy_allows_nothing() -> None:
    decision = authorize_request([pol(ALLOW)], req())
    assert decision == L7Decision(False, "no ALLOW policy matched", None)


def test_deny_before_allow() -> None:
    allow = pol(ALLOW, one(methods=s("GET")), name="a-allow")
    deny = pol(DENY, one(paths=s("/api/*")), name="z-deny")
    decision = authorize_request([allow, deny], req())
    assert (decision.allowed, decision.policy) == (False, "default/z-deny")
    assert decision.reason == "denied by DENY policy default/z-deny"
    # the DENY does not match: the ALLOW decides
    decision = authorize_request([allow, deny], req(path="/other"))
    assert (decision.allowed, decision.policy) == (True, "default/a-allow")
    assert decision.reason == "allowed by ALLOW policy default/a-allow"


def test_some_allow_must_match() -> None:
    policies = [pol(ALLOW, one(methods=s("POST")), name="a"), pol(ALLOW, one(methods=s("GET")), name="b")]
    assert authorize_request(policies, req()).policy == "default/b"
    assert authorize_request(policies, req(method="PUT")) == L7Decision(
        False, "no ALLOW policy matched", None
    )
    # a DENY that does not match leaves the default allow when there is no ALLOW
    assert authorize_request([pol(DENY, one(methods=s("POST")))], req()).allowed


def test_dry_run_never_decides_but_is_reported() -> None:
    dry_deny = pol(DENY, one(methods=s("GET")), name="dry-deny", dry_run=True)
    dry_allow = pol(ALLOW, one(methods=s("POST")), name="dry-allow", dry_run=True)
    decision = authorize_request([dry_allow, dry_deny], req())
    assert decision.allowed, "dry-run policies never change the outcome (no enforced ALLOW: allowed)"
    assert decision.dry_run_matches == ("default/dry-deny",)
    # an enforced ALLOW still decides; the dry-run ALLOW that would have matched is reported
    enforced = pol(ALLOW, one(paths=s("/nope")), name="enforced")
    decision = authorize_request([enforced, dry_allow], req(method="POST"))
    assert not decision.allowed
    assert decision.dry_run_matches == ("default/dry-allow",)


def test_a_policy_given_twice_counts_once() -> None:
    dry = pol(DENY, one(methods=s("GET")), name="dry", dry_run=True)
    allow = pol(ALLOW, one(methods=s("GET")), name="allow")
    decision = authorize_request([allow, dry, allow, dry], req())
    assert decision == L7Decision(
        True, "allowed by ALLOW policy default/allow", "default/allow", ("default/dry",)
    )


def test_unparsable_addresses_fail_closed() -> None:
    # an entry that is not a CIDR: an ALLOW never matches through it, a DENY always does
    assert not authorize_request([pol(ALLOW, one(source_ips=("nonsense",)))], req()).allowed
    decision = authorize_request([pol(DENY, one(not_source_ips=("nonsense",)))], req())
    assert not decision.allowed
    assert "failing closed" in decision.reason
    # a source address that is not an IP likewise
    assert not authorize_request([pol(ALLOW, one(source_ips=("0.0.0.0/0",)))], req(source_ip="?")).allowed


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/a/b?x=1&y=/z", "/a/b"),
        ("/a/b", "/a/b"),
        ("/a/%2e%2e/b?", "/a/%2e%2e/b"),
        ("/a//b/../c", "/a//b/../c"),
        ("http://web:8080/a/b?q", "/a/b"),
        ("https://web", "/"),
        ("*", "*"),
        ("?only", ""),
    ],
)
def test_url_path(target: str, path: str) -> None:
    assert url_path(target) == path


def test_request_for() -> None:
    peer = Identity("cluster.local", "default", "curl")
    built = request_for(
        method="POST",
        target="/x?y=1",
        host="web:80",
        destination_port=80,
        headers=[("X-User", "alice"), ("Accept", "a")],
        peer=peer,
        source_ip="10.0.0.1",
    )
    assert built == RequestAttributes(
        method="POST",
        path="/x",
        host="web:80",
        destination_port=80,
        headers=(("x-user", "alice"), ("accept", "a")),
        source_principal=CURL,
        source_namespace="default",
        source_ip="10.0.0.1",
    )
    anonymous = request_for(method="GET", target="/", host="h", destination_port=80)
    assert (anonymous.source_principal, anonymous.source_namespace) == ("", "")


def test_denied_body() -> None:
    assert RBAC_DENIED_BODY == "RBAC: access denied"


requests = st.builds(
    RequestAttributes,
    method=st.sampled_from(["GET", "POST", "get", ""]),
    path=st.text(max_size=12),
    host=st.text(max_size=12),
    destination_port=st.integers(0, 65535),
    headers=st.lists(st.tuples(st.text(max_size=5), st.text(max_size=5)), max_size=3).map(tuple),
    source_principal=st.text(max_size=8),
    source_namespace=st.text(max_size=4),
    source_ip=st.sampled_from(["10.0.0.1", "fd00::1", "not-an-ip", ""]),
)


@settings(max_examples=200, deadline=None)
@given(requests)
def test_never_raises_and_deny_wins(request: RequestAttributes) -> None:
    catch_all = pol(DENY, L7Rule(()), name="deny-all")
    everything = pol(ALLOW, L7Rule(()), name="allow-all")
    fields = pol(
        ALLOW,
        one(
            hosts=s("*"),
            not_paths=s("/x*"),
            headers=header("a", "*"),
            not_source_ips=("10.0.0.0/8",),
            not_principals=s("*a"),
        ),
        name="fields",
    )
    assert not authorize_request([everything, fields, catch_all], request).allowed
    assert authorize_request([everything, fields], request).allowed
