"""PodDisruptionBudget rules (``ambit.resources.disruption``): budgets, status, the Eviction decision."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.resources.disruption import (
    MULTIPLE_PDBS_MESSAGE,
    VIOLATION_MESSAGE,
    EvictionDecision,
    evaluate_eviction,
    next_recheck,
    pdb_status,
    pdbs_for_pod,
)

NS = "shop"
NOW = "2025-01-01T00:00:00Z"
JSON = dict[str, Any]


def at(seconds: int) -> str:
    """NOW plus ``seconds`` (under an hour), RFC3339."""
    minutes, secs = divmod(seconds, 60)
    return f"2025-01-01T00:{minutes:02d}:{secs:02d}Z"


def pod(
    name: str,
    *,
    ready: bool = True,
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    namespace: str = NS,
    terminating: bool = False,
    owner: str | None = "web-rs",
) -> JSON:
    meta: JSON = {
        "name": name,
        "namespace": namespace,
        "labels": {"app": "web"} if labels is None else labels,
    }
    if terminating:
        meta["deletionTimestamp"] = NOW
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner,
                "uid": f"uid-{owner}",
                "controller": True,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def pdb(
    name: str = "web",
    *,
    min_available: int | str | None = None,
    max_unavailable: int | str | None = None,
    selector: JSON | None = None,
    no_selector: bool = False,
    policy: str | None = None,
    generation: int = 1,
    status: JSON | None = None,
    namespace: str = NS,
) -> JSON:
    spec: JSON = {}
    if not no_selector:
        spec["selector"] = {"matchLabels": {"app": "web"}} if selector is None else selector
    if min_available is not None:
        spec["minAvailable"] = min_available
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    if policy is not None:
        spec["unhealthyPodEvictionPolicy"] = policy
    obj: JSON = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace, "generation": generation},
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def three_replicas(_pod: JSON) -> int:
    """The web Deployment's desired replicas (the caller resolved ReplicaSet -> Deployment)."""
    return 3


def web(n: int = 3) -> list[JSON]:
    return [pod(f"web-{i}") for i in range(n)]


def numbers(status: JSON) -> tuple[int, int, int, int]:
    return (
        status["expectedPods"],
        status["currentHealthy"],
        status["desiredHealthy"],
        status["disruptionsAllowed"],
    )


def allowed_condition(status: JSON) -> JSON:
    [cond] = [c for c in status["conditions"] if c["type"] == "DisruptionAllowed"]
    return cond


# --- which budgets cover a pod ------------------------------------------------------------------


def test_pdbs_for_pod_same_namespace_and_matching_selector() -> None:
    mine = pdb("mine")
    other_labels = pdb("other", selector={"matchLabels": {"app": "db"}})
    other_namespace = pdb("elsewhere", namespace="other")
    assert pdbs_for_pod(pod("web-0"), [mine, other_labels, other_namespace]) == [mine]


def test_nil_selector_matches_nothing_and_empty_selector_matches_the_namespace() -> None:
    nil, everything = pdb("nil", no_selector=True), pdb("all", selector={})
    assert pdbs_for_pod(pod("web-0", labels={}), [nil, everything]) == [everything]
    assert pdbs_for_pod(pod("x", labels={"any": "thing"}), [nil, everything]) == [everything]
    assert pdbs_for_pod(pod("x", namespace="other"), [nil, everything]) == []


def test_match_expressions_and_an_invalid_selector() -> None:
    expr = pdb("expr", selector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["web"]}]})
    bad = pdb("bad", selector={"matchExpressions": [{"key": "app", "operator": "Near"}]})
    assert pdbs_for_pod(pod("web-0"), [expr, bad]) == [expr]
    assert pdbs_for_pod(pod("db-0", labels={"app": "db"}), [expr, bad]) == []


def test_a_pod_without_namespace_is_in_default() -> None:
    budget = pdb(namespace="default")
    bare = pod("web-0")
    del bare["metadata"]["namespace"]
    assert pdbs_for_pod(bare, [budget]) == [budget]


