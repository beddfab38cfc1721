"""HTTPRoute and GRPCRoute schemas: everything route translation reads validates, bad values fail with
their path (ambit.resources.schemas; the translation is ambit.control.translate_routes)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ambit.resources import ManifestError, validate

FULL_HTTP_ROUTE: dict[str, Any] = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "web", "namespace": "shop"},
    "spec": {
        "parentRefs": [{"group": "", "kind": "Service", "name": "web", "port": 80}],
        "rules": [
            {
                "matches": [
                    {
                        "path": {"type": "RegularExpression", "value": "/v[0-9]+/.*"},
                        "method": "GET",
                        "headers": [{"name": "X-User", "type": "RegularExpression", "value": "a.*"}],
                        "queryParams": [{"name": "debug", "value": "1"}],
                    }
                ],
                "filters": [
                    {
                        "type": "RequestHeaderModifier",
                        "requestHeaderModifier": {
                            "set": [{"name": "X-A", "value": "1"}],
                            "add": [{"name": "x-b", "value": "2"}],
                            "remove": ["X-C"],
                        },
                    },
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["server"]}},
                ],
                "backendRefs": [{"name": "web-v1", "port": 8080, "weight": 0}],
                "timeouts": {"request": "1h30m", "backendRequest": "500ms"},
                "retry": {"attempts": 3, "codes": [500, 503], "backoff": "100ms"},
            }
        ],
    },
}


def test_everything_translation_reads_validates() -> None:
    out = validate(FULL_HTTP_ROUTE, "route.yaml")
    rule = out["spec"]["rules"][0]
    assert rule["retry"] == {"attempts": 3, "codes": [500, 503], "backoff": "100ms"}
    assert rule["backendRefs"][0] == {
        "group": "",
        "kind": "Service",
        "name": "web-v1",
        "port": 8080,
        "weight": 0,
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(FULL_HTTP_ROUTE)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return obj


RULE = "spec.rules.0"
MODIFIER = f"{RULE}.filters.0.requestHeaderModifier"


@pytest.mark.parametrize(
    ("path", "value", "where", "text"),
    [
        (
            f"{MODIFIER}.set.0.name",
            "bad name",
            "spec.rules[0].filters[0].requestHeaderModifier.set[0].name",
            "header",
        ),
        (
            f"{MODIFIER}.add.0.name",
            ":path",
            "spec.rules[0].filters[0].requestHeaderModifier.add[0].name",
            "header",
        ),
        (
            f"{MODIFIER}.remove.0",
            "",
            "spec.rules[0].filters[0].requestHeaderModifier.remove[0]",
            "header name",
        ),
        (
            f"{RULE}.matches.0.headers.0.name",
            "x a",
            "spec.rules[0].matches[0].headers[0].name",
            "header name",
        ),
        (
            f"{RULE}.matches.0.queryParams.0.name",
            "q=1",
            "spec.rules[0].matches[0].queryParams[0].name",
            "header",
        ),
        (f"{RULE}.retry.codes.0", 200, "spec.rules[0].retry.codes[0]", "between 400 and 599"),
        (f"{RULE}.retry.attempts", -1, "spec.rules[0].retry.attempts", "greater than or equal to 0"),
        (f"{RULE}.retry.backoff", "1.5s", "spec.rules[0].retry.backoff", "Gateway API duration"),
        (f"{RULE}.timeouts.request", "10", "spec.rules[0].timeouts.request", "Gateway API duration"),
        (
            f"{RULE}.timeouts.backendRequest",
            "1d",
            "spec.rules[0].timeouts.backendRequest",
            "Gateway API duration",
        ),
        (f"{RULE}.backendRefs.0.weight", -1, "spec.rules[0].backendRefs[0].weight", "between 0 and 1000000"),
    ],
)
def test_bad_route_fields_fail_with_their_path(path: str, value: Any, where: str, text: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate(_with(path, value), "bad.yaml")
    assert info.value.path == where
    assert text in str(info.value), str(info.value)


def test_grpc_route_header_names() -> None:
    obj = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GRPCRoute",
        "metadata": {"name": "echo"},
        "spec": {
            "parentRefs": [{"group": "", "kind": "Service", "name": "echo"}],
            "rules": [{"matches": [{"headers": [{"name": "x-tenant", "value": "a"}]}]}],
        },
    }
    validate(obj, "ok.yaml")
    obj["spec"]["rules"][0]["matches"][0]["headers"][0]["name"] = "x tenant"
    with pytest.raises(ManifestError, match="not a valid header name"):
        validate(obj, "bad.yaml")
