"""ReferenceGrant: the one rule (``reference_permitted``) and its two users, route translation and route
status, which must agree: a backend in another namespace is used, and reported resolved, exactly when a
grant in that namespace permits the route."""

from __future__ import annotations

from typing import Any

import pytest
from translate_builders import JSON, run, service, store

from ambit.control.reference_grants import (
    NO_GRANTS,
    GrantFrom,
    GrantTo,
    ReferenceGrants,
    grant_of,
    reference_permitted,
)
from ambit.control.route_status import backend_namespaces, route_status, services_from_objects
from ambit.model.route import BackendRef, MirrorFilter

GW = "gateway.networking.k8s.io"
T0 = "2026-12-07T10:00:00Z"
OTHER_V1 = "other/web-v1.other.svc.cluster.local"
PARENT = {"group": "", "kind": "Service", "name": "web"}


def grant(
    ns: str = "other",
    *,
    kind: str = "HTTPRoute",
    from_ns: str = "default",
    to: list[JSON] | None = None,
    version: str = "v1beta1",
    name: str = "g",
) -> JSON:
    return {
        "apiVersion": f"{GW}/{version}",
        "kind": "ReferenceGrant",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "from": [{"group": GW, "kind": kind, "namespace": from_ns}],
            "to": to if to is not None else [{"group": "", "kind": "Service"}],
        },
    }


def permitted(grants: ReferenceGrants, **overrides: Any) -> bool:
    args: dict[str, Any] = {
        "from_group": GW,
        "from_kind": "HTTPRoute",
        "from_namespace": "default",
        "to_group": "",
        "to_kind": "Service",
        "to_namespace": "other",
        "to_name": "web-v1",
    }
    return reference_permitted(grants, **{**args, **overrides})


def grants(*objects: JSON) -> ReferenceGrants:
    return ReferenceGrants.from_objects(store(*objects))


# --- the rule ----------------------------------------------------------------------------------


def test_the_same_namespace_needs_no_grant() -> None:
    assert permitted(NO_GRANTS, to_namespace="default")


def test_another_namespace_needs_a_grant() -> None:
    assert not permitted(NO_GRANTS)
    assert permitted(grants(grant()))


@pytest.mark.parametrize("version", ["v1beta1", "v1"])
def test_both_versions_grant(version: str) -> None:
    assert permitted(grants(grant(version=version)))


def test_a_named_to_permits_that_service_only() -> None:
    named = grants(grant(to=[{"group": "", "kind": "Service", "name": "web-v1"}]))
    assert permitted(named)
    assert not permitted(named, to_name="web-v2")


def test_an_unnamed_to_permits_every_service_of_the_namespace() -> None:
    assert permitted(grants(grant()), to_name="anything")


def test_core_group_spellings() -> None:
    assert permitted(grants(grant(to=[{"group": "core", "kind": "Service"}])))
    assert permitted(grants(grant()), to_group="core")


@pytest.mark.parametrize(
    ("obj", "overrides"),
    [
        (grant(ns="elsewhere"), {}),  # a grant in another namespace than the target's
        (grant(ns="default"), {}),  # ... even the route's own
        (grant(kind="GRPCRoute"), {}),  # another route kind
        (grant(from_ns="shop"), {}),  # routes of another namespace
        (grant(to=[{"group": "", "kind": "Secret"}]), {}),  # another target kind
        (grant(to=[{"group": "example.io", "kind": "Service"}]), {}),  # another target group
        (grant(), {"from_group": "example.io"}),  # a route kind of another group
    ],
)
def test_what_does_not_grant(obj: JSON, overrides: dict[str, Any]) -> None:
    assert not permitted(grants(obj), **overrides)


def test_entries_are_ored_and_any_grant_suffices() -> None:
    obj = grant(to=[{"group": "", "kind": "Secret"}, {"group": "", "kind": "Service", "name": "web-v1"}])
    obj["spec"]["from"].insert(0, {"group": GW, "kind": "GRPCRoute", "namespace": "x"})
    assert permitted(grants(obj))
    assert permitted(grants(grant(kind="GRPCRoute", name="a"), grant(name="b")))


def test_grants_are_read_tolerantly() -> None:
    assert grant_of({"apiVersion": "example.io/v1", "kind": "ReferenceGrant"}) is None
    junk = {
        "apiVersion": f"{GW}/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "j", "namespace": "o"},
    }
    parsed = grant_of({**junk, "spec": {"from": "x", "to": [{"group": 1, "kind": "Service"}]}})
    assert parsed is not None and parsed.sources == () and parsed.targets == (GrantTo("", "Service"),)
    assert ReferenceGrants.from_objects([junk, "nonsense", service("web")]).by_namespace.keys() == {"o"}
    assert grant_of(store(grant())[0]) is not None
    assert GrantFrom(GW, "HTTPRoute", "default") in grant_of(store(grant())[0]).sources  # type: ignore[union-attr]


# --- translation and status agree ----------------------------------------------------------------


def http_route(rule: JSON, *, kind: str = "HTTPRoute") -> JSON:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": kind,
        "metadata": {"name": "r", "namespace": "default", "creationTimestamp": T0, "generation": 1},
        "spec": {"parentRefs": [PARENT], "rules": [rule]},
    }