# --- status: the budget -------------------------------------------------------------------------


def test_min_available_integer_counts_selected_pods() -> None:
    pods = [*web(3), pod("web-3", ready=False), pod("db-0", labels={"app": "db"})]
    status = pdb_status(pdb(min_available=2), pods, expected_scale=None, now=NOW)
    assert numbers(status) == (4, 3, 2, 1)
    assert status["observedGeneration"] == 1
    assert "disruptedPods" not in status
    assert allowed_condition(status) == {
        "type": "DisruptionAllowed",
        "status": "True",
        "observedGeneration": 1,
        "lastTransitionTime": NOW,
        "reason": "SufficientPods",
        "message": "",
    }


def test_min_available_equal_to_healthy_allows_nothing() -> None:
    status = pdb_status(pdb(min_available=3), web(3), expected_scale=None, now=NOW)
    assert numbers(status) == (3, 3, 3, 0)
    cond = allowed_condition(status)
    assert (cond["status"], cond["reason"]) == ("False", "InsufficientPods")


@pytest.mark.parametrize(
    ("min_available", "desired", "allowed"),
    [("50%", 2, 1), ("34%", 2, 1), ("33%", 1, 2), ("100%", 3, 0), ("0%", 0, 3)],
)
def test_min_available_percent_rounds_up_against_the_controllers_scale(
    min_available: str, desired: int, allowed: int
) -> None:
    status = pdb_status(pdb(min_available=min_available), web(3), expected_scale=three_replicas, now=NOW)
    assert numbers(status) == (3, 3, desired, allowed)


def test_min_available_percent_uses_scale_not_pod_count() -> None:
    # two of the Deployment's three pods exist: 50% of 3 (not of 2) is 2
    status = pdb_status(pdb(min_available="50%"), web(2), expected_scale=three_replicas, now=NOW)
    assert numbers(status) == (3, 2, 2, 0)


@pytest.mark.parametrize(
    ("max_unavailable", "ready", "expected"),
    [
        (1, 3, (3, 3, 2, 1)),
        (1, 2, (3, 2, 2, 0)),
        (0, 3, (3, 3, 3, 0)),
        (5, 3, (3, 3, 0, 3)),
        ("50%", 3, (3, 3, 1, 2)),  # ceil(1.5) = 2 unavailable
        ("34%", 3, (3, 3, 1, 2)),  # ceil(1.02) = 2 unavailable
        ("33%", 3, (3, 3, 2, 1)),  # ceil(0.99) = 1 unavailable
    ],
)
def test_max_unavailable_with_a_three_replica_deployment(
    max_unavailable: int | str, ready: int, expected: tuple[int, int, int, int]
) -> None:
    pods = [pod(f"web-{i}", ready=i < ready) for i in range(3)]
    status = pdb_status(pdb(max_unavailable=max_unavailable), pods, expected_scale=three_replicas, now=NOW)
    assert numbers(status) == expected


def test_expected_scale_counts_each_controller_once_and_skips_unmanaged_pods() -> None:
    calls: list[str] = []

    def scale(p: JSON) -> int:
        calls.append(p["metadata"]["name"])
        return {"uid-web-rs": 3, "uid-api-rs": 2}[p["metadata"]["ownerReferences"][0]["uid"]]

    pods = [*web(3), pod("api-0", owner="api-rs"), pod("api-1", owner="api-rs"), pod("lonely", owner=None)]
    status = pdb_status(pdb(max_unavailable=1, selector={}), pods, expected_scale=scale, now=NOW)
    # expected 3 + 2 (the unmanaged pod is not expected, but it is healthy)
    assert numbers(status) == (5, 6, 4, 2)
    assert calls == ["web-0", "api-0"]


