"""AuthorizationPolicy and PeerAuthentication → ztunnel L4 policies (Istio's IS-AUTHZ semantics)."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import authz, namespace, peer_authn, pod, run

from ambit.model.policy import (
    STRICT_POLICY_NAME,
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)

STRICT_KEY = f"istio-system/{STRICT_POLICY_NAME}"
PRESENCE = StringMatch(MatchKind.PRESENCE)


def exact(value: str) -> StringMatch:
    return StringMatch(MatchKind.EXACT, value)


def one(**fields: Any) -> Clause:
    return Clause((Match(**fields),))


def policy(spec: dict[str, Any], ns: str = "default", **kwargs: Any) -> Authorization:
    result = run(authz("p", ns, spec), **kwargs)
    return result.policies[f"{ns}/p"]


def rule(**fields: Any) -> dict[str, Any]:
    return {"rules": [fields]}


L4_CASES = [
    pytest.param(
        rule(**{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"]}}]}),
        (Rule((one(principals=(exact("cluster.local/ns/a/sa/b"),)),)),),
        id="principals",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"notPrincipals": ["*"]}}]}),
        (Rule((one(not_principals=(PRESENCE,)),)),),
        id="notPrincipals presence",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"namespaces": ["prod-*"]}}]}),
        (Rule((one(namespaces=(StringMatch(MatchKind.PREFIX, "prod-"),)),)),),
        id="namespaces prefix",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"notNamespaces": ["*-test"]}}]}),
        (Rule((one(not_namespaces=(StringMatch(MatchKind.SUFFIX, "-test"),)),)),),
        id="notNamespaces suffix",
    ),
    pytest.param(
        rule(
            **{"from": [{"source": {"ipBlocks": ["10.0.0.1", "10.0.0.0/8", "2001:db8::1", "10.1.2.3/16"]}}]}
        ),
        (Rule((one(source_ips=("10.0.0.1/32", "10.0.0.0/8", "2001:db8::1/128", "10.1.0.0/16")),)),),
        id="ipBlocks",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"notIpBlocks": ["192.168.0.0/24"]}}]}),
        (Rule((one(not_source_ips=("192.168.0.0/24",)),)),),
        id="notIpBlocks",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"serviceAccounts": ["curl", "other/sleep"]}}]}),
        (
            Rule(
                (
                    one(
                        principals=(
                            exact("cluster.local/ns/default/sa/curl"),
                            exact("cluster.local/ns/other/sa/sleep"),
                        )
                    ),
                )
            ),
        ),
        id="serviceAccounts",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"notServiceAccounts": ["curl"]}}]}),
        (Rule((one(not_principals=(exact("cluster.local/ns/default/sa/curl"),)),)),),
        id="notServiceAccounts",
    ),
    pytest.param(
        rule(to=[{"operation": {"ports": ["80", "443"]}}]),
        (Rule((one(destination_ports=(80, 443)),)),),
        id="ports",
    ),
    pytest.param(
        rule(to=[{"operation": {"notPorts": ["22"]}}]),
        (Rule((one(not_destination_ports=(22,)),)),),
        id="notPorts",
    ),
    pytest.param(
        rule(when=[{"key": "source.ip", "values": ["10.1.1.1"], "notValues": ["10.2.0.0/16"]}]),
        (Rule((one(source_ips=("10.1.1.1/32",), not_source_ips=("10.2.0.0/16",)),)),),
        id="when source.ip",
    ),
    pytest.param(
        rule(when=[{"key": "source.namespace", "notValues": ["kube-system"]}]),
        (Rule((one(not_namespaces=(exact("kube-system"),)),)),),
        id="when source.namespace",
    ),
    pytest.param(
        rule(when=[{"key": "source.principal", "values": ["cluster.local/ns/a/sa/*"]}]),
        (Rule((one(principals=(StringMatch(MatchKind.PREFIX, "cluster.local/ns/a/sa/"),)),)),),
        id="when source.principal",
    ),
    pytest.param(
        rule(when=[{"key": "destination.ip", "values": ["10.96.0.10"]}]),
        (Rule((one(destination_ips=("10.96.0.10/32",)),)),),
        id="when destination.ip",
    ),
    pytest.param(
        rule(when=[{"key": "destination.port", "values": ["8080"], "notValues": ["9090"]}]),
        (Rule((one(destination_ports=(8080,), not_destination_ports=(9090,)),)),),
        id="when destination.port",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"namespaces": ["a"]}}, {"source": {"principals": ["td/ns/b/sa/c"]}}]}),
        (Rule((Clause((Match(namespaces=(exact("a"),)), Match(principals=(exact("td/ns/b/sa/c"),)))),)),),
        id="from entries are ORed in one clause",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"namespaces": ["a"], "ipBlocks": ["10.0.0.0/8"]}}]}),
        (Rule((one(namespaces=(exact("a"),), source_ips=("10.0.0.0/8",)),)),),
        id="fields of one source are ANDed in one match",
    ),
    pytest.param(
        rule(
            **{
                "from": [{"source": {"namespaces": ["a"]}}],
                "to": [{"operation": {"ports": ["80"]}}, {"operation": {"ports": ["81"]}}],
                "when": [{"key": "source.ip", "values": ["10.0.0.1"]}],
            }
        ),
        (
            Rule(
                (
                    Clause((Match(destination_ports=(80,)), Match(destination_ports=(81,)))),
                    one(namespaces=(exact("a"),)),
                    one(source_ips=("10.0.0.1/32",)),
                )
            ),
        ),
        id="to, from and when are ANDed clauses",
    ),
    pytest.param(
        {"rules": [{"to": [{"operation": {"ports": ["80"]}}]}, {"to": [{"operation": {"ports": ["81"]}}]}]},
        (Rule((one(destination_ports=(80,)),)), Rule((one(destination_ports=(81,)),))),
        id="rules are ORed",
    ),
    pytest.param({"rules": [{}]}, (Rule(()),), id="rules [{}] matches everything"),
    pytest.param({}, (), id="spec {} matches nothing"),
    pytest.param({"action": "ALLOW"}, (), id="no rules matches nothing"),
]


@pytest.mark.parametrize(("spec", "rules"), L4_CASES)
@pytest.mark.parametrize("action", ["ALLOW", "DENY"])
def test_l4_rules(spec: dict[str, Any], rules: tuple[Rule, ...], action: str) -> None:
    result = run(authz("p", "default", {**spec, "action": action}))
    p = result.policies["default/p"]
    assert p.rules == rules
    assert p.action is Action(action)
    assert p.scope is Scope.NAMESPACE
    assert not p.dry_run
    assert not result.warnings


def test_allow_is_the_default_action() -> None:
    assert policy({}).action is Action.ALLOW


L7_CASES = [
    pytest.param("to", "operation", "hosts", ["example.com"], id="hosts"),
    pytest.param("to", "operation", "notHosts", ["example.com"], id="notHosts"),
    pytest.param("to", "operation", "methods", ["GET"], id="methods"),
    pytest.param("to", "operation", "notMethods", ["DELETE"], id="notMethods"),
    pytest.param("to", "operation", "paths", ["/admin*"], id="paths"),
    pytest.param("to", "operation", "notPaths", ["/health"], id="notPaths"),
    pytest.param("from", "source", "requestPrincipals", ["issuer/subject"], id="requestPrincipals"),
    pytest.param("from", "source", "notRequestPrincipals", ["*"], id="notRequestPrincipals"),
    pytest.param("from", "source", "remoteIpBlocks", ["1.2.3.4"], id="remoteIpBlocks"),
    pytest.param("from", "source", "notRemoteIpBlocks", ["1.2.3.4"], id="notRemoteIpBlocks"),
]


def _l7_rule(side: str, wrapper: str, field: str, value: list[str], with_l4: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {field: value}
    if with_l4:
        entry.update({"ports": ["8080"]} if side == "to" else {"namespaces": ["a"]})
    return {side: [{wrapper: entry}]}


def _l4_clause(side: str) -> Clause:
    return one(destination_ports=(8080,)) if side == "to" else one(namespaces=(exact("a"),))


@pytest.mark.parametrize(("side", "wrapper", "field", "value"), L7_CASES)
def test_l7_field_in_allow_drops_the_rule(side: str, wrapper: str, field: str, value: list[str]) -> None:
    kept = {"to": [{"operation": {"ports": ["9090"]}}]}
    spec = {"action": "ALLOW", "rules": [_l7_rule(side, wrapper, field, value, True), kept]}
    result = run(authz("p", "default", spec))
    assert result.policies["default/p"].rules == (Rule((one(destination_ports=(9090,)),)),)
    (warning,) = result.warnings
    assert "AuthorizationPolicy default/p" in warning
    assert field in warning
    assert "more restrictive" in warning


@pytest.mark.parametrize(("side", "wrapper", "field", "value"), L7_CASES)
def test_l7_field_in_deny_is_removed_and_the_rest_kept(
    side: str, wrapper: str, field: str, value: list[str]
) -> None:
    spec = {"action": "DENY", "rules": [_l7_rule(side, wrapper, field, value, True)]}
    result = run(authz("p", "default", spec))
    assert result.policies["default/p"].rules == (Rule((_l4_clause(side),)),)
    (warning,) = result.warnings
    assert field in warning
    assert "DENY policy is enforced without the HTTP attributes: broader." in warning
    assert "now deny every connection" not in warning


@pytest.mark.parametrize(("side", "wrapper", "field", "value"), L7_CASES)
def test_l7_only_deny_rule_matches_everything(side: str, wrapper: str, field: str, value: list[str]) -> None:
    spec = {"action": "DENY", "rules": [_l7_rule(side, wrapper, field, value, False)]}
    result = run(authz("p", "default", spec))
    assert result.policies["default/p"].rules == (Rule(()),)
    assert "Rule(s) 0 keep no L4 condition and now deny every connection" in result.warnings[0]


@pytest.mark.parametrize("key", ["request.headers[x-user]", "request.auth.claims[iss]", "source.trustDomain"])
def test_l7_when_keys(key: str) -> None:
    cond = {"key": key, "values": ["v"]}
    l4 = {"key": "destination.port", "values": ["80"]}
    allow = run(authz("p", "default", {"action": "ALLOW", "rules": [{"when": [cond, l4]}]}))
    assert allow.policies["default/p"].rules == ()
    assert key in allow.warnings[0]
    deny = run(authz("p", "default", {"action": "DENY", "rules": [{"when": [cond, l4]}]}))
    assert deny.policies["default/p"].rules == (Rule((one(destination_ports=(80,)),)),)


def test_l7_in_one_of_several_to_entries_of_a_deny() -> None:
    spec = {
        "action": "DENY",
        "rules": [{"to": [{"operation": {"methods": ["GET"]}}, {"operation": {"ports": ["80"]}}]}],
    }
    # The first entry, emptied, matches every connection, so the whole `to` clause does: nothing remains.
    assert policy(spec).rules == (Rule(()),)


@pytest.mark.parametrize("action", ["AUDIT", "CUSTOM"])
def test_audit_and_custom_are_skipped_with_warning(action: str) -> None:
    spec: dict[str, Any] = {"action": action, "rules": [{}]}
    if action == "CUSTOM":
        spec["provider"] = {"name": "ext-authz"}
    result = run(authz("p", "default", spec))
    assert "default/p" not in result.policies
    assert result.warnings == (
        f"AuthorizationPolicy default/p: ztunnel does not support the {action} action; the policy is ignored",
    )


@pytest.mark.parametrize(
    "target",
    [
        {"targetRefs": [{"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}]},
        {"targetRef": {"kind": "Service", "group": "", "name": "web"}},
    ],
)
def test_target_ref_policies_are_for_waypoints(target: dict[str, Any]) -> None:
    result = run(authz("p", "default", {**target, "action": "DENY", "rules": [{}]}))
    assert result.policies == {}
    assert result.warnings == ()
    assert set(result.l7_policies) == {"default/p"}  # tests/unit/control/test_translate_policy_l7.py


@pytest.mark.parametrize(
    ("ns", "selector", "scope"),
    [
        ("istio-system", None, Scope.GLOBAL),
        ("istio-system", {"app": "web"}, Scope.WORKLOAD_SELECTOR),
        ("default", None, Scope.NAMESPACE),
        ("default", {}, Scope.NAMESPACE),
        ("default", {"app": "web"}, Scope.WORKLOAD_SELECTOR),
    ],
)
def test_scope(ns: str, selector: dict[str, str] | None, scope: Scope) -> None:
    spec: dict[str, Any] = {"rules": [{}]}
    if selector is not None:
        spec["selector"] = {"matchLabels": selector}
    assert policy(spec, ns).scope is scope


def test_custom_root_namespace() -> None:
    assert policy({}, "mesh-root", root_namespace="mesh-root").scope is Scope.GLOBAL
    assert policy({}, "istio-system", root_namespace="mesh-root").scope is Scope.NAMESPACE


def test_selector_policies_are_listed_on_matching_workloads_only() -> None:
    sel = {"selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}
    result = run(
        authz("web-only", "shop", sel),
        authz("ns-wide", "shop", {"rules": [{}]}),
        authz("mesh-web", "istio-system", sel),
        authz("mesh-wide", "istio-system", {"rules": [{}]}),
        authz("other-ns", "other", sel),
        pod("web", "shop", labels={"app": "web", "version": "v1"}, ip="10.244.1.2"),
        pod("db", "shop", labels={"app": "db"}, ip="10.244.1.3"),
        pod("web", "other", labels={"app": "web"}, ip="10.244.1.4"),
        pod("web", "third", labels={"app": "web"}, ip="10.244.1.5"),
    )
    assert result.workloads["uid-shop-web"].authorization_policies == (
        "istio-system/mesh-web",
        "shop/web-only",
    )
    assert result.workloads["uid-shop-db"].authorization_policies == ()
    assert result.workloads["uid-other-web"].authorization_policies == (
        "istio-system/mesh-web",
        "other/other-ns",
    )
    assert result.workloads["uid-third-web"].authorization_policies == ("istio-system/mesh-web",)
    assert set(result.policies) == {
        "shop/web-only",
        "shop/ns-wide",
        "istio-system/mesh-web",
        "istio-system/mesh-wide",
        "other/other-ns",
    }


@pytest.mark.parametrize(
    ("value", "dry_run", "warns"), [("true", True, False), ("False", False, False), ("maybe", False, True)]
)
def test_dry_run_annotation(value: str, dry_run: bool, warns: bool) -> None:
    result = run(authz("p", "default", {"rules": [{}]}, annotations={"istio.io/dry-run": value}))
    assert result.policies["default/p"].dry_run is dry_run
    assert bool(result.warnings) is warns


def test_spiffe_prefixed_principal_is_kept_and_warned() -> None:
    result = run(
        authz(
            "p",
            "default",
            rule(**{"from": [{"source": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}]}),
        )
    )
    assert result.policies["default/p"].rules == (
        Rule((one(principals=(exact("spiffe://cluster.local/ns/a/sa/b"),)),)),
    )
    assert "spiffe://" in result.warnings[0]


def test_service_accounts_use_the_trust_domain() -> None:
    p = policy(rule(**{"from": [{"source": {"serviceAccounts": ["curl"]}}]}), trust_domain="example.org")
    assert p.rules == (Rule((one(principals=(exact("example.org/ns/default/sa/curl"),)),)),)


# --- PeerAuthentication --------------------------------------------------------------------------


def pods() -> list[dict[str, Any]]:
    return [
        namespace("istio-system"),
        namespace("shop"),
        namespace("lab"),
        pod("web", "shop", labels={"app": "web"}, ip="10.244.1.2"),
        pod("db", "shop", labels={"app": "db"}, ip="10.244.1.3"),
        pod("exp", "lab", labels={"app": "exp"}, ip="10.244.1.4"),
    ]


def strict_workloads(*pas: dict[str, Any]) -> set[str]:
    result = run(*pods(), *pas)
    return {
        w.name + "." + w.namespace
        for w in result.workloads.values()
        if STRICT_KEY in w.authorization_policies
    }


def test_no_peer_authentication_no_static_policy() -> None:
    result = run(*pods())
    assert result.policies == {}
    assert all(w.authorization_policies == () for w in result.workloads.values())


def test_static_strict_policy_shape() -> None:
    result = run(*pods(), peer_authn("default", "istio-system", "STRICT"))
    assert result.policies[STRICT_KEY] == Authorization(
        name=STRICT_POLICY_NAME,
        namespace="istio-system",
        scope=Scope.WORKLOAD_SELECTOR,
        action=Action.DENY,
        rules=(Rule((one(not_principals=(PRESENCE,)),)),),
    )


def test_static_policy_exists_whenever_any_peer_authentication_exists() -> None:
    result = run(*pods(), peer_authn("p", "shop", "PERMISSIVE"))
    assert STRICT_KEY in result.policies
    assert all(STRICT_KEY not in w.authorization_policies for w in result.workloads.values())


@pytest.mark.parametrize(
    ("pas", "strict"),
    [
        pytest.param(
            [peer_authn("m", "istio-system", "STRICT")], {"web.shop", "db.shop", "exp.lab"}, id="mesh"
        ),
        pytest.param([peer_authn("n", "shop", "STRICT")], {"web.shop", "db.shop"}, id="namespace"),
        pytest.param(
            [peer_authn("w", "shop", "STRICT", selector={"app": "web"})], {"web.shop"}, id="workload"
        ),
        pytest.param(
            [peer_authn("m", "istio-system", "STRICT"), peer_authn("n", "shop", "PERMISSIVE")],
            {"exp.lab"},
            id="namespace PERMISSIVE overrides mesh STRICT",
        ),
        pytest.param(
            [peer_authn("m", "istio-system", "STRICT"), peer_authn("n", "shop", "UNSET")],
            {"web.shop", "db.shop", "exp.lab"},
            id="namespace UNSET inherits mesh STRICT",
        ),
        pytest.param(
            [peer_authn("m", "istio-system", "STRICT"), peer_authn("n", "shop")],
            {"web.shop", "db.shop", "exp.lab"},
            id="no mtls block inherits",
        ),
        pytest.param(
            [peer_authn("m", "istio-system", "STRICT"), peer_authn("n", "shop", "DISABLE")],
            {"exp.lab"},
            id="namespace DISABLE acts as PERMISSIVE",
        ),
        pytest.param(
            [
                peer_authn("n", "shop", "STRICT"),
                peer_authn("w", "shop", "PERMISSIVE", selector={"app": "web"}),
            ],
            {"db.shop"},
            id="workload PERMISSIVE overrides namespace STRICT",
        ),
        pytest.param(
            [
                peer_authn("m", "istio-system", "PERMISSIVE"),
                peer_authn("w", "lab", "STRICT", selector={"app": "exp"}),
            ],
            {"exp.lab"},
            id="workload STRICT overrides mesh PERMISSIVE",
        ),
        pytest.param(
            [peer_authn("n", "shop", "STRICT"), peer_authn("w", "shop", "UNSET", selector={"app": "web"})],
            {"web.shop", "db.shop"},
            id="workload UNSET inherits",
        ),
        pytest.param(
            [peer_authn("r", "istio-system", "STRICT", selector={"app": "web"})],
            set(),
            id="root namespace selector policies are ignored",
        ),
        pytest.param(
            [
                peer_authn("old", "shop", "STRICT", created="2024-01-01T00:00:00Z"),
                peer_authn("new", "shop", "PERMISSIVE", created="2025-01-01T00:00:00Z"),
            ],
            {"web.shop", "db.shop"},
            id="oldest namespace policy wins",
        ),
        pytest.param(
            [
                peer_authn("b-old", "shop", "PERMISSIVE", created="2024-01-01T00:00:00Z"),
                peer_authn("a-new", "shop", "STRICT", created="2025-01-01T00:00:00Z"),
            ],
            set(),
            id="oldest wins over name order",
        ),
    ],
)
def test_peer_authentication_precedence(pas: list[dict[str, Any]], strict: set[str]) -> None:
    assert strict_workloads(*pas) == strict


def test_disable_is_warned() -> None:
    result = run(*pods(), peer_authn("n", "shop", "DISABLE"))
    assert any("DISABLE is ignored" in w for w in result.warnings)


def test_port_level_permissive_under_workload_strict() -> None:
    result = run(
        *pods(), peer_authn("w", "shop", "STRICT", selector={"app": "web"}, port_level={8080: "PERMISSIVE"})
    )
    key = "shop/converted_peer_authentication_w"
    assert result.workloads["uid-shop-web"].authorization_policies == (key,)
    assert result.policies[key] == Authorization(
        name="converted_peer_authentication_w",
        namespace="shop",
        scope=Scope.WORKLOAD_SELECTOR,
        action=Action.DENY,
        rules=(Rule((one(not_principals=(PRESENCE,)), one(not_destination_ports=(8080,)))),),
    )


def test_port_level_strict_under_workload_permissive() -> None:
    result = run(
        *pods(), peer_authn("w", "shop", "PERMISSIVE", selector={"app": "web"}, port_level={9090: "STRICT"})
    )
    key = "shop/converted_peer_authentication_w"
    assert result.workloads["uid-shop-web"].authorization_policies == (key,)
    assert result.policies[key].rules == (
        Rule((one(not_principals=(PRESENCE,), destination_ports=(9090,)),)),
    )


def test_port_level_permissive_under_namespace_strict_merges_strict() -> None:
    result = run(
        *pods(),
        peer_authn("n", "shop", "STRICT"),
        peer_authn("w", "shop", selector={"app": "web"}, port_level={8080: "PERMISSIVE"}),
    )
    key = "shop/converted_peer_authentication_w"
    assert result.workloads["uid-shop-web"].authorization_policies == (key,)
    assert result.workloads["uid-shop-db"].authorization_policies == (STRICT_KEY,)
    assert result.policies[key].rules == (
        Rule((one(not_destination_ports=(8080,)), one(not_principals=(PRESENCE,)))),
    )


def test_port_level_strict_under_strict_parent_is_just_strict() -> None:
    result = run(
        *pods(), peer_authn("w", "shop", "STRICT", selector={"app": "web"}, port_level={8080: "STRICT"})
    )
    assert "shop/converted_peer_authentication_w" not in result.policies
    assert result.workloads["uid-shop-web"].authorization_policies == (STRICT_KEY,)


def test_port_level_strict_of_permissive_workload_under_mesh_strict() -> None:
    # Istio's Go expression would drop this port's STRICT rule; ambit keeps it (see translate_policy).
    result = run(
        *pods(),
        peer_authn("m", "istio-system", "STRICT"),
        peer_authn("w", "shop", "PERMISSIVE", selector={"app": "web"}, port_level={9090: "STRICT"}),
    )
    key = "shop/converted_peer_authentication_w"
    assert result.workloads["uid-shop-web"].authorization_policies == (key,)
    assert result.policies[key].rules == (
        Rule((one(not_principals=(PRESENCE,), destination_ports=(9090,)),)),
    )


def test_strict_and_selector_policies_together() -> None:
    result = run(
        *pods(),
        peer_authn("m", "istio-system", "STRICT"),
        authz("web", "shop", {"selector": {"matchLabels": {"app": "web"}}, "rules": [{}]}),
    )
    assert result.workloads["uid-shop-web"].authorization_policies == (STRICT_KEY, "shop/web")
