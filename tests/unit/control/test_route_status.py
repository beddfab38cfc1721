"""A GAMMA route's status.parents: each condition and reason, agreement with translation, determinism."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from translate_builders import JSON, run, service, store

from ambit.control.route_status import CONTROLLER_NAME, route_status, services_from_objects
from ambit.control.route_status_writer import WATCHED_KINDS
from ambit.model.workload import Service

T0, T1, T2 = "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z", "2026-12-07T12:00:00Z"
PARENT = {"group": "", "kind": "Service", "name": "web"}
WEB_REF = {"group": "", "kind": "Service", "name": "web", "namespace": "default"}


def route(
    parents: list[JSON] | None = None,
    backends: list[JSON] | None = None,
    *,
    kind: str = "HTTPRoute",
    ns: str = "default",
    generation: int = 1,
) -> JSON:
    obj = store(
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": "r", "namespace": ns},
            "spec": {
                "parentRefs": [PARENT] if parents is None else parents,
                "rules": [
                    {"backendRefs": [{"name": "web-v1", "port": 80}] if backends is None else backends}
                ],
            },
        }
    )[0]
    obj["metadata"]["generation"] = generation
    return obj


def service_objects(*names: str) -> list[JSON]:
    ports = [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "grpc", "port": 9090}]
    return [service("web", ports=ports), *(service(n, cluster_ip=None) for n in names)]


def services(*names: str) -> dict[str, Service]:
    return services_from_objects(store(*service_objects(*(names or ("web-v1", "web-v2")))))


def status_of(obj: JSON, svc: dict[str, Service] | None = None, *, now: str = T0) -> JSON:
    return route_status(obj, services() if svc is None else svc, obj.get("status"), now=now)


def verdicts(status: JSON, at: int = 0) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["parents"][at]["conditions"]}


def by_type(status: JSON, at: int = 0) -> dict[str, JSON]:
    return {c["type"]: c for c in status["parents"][at]["conditions"]}


# --- the entry and Accepted --------------------------------------------------------------------


def test_a_producer_route_with_a_resolved_backend_is_accepted_and_resolved() -> None:
    status = status_of(route(generation=4))
    [entry] = status["parents"]
    assert entry["parentRef"] == WEB_REF
    assert entry["controllerName"] == "istio.io/gateway-controller" == CONTROLLER_NAME
    assert entry["conditions"] == [
        {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "Route was valid",
            "observedGeneration": 4,
            "lastTransitionTime": T0,
        },
        {
            "type": "ResolvedRefs",
            "status": "True",
            "reason": "ResolvedRefs",
            "message": "All references resolved",
            "observedGeneration": 4,
            "lastTransitionTime": T0,
        },
    ]


def test_a_grpc_route_gets_the_same_status() -> None:
    assert verdicts(status_of(route(kind="GRPCRoute"))) == {
        "Accepted": ("True", "Accepted"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
    }


@pytest.mark.parametrize(
    ("parent", "reason", "message"),
    [
        ({**PARENT, "name": "nope"}, "NoMatchingParent", "no such Service"),
        ({**PARENT, "sectionName": "admin"}, "NoMatchingParent", "the Service has no port 'admin'"),
        ({**PARENT, "port": 8443}, "NoMatchingParent", "the Service has no port 8443"),
        (
            {**PARENT, "sectionName": "http", "port": 9090},
            "NoMatchingParent",
            "the Service has no port 'http'",
        ),
        (
            {**PARENT, "namespace": "other"},
            "NotAllowedByListeners",
            "consumer routes (a route in another namespace than its Service) are not supported yet",
        ),
    ],
)
def test_a_parent_that_does_not_attach_is_not_accepted(parent: JSON, reason: str, message: str) -> None:
    status = status_of(route([parent]))
    accepted = by_type(status)["Accepted"]
    assert (accepted["status"], accepted["reason"], accepted["message"]) == ("False", reason, message)
    assert by_type(status)["ResolvedRefs"]["status"] == "True", "the backends are another matter"


def test_the_parent_ref_names_section_and_port_when_given() -> None:
    status = status_of(route([{**PARENT, "sectionName": "http"}, {**PARENT, "port": 9090}]))
    assert [e["parentRef"] for e in status["parents"]] == [
        {**WEB_REF, "sectionName": "http"},
        {**WEB_REF, "port": 9090},
    ]
    assert [verdicts(status, i)["Accepted"] for i in (0, 1)] == [("True", "Accepted")] * 2


def test_equal_parent_refs_share_one_entry_and_other_parents_get_none() -> None:
    parents = [PARENT, {**PARENT, "namespace": "default"}, {"name": "ingress"}, {**PARENT, "group": "x.io"}]
    status = status_of(route(parents))
    assert [e["parentRef"] for e in status["parents"]] == [WEB_REF]


# --- ResolvedRefs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "reason", "problem"),
    [
        ({"name": "gone", "port": 80}, "BackendNotFound", "does not exist"),
        ({"name": "web-v1", "port": 81}, "BackendNotFound", "the Service has no port 81"),
        ({"name": "web-v1"}, "BackendNotFound", "has no port (a Service backend needs one)"),
        (
            {"name": "web-v1", "namespace": "other", "port": 80},
            "RefNotPermitted",
            "is in another namespace and no ReferenceGrant in other permits HTTPRoutes of default to "
            "reference it",
        ),
        (
            {"group": "example.io", "kind": "Bucket", "name": "b", "port": 80},
            "InvalidKind",
            "kind example.io/Bucket is not supported (only core Services are)",
        ),
        (
            {"kind": "ConfigMap", "name": "b", "port": 80},
            "InvalidKind",
            "kind core/ConfigMap is not supported (only core Services are)",
        ),
    ],
)
def test_an_unresolved_backend_ref(backend: JSON, reason: str, problem: str) -> None:
    status = status_of(route(backends=[{"name": "web-v2", "port": 80}, backend]))
    refs = by_type(status)["ResolvedRefs"]
    assert (refs["status"], refs["reason"]) == ("False", reason)
    assert refs["message"].startswith("rule 0 backendRef 1 (") and refs["message"].endswith(f": {problem}")
    assert verdicts(status)["Accepted"] == ("True", "Accepted"), "the parent still accepts the route"


def test_the_first_problem_gives_the_reason_and_the_message_lists_all() -> None:
    backends = [{"name": "web-v1", "namespace": "other", "port": 80}, {"name": "gone", "port": 80}]
    refs = by_type(status_of(route(backends=backends)))["ResolvedRefs"]
    assert refs["reason"] == "RefNotPermitted"
    assert refs["message"] == (
        "rule 0 backendRef 0 (Service other/web-v1): is in another namespace and no ReferenceGrant in "
        "other permits HTTPRoutes of default to reference it; rule 0 backendRef 1 (Service default/gone): "
        "does not exist"
    )


def test_a_backend_of_weight_zero_is_not_checked() -> None:
    status = status_of(
        route(backends=[{"name": "web-v1", "port": 80}, {"name": "gone", "port": 80, "weight": 0}])
    )
    assert verdicts(status)["ResolvedRefs"] == ("True", "ResolvedRefs")


@pytest.mark.parametrize(
    ("parents", "backends"),
    [
        ([PARENT], [{"name": "web-v1", "port": 80}]),
        ([{**PARENT, "name": "nope"}], [{"name": "web-v1", "port": 80}]),
        ([{**PARENT, "port": 8443}], [{"name": "gone", "port": 80}]),
        ([{**PARENT, "sectionName": "grpc"}], [{"name": "web-v1", "namespace": "other", "port": 80}]),
        ([{**PARENT, "namespace": "other"}], [{"kind": "ConfigMap", "name": "b", "port": 80}]),
        ([PARENT], [{"name": "web-v1", "port": 80}, {"name": "gone", "port": 80, "weight": 3}]),
    ],
)
def test_the_status_says_what_translation_did(parents: list[JSON], backends: list[JSON]) -> None:
    obj = route(parents, backends)
    result = run(*service_objects("web-v1", "web-v2"), obj)
    status = status_of(obj)
    accepted = verdicts(status)["Accepted"][0] == "True"
    assert accepted == bool(result.routes), "Accepted True exactly when the proxies get the route"
    if result.routes:
        [value] = result.routes.values()
        resolved = verdicts(status)["ResolvedRefs"][0] == "True"
        assert resolved == (value.rules[0].invalid_weight == 0), (
            "ResolvedRefs False exactly when a share 500s"
        )


# --- other controllers, removed parents, nothing to say -----------------------------------------


def test_other_controllers_entries_stay_where_they_are() -> None:
    foreign = {
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "ingress"},
        "controllerName": "example.io/gateway",
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
    }
    also_foreign = {**foreign, "parentRef": WEB_REF}  # a Service parent, another controller's entry
    obj = route([PARENT, {"name": "ingress"}])
    obj["status"] = {"parents": [foreign, also_foreign]}
    status = status_of(obj)
    assert status["parents"][:2] == [foreign, also_foreign]
    assert status["parents"][2]["controllerName"] == CONTROLLER_NAME
    obj["status"] = status
    assert status_of(obj, now=T1) == status, "settled"
    mine_first = {"parents": [status["parents"][2], foreign]}
    obj["status"] = mine_first
    assert status_of(obj) == mine_first, "ours keeps its place"


def test_an_entry_whose_parent_ref_is_gone_is_removed() -> None:
    obj = route([PARENT, {**PARENT, "port": 80}])
    obj["status"] = status_of(obj)
    assert len(obj["status"]["parents"]) == 2
    obj["spec"]["parentRefs"] = [{**PARENT, "port": 80}]
    status = status_of(obj, now=T1)
    assert [e["parentRef"] for e in status["parents"]] == [{**WEB_REF, "port": 80}]
    assert {c["lastTransitionTime"] for c in status["parents"][0]["conditions"]} == {T0}
    obj["spec"]["parentRefs"] = [{"name": "ingress"}]
    assert status_of(obj) == {"parents": []}, "the last one of ours goes too"


@pytest.mark.parametrize("previous", [None, {}, {"parents": []}, {"parents": [{"controllerName": "x.io/y"}]}])
def test_a_route_without_service_parents_keeps_its_status(previous: Any) -> None:
    obj = route([{"name": "ingress"}])
    assert route_status(obj, services(), previous, now=T0) == (previous or {})


def test_a_route_translation_ignores_gets_no_entry() -> None:
    obj = route()
    obj["apiVersion"] = "example.io/v1"
    assert route_status(obj, services(), None, now=T0) == {}


# --- determinism and lastTransitionTime ---------------------------------------------------------


def test_two_computations_from_the_same_input_are_equal() -> None:
    obj = route(backends=[{"name": "gone", "port": 80}])
    first, second = status_of(copy.deepcopy(obj)), status_of(copy.deepcopy(obj))
    assert first == second


def test_nothing_changed_means_the_same_status_at_any_clock() -> None:
    obj = route()
    obj["status"] = status_of(obj, now=T0)
    assert status_of(obj, now=T1) == obj["status"], "a later clock alone changes nothing"


def test_last_transition_time_moves_only_for_the_condition_that_transitioned() -> None:
    obj = route()
    obj["status"] = status_of(obj, now=T0)
    status = status_of(obj, services("web-v2"), now=T1)  # web-v1 deleted
    conditions = by_type(status)
    assert (conditions["ResolvedRefs"]["status"], conditions["ResolvedRefs"]["reason"]) == (
        "False",
        "BackendNotFound",
    )
    assert conditions["ResolvedRefs"]["lastTransitionTime"] == T1, "True → False is a transition"
    assert conditions["Accepted"]["lastTransitionTime"] == T0, "Accepted stayed True"


def test_a_new_reason_is_a_transition_and_a_new_message_is_not() -> None:
    obj = route(backends=[{"name": "web-v1", "namespace": "other", "port": 80}])
    obj["status"] = status_of(obj, now=T0)
    assert by_type(obj["status"])["ResolvedRefs"]["reason"] == "RefNotPermitted"
    obj["spec"]["rules"][0]["backendRefs"] = [{"name": "gone", "port": 80}]
    obj["status"] = status_of(obj, now=T1)
    refs = by_type(obj["status"])["ResolvedRefs"]
    assert (refs["status"], refs["reason"], refs["lastTransitionTime"]) == ("False", "BackendNotFound", T1)
    obj["spec"]["rules"][0]["backendRefs"] = [{"name": "gone", "port": 80}, {"name": "lost", "port": 80}]
    refs = by_type(status_of(obj, now=T2))["ResolvedRefs"]
    assert "lost" in refs["message"]
    assert (refs["reason"], refs["lastTransitionTime"]) == ("BackendNotFound", T1), (
        "same reason: no transition"
    )


def test_a_new_generation_is_observed_without_a_transition() -> None:
    obj = route(generation=1)
    obj["status"] = status_of(obj, now=T0)
    obj["metadata"]["generation"] = 2
    conditions = status_of(obj, now=T1)["parents"][0]["conditions"]
    assert {c["observedGeneration"] for c in conditions} == {2}
    assert {c["lastTransitionTime"] for c in conditions} == {T0}


def test_a_previous_entry_of_another_controller_does_not_lend_its_time() -> None:
    obj = route()
    foreign = status_of(obj, now=T0)["parents"][0] | {"controllerName": "x.io/y"}
    obj["status"] = {"parents": [foreign]}
    status = status_of(obj, now=T1)
    assert status["parents"][0] == foreign
    assert {c["lastTransitionTime"] for c in status["parents"][1]["conditions"]} == {T1}


# --- mirrors and TCPRoutes ---------------------------------------------------------------------


def with_mirrors(obj: JSON, *refs: JSON) -> JSON:
    obj["spec"]["rules"][0]["filters"] = [
        {"type": "RequestMirror", "requestMirror": {"backendRef": ref}} for ref in refs
    ]
    return obj


def test_a_resolved_mirror_backend() -> None:
    status = status_of(with_mirrors(route(), {"name": "web-v2", "port": 80}))
    assert verdicts(status)["ResolvedRefs"] == ("True", "ResolvedRefs")


@pytest.mark.parametrize(
    ("ref", "reason", "problem"),
    [
        ({"name": "gone", "port": 80}, "BackendNotFound", "(Service default/gone): does not exist"),
        (
            {"name": "web-v2", "port": 81},
            "BackendNotFound",
            "(Service default/web-v2): the Service has no port 81",
        ),
        ({"name": "web-v2"}, "BackendNotFound", "has no port (a Service backend needs one)"),
        ({"name": "web-v2", "namespace": "other", "port": 80}, "RefNotPermitted", "no ReferenceGrant in"),
        ({"kind": "ConfigMap", "name": "c", "port": 80}, "InvalidKind", "kind core/ConfigMap"),
    ],
)
def test_an_invalid_mirror_backend_unresolves_the_refs(ref: JSON, reason: str, problem: str) -> None:
    # the spec: "If the referent cannot be found, this BackendRef is invalid ... ResolvedRefs ... False"
    refs = by_type(status_of(with_mirrors(route(), {"name": "web-v2", "port": 80}, ref)))["ResolvedRefs"]
    assert (refs["status"], refs["reason"]) == ("False", reason)
    assert refs["message"].startswith("rule 0 RequestMirror filter 1 (") and problem in refs["message"]


def test_backend_problems_come_before_mirror_problems() -> None:
    obj = with_mirrors(
        route(backends=[{"name": "gone", "port": 80}]), {"name": "web-v2", "namespace": "x", "port": 80}
    )
    refs = by_type(status_of(obj))["ResolvedRefs"]
    assert refs["reason"] == "BackendNotFound"
    assert refs["message"] == (
        "rule 0 backendRef 0 (Service default/gone): does not exist; rule 0 RequestMirror filter 0 "
        "(Service x/web-v2): is in another namespace and no ReferenceGrant in x permits HTTPRoutes of "
        "default to reference it"
    )


def tcp_route(port: int = 9090, backends: list[JSON] | None = None) -> JSON:
    obj = store(
        {
            "apiVersion": "gateway.networking.k8s.io/v1alpha2",
            "kind": "TCPRoute",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {
                "parentRefs": [{**PARENT, "port": port}],
                "rules": [{"backendRefs": backends or [{"name": "web-v1", "port": 80}]}],
            },
        }
    )[0]
    obj["metadata"]["generation"] = 1
    return obj


def test_a_tcp_route_gets_a_status_like_an_http_route() -> None:
    status = status_of(tcp_route())
    assert status["parents"][0]["parentRef"] == {**WEB_REF, "port": 9090}
    assert verdicts(status) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs")}
    assert verdicts(status_of(tcp_route(port=1))) == {
        "Accepted": ("False", "NoMatchingParent"),
        "ResolvedRefs": ("True", "ResolvedRefs"),
    }
    assert verdicts(status_of(tcp_route(backends=[{"name": "gone", "port": 80}])))["ResolvedRefs"] == (
        "False",
        "BackendNotFound",
    )


def test_the_status_controller_watches_tcp_routes() -> None:
    assert set(WATCHED_KINDS) == {"HTTPRoute", "GRPCRoute", "TCPRoute", "Service", "ReferenceGrant"}