def test_unknown_controller_is_the_fail_safe_status() -> None:
    previous = {
        "observedGeneration": 1,
        "disruptionsAllowed": 1,
        "currentHealthy": 3,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": NOW,
                "reason": "SufficientPods",
                "message": "",
            }
        ],
    }
    budget = pdb(max_unavailable=1, generation=2, status=previous)
    status = pdb_status(budget, web(3), expected_scale=lambda _p: None, now=at(30))
    assert numbers(status) == (3, 3, 2, 0)
    assert status["observedGeneration"] == 1  # not processed: the generation stays behind
    assert allowed_condition(status) == {
        "type": "DisruptionAllowed",
        "status": "False",
        "observedGeneration": 1,
        "lastTransitionTime": at(30),
        "reason": "SyncFailed",
        "message": 'found no controllers for pod "web-0"',
    }
    # no resolver at all is the same failure
    assert pdb_status(budget, web(3), expected_scale=None, now=at(30)) == status


def test_invalid_percentage_is_the_fail_safe_status() -> None:
    status = pdb_status(pdb(min_available="half"), web(3), expected_scale=three_replicas, now=NOW)
    assert status["disruptionsAllowed"] == 0
    assert status["observedGeneration"] == 0
    assert allowed_condition(status)["reason"] == "SyncFailed"


def test_neither_field_and_no_pods_allow_nothing() -> None:
    assert numbers(pdb_status(pdb(), web(3), expected_scale=None, now=NOW)) == (0, 3, 0, 0)
    assert numbers(pdb_status(pdb(min_available=0), [], expected_scale=None, now=NOW)) == (0, 0, 0, 0)


def test_unready_and_terminating_pods_are_not_healthy() -> None:
    pods = [
        pod("web-0"),
        pod("web-1", ready=False),
        pod("web-2", terminating=True),
        pod("web-3", phase="Pending", ready=False),
    ]
    status = pdb_status(pdb(min_available=1), pods, expected_scale=None, now=NOW)
    assert numbers(status) == (4, 1, 1, 0)


# --- status: disruptedPods ----------------------------------------------------------------------


def test_disrupted_pods_count_as_unhealthy_until_they_expire() -> None:
    budget = pdb(min_available=1, status={"disruptedPods": {"web-0": NOW}})
    before = pdb_status(budget, web(3), expected_scale=None, now=at(119))
    assert before["disruptedPods"] == {"web-0": NOW}
    assert numbers(before) == (3, 2, 1, 1)
    expired = pdb_status(budget, web(3), expected_scale=None, now=at(120))
    assert "disruptedPods" not in expired
    assert numbers(expired) == (3, 3, 1, 2)


def test_disrupted_entries_of_deleted_or_terminating_pods_are_dropped() -> None:
    budget = pdb(
        min_available=1,
        status={"disruptedPods": {"web-0": NOW, "web-1": NOW, "gone": NOW, "web-2": "garbage"}},
    )
    pods = [pod("web-0", terminating=True), pod("web-1"), pod("web-2"), pod("web-3")]
    status = pdb_status(budget, pods, expected_scale=None, now=at(10))
    # web-0 is being deleted, "gone" no longer exists; an unreadable time restarts at now
    assert status["disruptedPods"] == {"web-1": NOW, "web-2": at(10)}
    assert numbers(status) == (4, 1, 1, 0)
    assert next_recheck(status) == at(120)


def test_next_recheck_without_disruptions() -> None:
    assert next_recheck({}) is None
    assert next_recheck({"disruptedPods": {"a": at(30), "b": NOW}}) == at(120)


# --- status: no churn ---------------------------------------------------------------------------


def test_same_inputs_same_status_and_a_written_status_is_a_fixed_point() -> None:
    budget = pdb(min_available=2, status={"disruptedPods": {"web-0": NOW}})
    pods = web(4)
    first = pdb_status(budget, pods, expected_scale=None, now=at(5))
    assert pdb_status(budget, pods, expected_scale=None, now=at(5)) == first
    written = {**budget, "status": first}
    assert pdb_status(written, pods, expected_scale=None, now=at(60)) == first
    assert allowed_condition(first)["lastTransitionTime"] == at(5)


