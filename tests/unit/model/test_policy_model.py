"""Istio's string-match forms in the policy model."""

from __future__ import annotations

import pytest

from ambit.model.policy import Action, Authorization, MatchKind, Scope, StringMatch
from ambit.model.workload import PortMapping, Workload, service_hostname


@pytest.mark.parametrize(
    ("pattern", "kind", "value", "yes", "no"),
    [
        ("*", MatchKind.PRESENCE, "", "anything", ""),
        (
            "cluster.local/ns/default/*",
            MatchKind.PREFIX,
            "cluster.local/ns/default/",
            "cluster.local/ns/default/sa/a",
            "x",
        ),
        (
            "*/sa/sleep",
            MatchKind.SUFFIX,
            "/sa/sleep",
            "cluster.local/ns/x/sa/sleep",
            "cluster.local/ns/x/sa/curl",
        ),
        ("default", MatchKind.EXACT, "default", "default", "defaults"),
    ],
)
def test_string_match_forms(pattern: str, kind: MatchKind, value: str, yes: str, no: str) -> None:
    m = StringMatch.parse(pattern)
    assert (m.kind, m.value) == (kind, value)
    assert m.matches(yes)
    assert not m.matches(no)
    assert not m.matches(None), "an absent value (plaintext peer) never matches"


def test_keys_and_identity() -> None:
    policy = Authorization("deny-curl", "default", Scope.NAMESPACE, Action.DENY, ())
    assert policy.key == "default/deny-curl"
    wl = Workload(
        uid="u1",
        name="p",
        namespace="default",
        service_account="bookinfo-productpage",
        node="node-1",
        addresses=("10.244.1.2",),
        services=(("default/productpage.default.svc.cluster.local", (PortMapping(9080, 9080),)),),
    )
    assert str(wl.identity) == "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    assert wl.ports_for("default/productpage.default.svc.cluster.local") == (PortMapping(9080, 9080),)
    assert wl.ports_for("default/other") == ()
    assert service_hostname("reviews", "default") == "reviews.default.svc.cluster.local"
