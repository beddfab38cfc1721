"""The L7 policy values: keys, target kinds, and their JSON view (config dumps, debug pages)."""

from __future__ import annotations

import pytest

from ambit.model.jsonable import from_jsonable, jsonable
from ambit.model.policy import (
    GATEWAY_TARGET,
    SERVICE_TARGET,
    Action,
    HeaderMatch,
    L7Authorization,
    L7Clause,
    L7Match,
    L7Rule,
    PolicyTarget,
    StringMatch,
)
from ambit.model.version import content_version

POLICY = L7Authorization(
    name="allow-get",
    namespace="shop",
    action=Action.ALLOW,
    targets=(PolicyTarget(GATEWAY_TARGET, "shop", "waypoint"), PolicyTarget(SERVICE_TARGET, "shop", "web")),
    rules=(
        L7Rule(
            (
                L7Clause(
                    (L7Match(methods=(StringMatch.parse("GET"),), paths=(StringMatch.parse("/api/*"),)),)
                ),
                L7Clause((L7Match(not_headers=(HeaderMatch("x-debug", (StringMatch.parse("*"),)),)),)),
            )
        ),
    ),
    dry_run=True,
)


def test_key() -> None:
    assert POLICY.key == "shop/allow-get"


@pytest.mark.parametrize("kind", ["Gateway", "Service"])
def test_target_kinds(kind: str) -> None:
    assert PolicyTarget(kind, "ns", "n").kind == kind


@pytest.mark.parametrize("kind", ["", "gateway", "ServiceEntry", "GatewayClass"])
def test_other_target_kinds_are_refused(kind: str) -> None:
    with pytest.raises(ValueError, match="policy target kind"):
        PolicyTarget(kind, "ns", "n")


def test_json_view_round_trips() -> None:
    assert from_jsonable(L7Authorization, jsonable(POLICY)) == POLICY


def test_content_version_changes_with_content() -> None:
    other = L7Authorization("allow-get", "shop", Action.DENY, POLICY.targets, POLICY.rules, dry_run=True)
    assert content_version(POLICY) != content_version(other)