def test_condition_moves_its_transition_time_only_when_its_status_changes() -> None:
    pods = web(3)
    first = pdb_status(pdb(min_available=1), pods, expected_scale=None, now=NOW)
    # reason unchanged (still sufficient) at a later time: same transition time
    more = pdb_status(pdb(min_available=2, status=first), pods, expected_scale=None, now=at(30))
    assert allowed_condition(more)["lastTransitionTime"] == NOW
    # now insufficient: the transition time is the moment of the change
    fewer = pdb_status(pdb(min_available=3, status=more), pods, expected_scale=None, now=at(40))
    assert (allowed_condition(fewer)["status"], allowed_condition(fewer)["lastTransitionTime"]) == (
        "False",
        at(40),
    )


def test_other_conditions_are_kept() -> None:
    other = {"type": "Custom", "status": "True", "lastTransitionTime": NOW, "reason": "X", "message": ""}
    status = pdb_status(
        pdb(min_available=1, status={"conditions": [other]}), web(2), expected_scale=None, now=at(9)
    )
    assert status["conditions"][0] == other
    assert [c["type"] for c in status["conditions"]] == ["Custom", "DisruptionAllowed"]


def test_now_must_be_rfc3339() -> None:
    with pytest.raises(ValueError, match="RFC3339"):
        pdb_status(pdb(min_available=1), web(1), expected_scale=None, now="yesterday")


# --- eviction -----------------------------------------------------------------------------------


def assert_allowed(decision: EvictionDecision, pdb_name: str | None, *, spends_budget: bool) -> None:
    assert decision.allowed
    assert decision.status_code == 201
    assert decision.pdb == pdb_name
    assert (decision.updated_pdb_status is not None) == spends_budget
    assert decision.pod_condition is not None
    assert decision.pod_condition["type"] == "DisruptionTarget"


def test_no_pdb_allows_the_eviction() -> None:
    target = pod("web-0")
    decision = evaluate_eviction(
        target, [pdb("db", selector={"matchLabels": {"app": "db"}})], [target], expected_scale=None, now=NOW
    )
    assert_allowed(decision, None, spends_budget=False)
    assert decision.pod_condition == {
        "type": "DisruptionTarget",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": NOW,
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
    }
    assert decision.status_body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "code": 201,
    }


@pytest.mark.parametrize(
    "target",
    [
        pod("web-0", terminating=True),
        pod("web-0", phase="Pending", ready=False),
        pod("web-0", phase="Succeeded", ready=False),
        pod("web-0", phase="Failed", ready=False),
    ],
    ids=["terminating", "pending", "succeeded", "failed"],
)
def test_terminating_pending_and_finished_pods_skip_the_budgets(target: JSON) -> None:
    blocking = [pdb("a", min_available="100%"), pdb("b", min_available=3)]  # even two budgets
    decision = evaluate_eviction(
        target, blocking, [target, *web(3)[1:]], expected_scale=three_replicas, now=NOW
    )
    assert_allowed(decision, None, spends_budget=False)


def test_more_than_one_pdb_is_a_500() -> None:
    pods = web(3)
    decision = evaluate_eviction(
        pods[0], [pdb("a", min_available=1), pdb("b", min_available=1)], pods, expected_scale=None, now=NOW
    )
    assert (decision.allowed, decision.status_code, decision.pdb) == (False, 500, None)
    assert decision.message == MULTIPLE_PDBS_MESSAGE
    assert decision.updated_pdb_status is None
    assert decision.status_body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": (
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        ),
        "code": 500,
    }


def test_allowed_eviction_spends_the_budget_and_records_the_pod() -> None:
    pods = web(3)
    decision = evaluate_eviction(pods[1], [pdb(min_available=2)], pods, expected_scale=None, now=at(7))
    assert_allowed(decision, "web", spends_budget=True)
    assert decision.updated_pdb_status == {
        "observedGeneration": 1,
        "disruptedPods": {"web-1": at(7)},
        "disruptionsAllowed": 0,
        "currentHealthy": 3,
        "desiredHealthy": 2,
        "expectedPods": 3,
        "conditions": [
            {
                "type": "DisruptionAllowed",
                "status": "False",
                "observedGeneration": 1,
                "lastTransitionTime": at(7),
                "reason": "InsufficientPods",
                "message": "",
            }
        ],
    }


