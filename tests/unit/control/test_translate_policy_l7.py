"""AuthorizationPolicy with targetRefs → the waypoint's L7Authorization (Istio's waypoint policies)."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import authz, pod, run

from ambit.control.translate import translate
from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    MatchKind,
    PolicyTarget,
    StringMatch,
)

GW = {"kind": "Gateway", "group": "gateway.networking.k8s.io", "name": "waypoint"}
SVC = {"kind": "Service", "group": "", "name": "web"}
GW_TARGET = PolicyTarget(GATEWAY_TARGET, "default", "waypoint")
SVC_TARGET = PolicyTarget(SERVICE_TARGET, "default", "web")
PRESENCE = StringMatch(MatchKind.PRESENCE)


def exact(value: str) -> StringMatch:
    return StringMatch(MatchKind.EXACT, value)


def one(**fields: Any) -> L7Clause:
    return L7Clause((L7Match(**fields),))


def l7(spec: dict[str, Any], ns: str = "default", **kwargs: Any) -> L7Authorization:
    result = run(authz("p", ns, {"targetRefs": [GW], **spec}), **kwargs)
    assert result.policies == {}, "a targetRefs policy is not ztunnel's"
    return result.l7_policies[f"{ns}/p"]


def rule(**fields: Any) -> dict[str, Any]:
    return {"rules": [fields]}


# --- targets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param({"targetRefs": [GW]}, (GW_TARGET,), id="targetRefs Gateway"),
        pytest.param({"targetRefs": [SVC]}, (SVC_TARGET,), id="targetRefs Service"),
        pytest.param({"targetRefs": [{**SVC, "group": "core"}]}, (SVC_TARGET,), id="Service group core"),
        pytest.param({"targetRefs": [{"kind": "Service", "name": "web"}]}, (SVC_TARGET,), id="no group"),
        pytest.param({"targetRefs": [SVC, GW, SVC]}, (GW_TARGET, SVC_TARGET), id="sorted, once each"),
        pytest.param({"targetRef": GW}, (GW_TARGET,), id="singular targetRef"),
        pytest.param({"targetRefs": [{**GW, "namespace": "default"}]}, (GW_TARGET,), id="same namespace"),
    ],
)
def test_targets(target: dict[str, Any], expected: tuple[PolicyTarget, ...]) -> None:
    result = run(authz("p", "default", {**target, "action": "DENY", "rules": [{}]}))
    assert result.policies == {}
    assert result.warnings == ()
    assert result.l7_policies == {
        "default/p": L7Authorization("p", "default", Action.DENY, expected, (L7Rule(()),))
    }


def test_both_target_ref_forms_are_used() -> None:
    # validation refuses this; translation still takes every target it is given
    obj = authz("p", "default", {"targetRef": GW, "targetRefs": [SVC]})
    assert translate([obj]).l7_policies["default/p"].targets == (GW_TARGET, SVC_TARGET)


def test_cross_namespace_target_is_refused() -> None:
    spec = {"targetRefs": [{**GW, "namespace": "other"}, SVC]}
    result = run(authz("p", "default", spec))
    assert result.l7_policies["default/p"].targets == (SVC_TARGET,)
    (warning,) = result.warnings
    assert warning.startswith("AuthorizationPolicy default/p: targetRef Gateway other/waypoint")
    assert "another namespace" in warning


def test_only_cross_namespace_targets_ignore_the_policy() -> None:
    result = run(authz("p", "default", {"targetRef": {**SVC, "namespace": "other"}}))
    assert result.l7_policies == {}
    assert "AuthorizationPolicy default/p: no target a waypoint supports; the policy is ignored" in (
        result.warnings
    )


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param(
            {"kind": "ServiceEntry", "group": "networking.istio.io", "name": "ext"}, id="ServiceEntry"
        ),
        pytest.param(
            {"kind": "GatewayClass", "group": "gateway.networking.k8s.io", "name": "istio-waypoint"},
            id="GatewayClass",
        ),
        pytest.param({"kind": "Gateway", "group": "networking.istio.io", "name": "gw"}, id="Istio Gateway"),
        pytest.param({"kind": "Gateway", "name": "gw"}, id="Gateway without group"),
        pytest.param({"kind": "Service", "group": "apps", "name": "web"}, id="Service of another group"),
    ],
)
def test_unsupported_target_kinds(ref: dict[str, Any]) -> None:
    result = run(authz("p", "default", {"targetRefs": [ref], "rules": [{}]}))
    assert result.l7_policies == {}
    assert result.policies == {}
    assert len(result.warnings) == 2
    assert any(f"{ref['kind']} default/{ref['name']} is not supported" in w for w in result.warnings)
    assert any("no target a waypoint supports; the policy is ignored" in w for w in result.warnings)
    # beside a supported target, only the unsupported one is dropped
    mixed = run(authz("p", "default", {"targetRefs": [ref, GW], "rules": [{}]}))
    assert mixed.l7_policies["default/p"].targets == (GW_TARGET,)
    assert len(mixed.warnings) == 1


def test_selector_with_target_refs_is_skipped() -> None:
    # Istio (and our validation) rejects it; a policy that gets here anyway is ignored by both paths
    obj = authz("p", "default", {"selector": {"matchLabels": {"app": "web"}}, "targetRefs": [GW]})
    result = translate([obj, pod("web", labels={"app": "web"})])
    assert result.l7_policies == {}
    assert result.policies == {}
    assert result.warnings == (
        "AuthorizationPolicy default/p: selector and targetRef(s) cannot both be set (Istio rejects such "
        "a policy); the policy is ignored",
    )
    assert result.workloads["uid-default-web"].authorization_policies == ()


def test_empty_selector_with_target_refs_is_a_waypoint_policy() -> None:
    obj = authz("p", "default", {"selector": {}, "targetRefs": [GW]})
    assert translate([obj]).l7_policies["default/p"].targets == (GW_TARGET,)


@pytest.mark.parametrize("action", ["AUDIT", "CUSTOM"])
def test_audit_and_custom_are_skipped_with_warning(action: str) -> None:
    spec: dict[str, Any] = {"targetRefs": [GW], "action": action, "rules": [{}]}
    if action == "CUSTOM":
        spec["provider"] = {"name": "ext-authz"}
    result = run(authz("p", "default", spec))
    assert result.l7_policies == {}
    assert result.policies == {}
    assert result.warnings == (
        f"AuthorizationPolicy default/p: waypoints do not support the {action} action; the policy is ignored",
    )


# --- rules --------------------------------------------------------------------------------------

L7_CASES = [
    pytest.param(
        rule(to=[{"operation": {"hosts": ["web", "*.example.com"], "notHosts": ["admin*"]}}]),
        one(
            hosts=(exact("web"), StringMatch(MatchKind.SUFFIX, ".example.com")),
            not_hosts=(StringMatch(MatchKind.PREFIX, "admin"),),
        ),
        id="hosts",
    ),
    pytest.param(
        rule(to=[{"operation": {"methods": ["GET"], "notMethods": ["*"]}}]),
        one(methods=(exact("GET"),), not_methods=(PRESENCE,)),
        id="methods",
    ),
    pytest.param(
        rule(to=[{"operation": {"paths": ["/api/*", "/x"], "notPaths": ["*/admin"]}}]),
        one(
            paths=(StringMatch(MatchKind.PREFIX, "/api/"), exact("/x")),
            not_paths=(StringMatch(MatchKind.SUFFIX, "/admin"),),
        ),
        id="paths",
    ),
    pytest.param(
        rule(to=[{"operation": {"ports": ["8080"], "notPorts": ["9090"]}}]),
        one(destination_ports=(8080,), not_destination_ports=(9090,)),
        id="ports",
    ),
    pytest.param(
        rule(to=[{"operation": {"methods": ["GET"]}}, {"operation": {"paths": ["/a"]}}]),
        L7Clause((L7Match(methods=(exact("GET"),)), L7Match(paths=(exact("/a"),)))),
        id="to entries are ORed in one clause",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"principals": ["cluster.local/ns/a/sa/b"], "notPrincipals": ["*"]}}]}),
        one(principals=(exact("cluster.local/ns/a/sa/b"),), not_principals=(PRESENCE,)),
        id="principals",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"namespaces": ["prod-*"], "notNamespaces": ["x"]}}]}),
        one(namespaces=(StringMatch(MatchKind.PREFIX, "prod-"),), not_namespaces=(exact("x"),)),
        id="namespaces",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"ipBlocks": ["10.0.0.1", "10.1.2.3/16"], "notIpBlocks": ["::1"]}}]}),
        one(source_ips=("10.0.0.1/32", "10.1.0.0/16"), not_source_ips=("::1/128",)),
        id="ipBlocks",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"serviceAccounts": ["curl", "other/sleep"]}}]}),
        one(principals=(exact("cluster.local/ns/default/sa/curl"), exact("cluster.local/ns/other/sa/sleep"))),
        id="serviceAccounts",
    ),
    pytest.param(
        rule(**{"from": [{"source": {"notServiceAccounts": ["curl"]}}]}),
        one(not_principals=(exact("cluster.local/ns/default/sa/curl"),)),
        id="notServiceAccounts",
    ),
    pytest.param(
        rule(when=[{"key": "request.headers[X-User]", "values": ["alice", "b*"], "notValues": ["*"]}]),
        one(
            headers=(HeaderMatch("x-user", (exact("alice"), StringMatch(MatchKind.PREFIX, "b"))),),
            not_headers=(HeaderMatch("x-user", (PRESENCE,)),),
        ),
        id="when request.headers",
    ),
    pytest.param(
        rule(when=[{"key": "source.ip", "values": ["10.0.0.0/8"], "notValues": ["10.1.0.0/16"]}]),
        one(source_ips=("10.0.0.0/8",), not_source_ips=("10.1.0.0/16",)),
        id="when source.ip",
    ),
    pytest.param(
        rule(when=[{"key": "source.namespace", "values": ["a"], "notValues": ["b"]}]),
        one(namespaces=(exact("a"),), not_namespaces=(exact("b"),)),
        id="when source.namespace",
    ),
    pytest.param(
        rule(when=[{"key": "source.principal", "values": ["*"]}]),
        one(principals=(PRESENCE,)),
        id="when source.principal",
    ),
    pytest.param(
        rule(when=[{"key": "destination.port", "values": ["80"], "notValues": ["81"]}]),
        one(destination_ports=(80,), not_destination_ports=(81,)),
        id="when destination.port",
    ),
]


@pytest.mark.parametrize(("spec", "clause"), L7_CASES)
@pytest.mark.parametrize("action", ["ALLOW", "DENY"])
def test_l7_rules(spec: dict[str, Any], clause: L7Clause, action: str) -> None:
    result = run(authz("p", "default", {"targetRefs": [GW], "action": action, **spec}))
    assert result.warnings == ()
    policy = result.l7_policies["default/p"]
    assert policy.action is Action(action)
    assert policy.rules == (L7Rule((clause,)),)


def test_clauses_are_anded_in_order_to_from_when() -> None:
    spec = {
        "rules": [
            {
                "when": [
                    {"key": "request.headers[x-a]", "values": ["1"]},
                    {"key": "destination.port", "values": ["80"]},
                ],
                "from": [{"source": {"namespaces": ["a"]}}],
                "to": [{"operation": {"methods": ["GET"]}}],
            },
            {},
        ]
    }
    assert l7(spec).rules == (
        L7Rule(
            (
                one(methods=(exact("GET"),)),
                one(namespaces=(exact("a"),)),
                one(headers=(HeaderMatch("x-a", (exact("1"),)),)),
                one(destination_ports=(80,)),
            )
        ),
        L7Rule(()),
    )


def test_empty_spec_allows_nothing() -> None:
    policy = l7({})
    assert (policy.action, policy.rules) == (Action.ALLOW, ())


UNSUPPORTED = [
    pytest.param(
        {"from": [{"source": {"requestPrincipals": ["iss/sub"]}}]},
        "requestPrincipals",
        id="requestPrincipals",
    ),
    pytest.param(
        {"from": [{"source": {"notRequestPrincipals": ["*"]}}]},
        "notRequestPrincipals",
        id="notRequestPrincipals",
    ),
    pytest.param(
        {"from": [{"source": {"remoteIpBlocks": ["1.2.3.4"]}}]}, "remoteIpBlocks", id="remoteIpBlocks"
    ),
    pytest.param(
        {"from": [{"source": {"notRemoteIpBlocks": ["1.2.3.4"]}}]},
        "notRemoteIpBlocks",
        id="notRemoteIpBlocks",
    ),
    pytest.param(
        {"to": [{"operation": {"paths": ["/a/{*}/b"]}}]}, "paths (path template)", id="path template"
    ),
    pytest.param(
        {"to": [{"operation": {"notPaths": ["/a/{**}"]}}]}, "notPaths (path template)", id="notPaths template"
    ),
    pytest.param(
        {"when": [{"key": "request.auth.claims[iss]", "values": ["x"]}]},
        "request.auth.claims[iss]",
        id="claims",
    ),
    pytest.param(
        {"when": [{"key": "request.auth.principal", "values": ["x"]}]},
        "request.auth.principal",
        id="auth principal",
    ),
    pytest.param(
        {"when": [{"key": "destination.ip", "values": ["10.0.0.1"]}]}, "destination.ip", id="destination.ip"
    ),
    pytest.param({"when": [{"key": "remote.ip", "values": ["10.0.0.1"]}]}, "remote.ip", id="remote.ip"),
    pytest.param(
        {"when": [{"key": "request.headers[]", "values": ["x"]}]}, "request.headers[]", id="empty header name"
    ),
]


@pytest.mark.parametrize(("extra", "attribute"), UNSUPPORTED)
def test_unsupported_attribute_in_allow_drops_the_rule(extra: dict[str, Any], attribute: str) -> None:
    kept = {"to": [{"operation": {"methods": ["GET"]}}]}
    with_it = {"to": [{"operation": {"ports": ["8080"]}}], **extra}
    if "to" in extra:
        with_it["to"] = [{"operation": {"ports": ["8080"]}}, *extra["to"]]
    result = run(authz("p", "default", {"targetRefs": [GW], "rules": [with_it, kept]}))
    assert result.l7_policies["default/p"].rules == (L7Rule((one(methods=(exact("GET"),)),)),)
    (warning,) = result.warnings
    assert warning.startswith(f"AuthorizationPolicy default/p: waypoints cannot evaluate {attribute}.")
    assert "more restrictive" in warning


@pytest.mark.parametrize(("extra", "attribute"), UNSUPPORTED)
def test_unsupported_attribute_in_deny_is_removed_and_the_rest_kept(
    extra: dict[str, Any], attribute: str
) -> None:
    kept = {"key": "source.namespace", "values": ["a"]}
    the_rule = {**extra, "when": [kept, *extra.get("when", [])]}
    spec = {"targetRefs": [GW], "action": "DENY", "rules": [the_rule]}
    result = run(authz("p", "default", spec))
    assert result.l7_policies["default/p"].rules == (L7Rule((one(namespaces=(exact("a"),)),)),)
    (warning,) = result.warnings
    assert attribute in warning
    assert "The DENY policy is enforced without them: broader." in warning
    assert "now deny every request" not in warning


@pytest.mark.parametrize(("extra", "attribute"), UNSUPPORTED)
def test_deny_rule_left_with_nothing_denies_every_request(extra: dict[str, Any], attribute: str) -> None:
    result = run(authz("p", "default", {"targetRefs": [GW], "action": "DENY", "rules": [extra]}))
    assert result.l7_policies["default/p"].rules == (L7Rule(()),)
    assert "Rule(s) 0 keep no other condition and now deny every request" in result.warnings[0]


def test_path_template_removes_the_whole_field_of_a_deny() -> None:
    spec = {
        "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/x", "/a/{*}"], "methods": ["GET"]}}]}],
    }
    assert l7(spec).rules == (L7Rule((one(methods=(exact("GET"),)),)),)


def test_dry_run_annotation() -> None:
    obj = authz("p", "default", {"targetRefs": [GW]}, annotations={"istio.io/dry-run": "true"})
    assert run(obj).l7_policies["default/p"].dry_run
    bad = authz("p", "default", {"targetRefs": [GW]}, annotations={"istio.io/dry-run": "maybe"})
    result = run(bad)
    assert not result.l7_policies["default/p"].dry_run
    assert "is not a boolean; treated as false" in result.warnings[0]


def test_spiffe_prefixed_principal_is_kept_and_warned() -> None:
    spec = rule(**{"from": [{"source": {"principals": ["spiffe://cluster.local/ns/a/sa/b"]}}]})
    result = run(authz("p", "default", {"targetRefs": [GW], **spec}))
    assert result.l7_policies["default/p"].rules == (
        L7Rule((one(principals=(exact("spiffe://cluster.local/ns/a/sa/b"),)),)),
    )
    assert "includes 'spiffe://'" in result.warnings[0]


def test_service_accounts_use_the_trust_domain() -> None:
    spec = rule(**{"from": [{"source": {"serviceAccounts": ["curl"]}}]})
    policy = l7(spec, trust_domain="example.org")
    assert policy.rules == (L7Rule((one(principals=(exact("example.org/ns/default/sa/curl"),)),)),)


# --- beside the L4 path -------------------------------------------------------------------------


def test_selector_policies_with_l7_attributes_stay_l4_only() -> None:
    spec = {
        "selector": {"matchLabels": {"app": "web"}},
        "action": "DENY",
        "rules": [{"to": [{"operation": {"methods": ["GET"], "ports": ["80"]}}]}],
    }
    result = run(authz("p", "default", spec), pod("web", labels={"app": "web"}))
    assert result.l7_policies == {}
    assert "default/p" in result.policies
    assert result.workloads["uid-default-web"].authorization_policies == ("default/p",)


def test_waypoint_policies_are_not_listed_on_workloads_and_are_versioned() -> None:
    result = run(authz("p", "default", {"targetRefs": [GW]}), pod("web", labels={"app": "web"}))
    assert result.workloads["uid-default-web"].authorization_policies == ()
    assert "l7/default/p" in result.versions
    assert "ap/default/p" not in result.versions
