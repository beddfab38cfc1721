"""The VirtualService schema: everything VirtualService translation reads validates, in every served
version, fields ambit does not read are kept, and bad values fail with their path
(ambit.resources.schemas; the translation is ambit.control.translate_virtualservice)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ambit.resources import ManifestError, kind_info, resolve_kind, validate

FULL: dict[str, Any] = {
    "apiVersion": "networking.istio.io/v1",
    "kind": "VirtualService",
    "metadata": {"name": "reviews"},
    "spec": {
        "hosts": ["reviews"],
        "gateways": ["mesh"],
        "exportTo": ["."],
        "http": [
            {
                "name": "jason",
                "match": [
                    {
                        "name": "m",
                        "uri": {"prefix": "/api"},
                        "method": {"exact": "GET"},
                        "authority": {"regex": "reviews.*"},
                        "headers": {"end-user": {"exact": "jason"}, "x-debug": {}},
                        "queryParams": {"v": {"regex": "[0-9]+"}},
                        "ignoreUriCase": True,
                        "port": 9080,
                        "gateways": ["mesh"],
                    }
                ],
                "route": [
                    {
                        "destination": {"host": "reviews", "subset": "v2", "port": {"number": 9080}},
                        "weight": 90,
                        "headers": {"request": {"set": {"x-a": "1"}}},
                    },
                    {"destination": {"host": "reviews"}, "weight": 10},
                ],
                "timeout": "10s",
                "retries": {
                    "attempts": 3,
                    "perTryTimeout": "1.5s",
                    "retryOn": "5xx,connect-failure",
                    "backoff": "25ms",
                    "retryRemoteLocalities": False,
                },
                "fault": {
                    "delay": {"fixedDelay": "7s", "percentage": {"value": 100}},
                    "abort": {"httpStatus": 500, "percentage": {"value": 0.1}},
                },
                "headers": {
                    "request": {"set": {"x-b": "2"}, "add": {"x-c": "3"}, "remove": ["x-d"]},
                    "response": {"remove": ["server"]},
                },
                "mirror": {"host": "reviews"},
                "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}]},
            }
        ],
        "tcp": [{"route": [{"destination": {"host": "reviews"}}]}],
    },
}


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
def test_everything_translation_reads_validates(version: str) -> None:
    obj = {**copy.deepcopy(FULL), "apiVersion": f"networking.istio.io/{version}"}
    out = validate(obj, "vs.yaml")
    assert out["metadata"]["namespace"] == "default"
    assert out["spec"]["http"][0]["fault"]["delay"] == {"fixedDelay": "7s", "percentage": {"value": 100}}
    assert out["spec"]["tcp"] == FULL["spec"]["tcp"], "fields ambit does not read are kept"


def test_the_kind_is_known() -> None:
    info = kind_info("VirtualService")
    assert info is not None and info.namespaced
    assert resolve_kind("vs") == resolve_kind("virtualservices.networking.istio.io") == "VirtualService"


def test_a_grpc_abort_and_a_legacy_delay_percent_validate() -> None:
    obj = copy.deepcopy(FULL)
    obj["spec"]["http"][0]["fault"] = {
        "delay": {"fixedDelay": "500ms", "percent": 30},
        "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 12.5}},
    }
    assert validate(obj)["spec"]["http"][0]["fault"]["abort"]["grpcStatus"] == "UNAVAILABLE"


def _with(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(FULL)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = obj
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return obj


HTTP = "spec.http.0"
AT = "spec.http[0]"  # as problems show it


@pytest.mark.parametrize(
    ("path", "value", "where", "text"),
    [
        (f"{HTTP}.timeout", "ten seconds", f"{AT}.timeout", "is not a duration"),
        (f"{HTTP}.timeout", 10, f"{AT}.timeout", "string"),
        (f"{HTTP}.retries.attempts", -1, f"{AT}.retries.attempts", "greater than or equal to 0"),
        (f"{HTTP}.retries.perTryTimeout", "2", f"{AT}.retries.perTryTimeout", "is not a duration"),
        (f"{HTTP}.fault.delay.percentage.value", 101, f"{AT}.fault.delay.percentage.value", "0..100"),
        (f"{HTTP}.fault.delay.percent", 200, f"{AT}.fault.delay.percent", "between 0 and 100"),
        (f"{HTTP}.fault.abort.httpStatus", "500", f"{AT}.fault.abort.httpStatus", "integer"),
        (f"{HTTP}.route.0.weight", -5, f"{AT}.route[0].weight", "greater than or equal to 0"),
        (
            f"{HTTP}.route.0.destination.port.number",
            70000,
            f"{AT}.route[0].destination.port.number",
            "65535",
        ),
        (f"{HTTP}.route.0.destination.host", "", f"{AT}.route[0].destination.host", "empty"),
        (f"{HTTP}.match.0.uri", {"exact": "/a", "regex": "/b"}, f"{AT}.match[0].uri", "only one of exact"),
        (
            f"{HTTP}.match.0.headers.end-user",
            {"prefix": 1},
            f'{AT}.match[0].headers["end-user"].prefix',
            "string",
        ),
        ("spec.hosts", "reviews", "spec.hosts", "list"),
    ],
)
def test_bad_values_fail_with_their_path(path: str, value: Any, where: str, text: str) -> None:
    with pytest.raises(ManifestError) as info:
        validate(_with(path, value))
    problems = dict(info.value.problems)
    assert where in problems, problems
    assert text in problems[where], problems[where]
