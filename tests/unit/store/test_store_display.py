"""kubectl-style names, ages and tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ambit.store.display import human_duration, plural, resource_name, resource_type, table


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (125, "2m5s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 60, "5h1m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_names() -> None:
    assert plural("Pod") == "pods"
    assert plural("AuthorizationPolicy") == "authorizationpolicies"
    assert plural("Gateway") == "gateways"
    assert plural("Ingress") == "ingresses"
    assert resource_type("Deployment", "apps/v1") == "deployment.apps"
    assert resource_type("Service", "v1") == "service"
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"}}
    assert resource_name(obj) == "httproute.gateway.networking.k8s.io/r"


def test_pod_table() -> None:
    now = datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    pod = {
        "kind": "Pod",
        "metadata": {"name": "web-1", "namespace": "demo", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.5",
            "containerStatuses": [{"ready": True, "restartCount": 2}, {"ready": False, "restartCount": 1}],
        },
    }
    text = table([pod], kind="Pod", wide=True, with_namespace=True, now=now)
    assert text.splitlines() == [
        "NAMESPACE   NAME    READY   STATUS    RESTARTS   AGE   IP           NODE",
        "demo        web-1   1/2     Running   3          10m   10.244.1.5   node-1",
    ]