def test_allowed_eviction_with_budget_left_keeps_the_condition_true() -> None:
    pods = web(3)
    decision = evaluate_eviction(pods[0], [pdb(min_available=1)], pods, expected_scale=None, now=NOW)
    status = decision.updated_pdb_status
    assert status is not None
    assert (status["disruptionsAllowed"], allowed_condition(status)["reason"]) == (1, "SufficientPods")


def test_no_disruption_allowed_is_a_429_naming_the_budget() -> None:
    pods = web(3)
    decision = evaluate_eviction(pods[0], [pdb(min_available=3)], pods, expected_scale=None, now=NOW)
    assert (decision.allowed, decision.status_code, decision.pdb) == (False, 429, "web")
    assert decision.message == VIOLATION_MESSAGE
    assert decision.updated_pdb_status is None
    assert decision.pod_condition is None
    assert decision.causes == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
        }
    ]
    assert decision.status_body() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Cannot evict pod as it would violate the pod's disruption budget.",
        "reason": "TooManyRequests",
        "details": {
            "causes": [
                {
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 3 healthy pods and has 3 currently",
                }
            ]
        },
        "code": 429,
    }


def apply(
    decision: EvictionDecision, budget: JSON, pods: list[JSON], *, mark_deleted: bool
) -> tuple[JSON, list[JSON]]:
    """What the store does with an allowed eviction: write the budget's status, (maybe) mark the pod."""
    assert decision.updated_pdb_status is not None
    budget = {**budget, "status": decision.updated_pdb_status}
    if mark_deleted:
        evicted = next(iter(decision.updated_pdb_status["disruptedPods"]))
        pods = [pod(p["metadata"]["name"], terminating=p["metadata"]["name"] == evicted) for p in pods]
    return budget, pods


@pytest.mark.parametrize("mark_deleted", [True, False], ids=["pod-terminating", "deletion-not-seen-yet"])
def test_two_evictions_in_a_row_against_replicas_minus_one(mark_deleted: bool) -> None:
    budget, pods = pdb(min_available=2), web(3)
    first = evaluate_eviction(pods[0], [budget], pods, expected_scale=None, now=NOW)
    assert_allowed(first, "web", spends_budget=True)
    budget, pods = apply(first, budget, pods, mark_deleted=mark_deleted)

    second = evaluate_eviction(pods[1], [budget], pods, expected_scale=None, now=at(1))
    assert (second.allowed, second.status_code, second.pdb) == (False, 429, "web")
    assert second.causes == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
        }
    ]


def test_max_unavailable_one_with_three_replicas_allows_one_eviction() -> None:
    budget, pods = pdb(max_unavailable=1), web(3)
    first = evaluate_eviction(pods[2], [budget], pods, expected_scale=three_replicas, now=NOW)
    assert_allowed(first, "web", spends_budget=True)
    budget, pods = apply(first, budget, pods, mark_deleted=False)
    second = evaluate_eviction(pods[0], [budget], pods, expected_scale=three_replicas, now=at(2))
    assert (second.status_code, second.causes[0]["message"]) == (
        429,
        "The disruption budget web needs 2 healthy pods and has 2 currently",
    )
    # two minutes later the first eviction was never carried out: the budget is back
    third = evaluate_eviction(pods[0], [budget], pods, expected_scale=three_replicas, now=at(120))
    assert_allowed(third, "web", spends_budget=True)


def test_unready_pod_if_healthy_budget_goes_when_the_budget_is_met() -> None:
    pods = [*web(3), pod("web-3", ready=False)]
    for policy in (None, "IfHealthyBudget", "SomethingNew"):
        decision = evaluate_eviction(
            pods[3], [pdb(min_available=3, policy=policy)], pods, expected_scale=None, now=NOW
        )
        assert_allowed(decision, "web", spends_budget=False)


