"""Node authorization: which workload identities a ztunnel's node credential may obtain."""

from __future__ import annotations

import inspect

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ambit.identity.node_auth import authorize_certificate_request
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement

TD = "cluster.local"
NODE_1 = NodeIdentity(TD, "node-1")
NODE_2 = NodeIdentity(TD, "node-2")
PRODUCTPAGE = Identity(TD, "default", "bookinfo-productpage")


def pod(name: str, sa: str, node: str, phase: str = "Running", ns: str = "default") -> PodPlacement:
    return PodPlacement(
        namespace=ns, name=name, uid=f"uid-{name}", service_account=sa, node=node, phase=phase
    )


PODS = [
    pod("productpage-1", "bookinfo-productpage", "node-1"),
    pod("reviews-1", "bookinfo-reviews", "node-2"),
    pod("job-1", "batch", "node-1", phase="Succeeded"),
    pod("crashed-1", "flaky", "node-1", phase="Failed"),
    pod("starting-1", "starter", "node-1", phase="Pending"),
    pod("lost-1", "lost", "node-1", phase="Unknown"),
    pod("other-ns", "bookinfo-productpage", "node-2", ns="staging"),
]


@pytest.mark.parametrize(
    ("caller", "requested", "allowed", "reason"),
    [
        (NODE_1, PRODUCTPAGE, True, "pod default/productpage-1 (uid uid-productpage-1, Running)"),
        (NODE_1, Identity(TD, "default", "starter"), True, "starting-1"),
        (NODE_1, Identity(TD, "default", "lost"), True, "lost-1"),
        (
            NODE_2,
            PRODUCTPAGE,
            False,
            "no pod with service account default/bookinfo-productpage is scheduled on node node-2",
        ),
        (
            NODE_1,
            Identity(TD, "default", "bookinfo-reviews"),
            False,
            "no pod with service account default/bookinfo-reviews is scheduled on node node-1",
        ),
        (NODE_2, Identity(TD, "staging", "bookinfo-productpage"), True, "staging/other-ns"),
        (NODE_1, Identity(TD, "staging", "bookinfo-productpage"), False, "staging/bookinfo-productpage"),
        (NODE_1, Identity(TD, "default", "batch"), False, "only terminated ones: default/job-1 (Succeeded)"),
        (NODE_1, Identity(TD, "default", "flaky"), False, "only terminated ones: default/crashed-1 (Failed)"),
        (None, PRODUCTPAGE, False, "no verified node credential"),
        (PRODUCTPAGE, PRODUCTPAGE, False, "is a workload identity; only node identities"),
        (
            NodeIdentity("evil.org", "node-1"),
            PRODUCTPAGE,
            False,
            "caller spiffe://evil.org/node/node-1 is not in",
        ),
        (
            NODE_1,
            Identity("evil.org", "default", "bookinfo-productpage"),
            False,
            "requested spiffe://evil.org",
        ),
        (NODE_1, NODE_1, False, "the CA service never issues node identities"),
        (NODE_1, NODE_2, False, "the CA service never issues node identities"),
    ],
)
def test_node_authorization_table(
    caller: Identity | NodeIdentity | None,
    requested: Identity | NodeIdentity,
    allowed: bool,
    reason: str,
) -> None:
    decision = authorize_certificate_request(caller, requested, PODS, trust_domain=TD)
    assert decision.allowed is allowed
    assert reason in decision.reason


def test_no_pods_at_all_denies() -> None:
    decision = authorize_certificate_request(NODE_1, PRODUCTPAGE, [], trust_domain=TD)
    assert not decision.allowed


def test_running_pod_wins_over_terminated_ones_on_the_same_node() -> None:
    pods = [pod("old", "web", "node-1", phase="Failed"), pod("new", "web", "node-1")]
    decision = authorize_certificate_request(NODE_1, Identity(TD, "default", "web"), pods, trust_domain=TD)
    assert decision.allowed and "default/new" in decision.reason


def test_pods_may_be_any_iterable_consumed_once() -> None:
    decision = authorize_certificate_request(NODE_1, PRODUCTPAGE, iter(PODS), trust_domain=TD)
    assert decision.allowed


def test_no_parameter_can_carry_a_caller_from_the_request() -> None:
    """The caller is a positional value from the verified certificate; nothing else names a node."""
    params = inspect.signature(authorize_certificate_request).parameters
    assert list(params) == ["caller", "requested", "pods", "trust_domain"]


names = st.sampled_from(["a", "b", "c"])


@given(
    caller_node=names,
    ns=names,
    sa=names,
    placements=st.lists(
        st.tuples(
            names, names, names, st.sampled_from(["Pending", "Running", "Succeeded", "Failed", "Unknown"])
        ),
        max_size=8,
    ),
)
def test_allowed_exactly_when_a_live_matching_pod_is_on_the_callers_node(
    caller_node: str, ns: str, sa: str, placements: list[tuple[str, str, str, str]]
) -> None:
    pods = [
        PodPlacement(namespace=p_ns, name=f"p{i}", uid=str(i), service_account=p_sa, node=p_node, phase=phase)
        for i, (p_ns, p_sa, p_node, phase) in enumerate(placements)
    ]
    decision = authorize_certificate_request(
        NodeIdentity(TD, caller_node), Identity(TD, ns, sa), pods, trust_domain=TD
    )
    expected = any(
        p.node == caller_node and p.namespace == ns and p.service_account == sa and not p.terminated
        for p in pods
    )
    assert decision.allowed is expected
    assert decision.reason