CROSS = {"backendRefs": [{"name": "web-v1", "namespace": "other", "port": 80, "weight": 3}]}


def cluster(*extra: JSON) -> list[JSON]:
    return [service("web"), service("web-v1", "other", cluster_ip="10.96.1.11"), *extra]


def translated_rule(*objects: JSON) -> tuple[Any, tuple[str, ...]]:
    result = run(*objects)
    (value,) = result.routes.values()
    return value.rules[0], result.warnings


def resolved_refs(route: JSON, *objects: JSON) -> tuple[str, str, str]:
    objs = store(*objects)
    (obj,) = store(route)
    status = route_status(
        obj, services_from_objects(objs), None, now=T0, grants=ReferenceGrants.from_objects(objs)
    )
    (refs,) = [c for c in status["parents"][0]["conditions"] if c["type"] == "ResolvedRefs"]
    return refs["status"], refs["reason"], refs["message"]


def test_without_a_grant_the_share_answers_500_and_the_ref_is_not_permitted() -> None:
    rule, warnings = translated_rule(*cluster(), http_route(CROSS))
    assert (rule.backends, rule.invalid_weight) == ((), 3)
    assert any("no ReferenceGrant in other permits HTTPRoutes of default" in w for w in warnings), warnings
    status, reason, message = resolved_refs(http_route(CROSS), *cluster())
    assert (status, reason) == ("False", "RefNotPermitted")
    assert "no ReferenceGrant in other" in message


def test_with_a_grant_the_backend_is_used_and_resolved() -> None:
    rule, warnings = translated_rule(*cluster(grant()), http_route(CROSS))
    assert (rule.backends, rule.invalid_weight, warnings) == ((BackendRef(OTHER_V1, 80, 3),), 0, ())
    assert resolved_refs(http_route(CROSS), *cluster(grant())) == (
        "True",
        "ResolvedRefs",
        "All references resolved",
    )


def test_a_grant_for_another_kind_does_not_help() -> None:
    rule, _ = translated_rule(*cluster(grant(kind="GRPCRoute")), http_route(CROSS))
    assert rule.invalid_weight == 3
    assert resolved_refs(http_route(CROSS), *cluster(grant(kind="GRPCRoute")))[:2] == (
        "False",
        "RefNotPermitted",
    )
    grpc = http_route(CROSS, kind="GRPCRoute")
    rule, _ = translated_rule(*cluster(grant(kind="GRPCRoute")), grpc)
    assert rule.backends == (BackendRef(OTHER_V1, 80, 3),)
    assert resolved_refs(grpc, *cluster(grant(kind="GRPCRoute")))[:2] == ("True", "ResolvedRefs")


def test_a_granted_backend_must_still_exist() -> None:
    gone = {"backendRefs": [{"name": "gone", "namespace": "other", "port": 80}]}
    rule, _ = translated_rule(*cluster(grant()), http_route(gone))
    assert rule.invalid_weight == 1
    assert resolved_refs(http_route(gone), *cluster(grant()))[:2] == ("False", "BackendNotFound")


def test_a_mirror_to_another_namespace_follows_the_same_rule() -> None:
    rule_spec = {
        "backendRefs": [{"name": "web", "port": 80}],
        "filters": [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": "web-v1", "namespace": "other", "port": 80}},
            }
        ],
    }
    rule, warnings = translated_rule(*cluster(), http_route(rule_spec))
    assert rule.mirrors == () and any("that mirror is left out" in w for w in warnings)
    assert resolved_refs(http_route(rule_spec), *cluster())[:2] == ("False", "RefNotPermitted")
    rule, warnings = translated_rule(*cluster(grant()), http_route(rule_spec))
    assert (rule.mirrors, warnings) == ((MirrorFilter(BackendRef(OTHER_V1, 80)),), ())
    assert resolved_refs(http_route(rule_spec), *cluster(grant()))[:2] == ("True", "ResolvedRefs")


def test_a_tcp_route_to_another_namespace() -> None:
    tcp = http_route(CROSS, kind="TCPRoute")
    tcp["apiVersion"] = f"{GW}/v1alpha2"
    tcp["spec"]["parentRefs"] = [{**PARENT, "port": 80}]
    rule, _ = translated_rule(*cluster(), tcp)
    assert rule.invalid_weight == 3
    rule, _ = translated_rule(*cluster(grant(kind="TCPRoute")), tcp)
    assert rule.backends == (BackendRef(OTHER_V1, 80, 3),)


def test_the_status_depends_on_the_namespaces_the_backends_name() -> None:
    rule_spec = {
        **CROSS,
        "filters": [
            {
                "type": "RequestMirror",
                "requestMirror": {"backendRef": {"name": "m", "namespace": "x", "port": 80}},
            }
        ],
    }
    assert backend_namespaces(store(http_route(rule_spec))[0]) == {"default", "other", "x"}
    assert backend_namespaces(store(http_route({"backendRefs": [{"name": "web", "port": 80}]}))[0]) == {
        "default"
    }