def test_unready_pod_if_healthy_budget_stays_when_the_budget_is_not_met() -> None:
    pods = [*web(2), pod("web-2", ready=False)]
    decision = evaluate_eviction(pods[2], [pdb(min_available=3)], pods, expected_scale=None, now=NOW)
    assert (decision.allowed, decision.status_code, decision.pdb) == (False, 429, "web")
    assert (
        decision.causes[0]["message"] == "The disruption budget web needs 3 healthy pods and has 2 currently"
    )


def test_unready_pod_always_allow_goes_even_below_the_budget() -> None:
    pods = [*web(2), pod("web-2", ready=False)]
    decision = evaluate_eviction(
        pods[2], [pdb(min_available=3, policy="AlwaysAllow")], pods, expected_scale=None, now=NOW
    )
    assert_allowed(decision, "web", spends_budget=False)


def test_unready_pod_with_a_zero_desired_budget_spends_a_disruption() -> None:
    # IfHealthyBudget needs desiredHealthy > 0; with 0 the eviction goes through checkAndDecrement
    pods = [*web(2), pod("web-2", ready=False)]
    decision = evaluate_eviction(pods[2], [pdb(min_available=0)], pods, expected_scale=None, now=NOW)
    assert_allowed(decision, "web", spends_budget=True)
    assert decision.updated_pdb_status is not None
    assert decision.updated_pdb_status["disruptionsAllowed"] == 1


def test_unprocessed_generation_is_a_429_still_being_processed() -> None:
    # the budget cannot be computed (unknown controller) and was last computed for generation 1
    budget = pdb(max_unavailable=1, generation=2, status={"observedGeneration": 1, "disruptionsAllowed": 1})
    pods = web(3)
    decision = evaluate_eviction(pods[0], [budget], pods, expected_scale=lambda _p: None, now=NOW)
    assert (decision.allowed, decision.status_code, decision.pdb) == (False, 429, "web")
    assert decision.message == VIOLATION_MESSAGE
    assert decision.details == {
        "causes": [
            {
                "reason": "DisruptionBudget",
                "message": "The disruption budget web is still being processed by the server.",
            }
        ],
        "retryAfterSeconds": 10,
    }


def test_a_fresh_status_is_never_behind_its_generation() -> None:
    # the stored status is stale, but the eviction computes it fresh
    budget = pdb(min_available=1, generation=5, status={"observedGeneration": 1, "disruptionsAllowed": 0})
    pods = web(3)
    decision = evaluate_eviction(pods[0], [budget], pods, expected_scale=None, now=NOW)
    assert_allowed(decision, "web", spends_budget=True)
    assert decision.updated_pdb_status is not None
    assert decision.updated_pdb_status["observedGeneration"] == 5


def test_too_many_unconfirmed_evictions_is_a_403() -> None:
    pods = [pod(f"web-{i}") for i in range(2010)]
    disrupted = {f"web-{i}": NOW for i in range(1, 2002)}
    budget = pdb(min_available=1, status={"disruptedPods": disrupted})
    decision = evaluate_eviction(pods[0], [budget], pods, expected_scale=None, now=at(1))
    assert (decision.allowed, decision.status_code, decision.pdb, decision.reason) == (
        False,
        403,
        "web",
        "Forbidden",
    )
    assert decision.message == (
        'poddisruptionbudget.policy "web" is forbidden: '
        "DisruptedPods map too big - too many evictions not confirmed by PDB controller"
    )


def test_existing_disruption_target_condition_keeps_its_transition_time() -> None:
    target = pod("web-0")
    target["status"]["conditions"].append(
        {
            "type": "DisruptionTarget",
            "status": "True",
            "lastTransitionTime": NOW,
            "reason": "PreemptionByScheduler",
        }
    )
    decision = evaluate_eviction(target, [], [target], expected_scale=None, now=at(50))
    assert decision.pod_condition is not None
    assert decision.pod_condition["lastTransitionTime"] == NOW
    assert decision.pod_condition["reason"] == "EvictionByEvictionAPI"
