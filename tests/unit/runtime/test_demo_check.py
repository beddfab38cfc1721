"""The pure check of `ambit demo`'s promises (:func:`ambit.runtime.demo.problems`): a result that keeps
them passes, and each broken promise is flagged (the control for tests/e2e/runtime/test_demo.py)."""

from __future__ import annotations

import dataclasses
from collections import Counter

import pytest

from ambit.runtime.demo import MUTUAL_TLS, Call, DemoResult, Talker, problems
from ambit.runtime.layout import FABRIC_PORTS, HBONE_PORT, XDS_PORT

MARKER = "ambit-demo-test"


def good() -> DemoResult:
    return DemoResult(
        marker=MARKER,
        calls=[
            Call(
                "curl",
                "http://productpage:9080/productpage",
                "productpage-v1-7d4b9c8f6d-abcde",
                "productpage-v1",
                "node2",
                "10.244.1.2",
                True,
            ),
            Call(
                "productpage-v1",
                "http://reviews:9080/reviews/0",
                "reviews-v2-5c8d7f9b4c-fghjk",
                "reviews-v2",
                "node3",
                "10.244.2.2",
                True,
            ),
        ],
        talkers=[
            Talker(
                "curl", "productpage-v1", "node2", "spiffe://cluster.local/ns/default/sa/curl", MUTUAL_TLS, 3
            ),
            Talker("productpage-v1", "reviews-v2", "node3", "spiffe://x", MUTUAL_TLS, 3),
        ],
        ports=Counter({HBONE_PORT: 120, XDS_PORT: 8}),
        captured_bytes=50_000,
        marker_found=False,
    )


def test_fabric_ports_are_hbone_xds_the_token_ca_and_the_store() -> None:
    assert {15008, 15012, 15013, 6443} == FABRIC_PORTS


def test_a_demo_that_kept_its_promises_passes() -> None:
    assert problems(good()) == []


@pytest.mark.parametrize(
    ("change", "flagged"),
    [
        ({"ports": Counter({HBONE_PORT: 120, 9080: 4})}, "outside"),
        ({"marker_found": True}, "crossed the fabric in plaintext"),
        ({"ports": Counter({XDS_PORT: 8})}, "no packet on port 15008"),
        ({"calls": []}, "no call was made"),
    ],
)
def test_a_broken_promise_is_flagged(change: dict[str, object], flagged: str) -> None:
    found = problems(dataclasses.replace(good(), **change))  # type: ignore[arg-type]
    assert any(flagged in p for p in found), found


def test_a_pair_without_an_mtls_connection_is_flagged() -> None:
    result = good()
    result.talkers = [dataclasses.replace(result.talkers[0], security="none"), result.talkers[1]]
    assert problems(result) == ["curl -> productpage-v1: no mTLS connection in the metrics"]
    result.talkers = result.talkers[1:]
    assert problems(result) == ["curl -> productpage-v1: no mTLS connection in the metrics"]


def test_a_marker_the_app_did_not_receive_is_flagged() -> None:
    result = good()
    result.calls[0] = dataclasses.replace(result.calls[0], marker_seen=False)
    assert any("did not receive the marker" in p for p in problems(result))


def test_a_deployment_pods_workload_drops_its_suffix_and_template_hash() -> None:
    from ambit.runtime.demo import workload, workload_of

    pod = {"metadata": {"name": "reviews-v1-778dbd86b9-95lh5", "labels": {"pod-template-hash": "778dbd86b9"}}}
    assert workload_of(pod) == "reviews-v1"
    assert workload("reviews-v1-778dbd86b9-95lh5") == "reviews-v1-778dbd86b9"  # control: no hash known
