"""The pure rules the runtime's controllers apply: which pods the kubelet enrols, which readiness checks
a pod declares, and how `ambit status` renders a cluster's status."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.runtime.controllers.kubelet import is_enrolled
from ambit.runtime.controllers.probes import readiness_checks
from ambit.runtime.handle import ClusterStatus, NodeStatus, PodStatus


def pod(namespace: str = "default", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace, "labels": labels or {}}, "spec": {}}


def ns(name: str, mode: str | None) -> dict[str, Any]:
    labels = {} if mode is None else {"istio.io/dataplane-mode": mode}
    return {"metadata": {"name": name, "labels": labels}}


@pytest.mark.parametrize(
    ("the_pod", "namespace", "enrolled"),
    [
        (pod(), ns("default", "ambient"), True),
        (pod(), ns("default", None), False),
        (pod(), None, False),
        (pod(labels={"istio.io/dataplane-mode": "ambient"}), ns("default", None), True),
        (pod(labels={"istio.io/dataplane-mode": "none"}), ns("default", "ambient"), False),
        (
            pod(labels={"istio.io/dataplane-mode": "foo"}),
            ns("default", "ambient"),
            True,
        ),  # Istio's rule (objects.is_ambient): a value other than ambient/none defers to the namespace
        (pod("ambit-system", {"istio.io/dataplane-mode": "ambient"}), ns("ambit-system", "ambient"), False),
    ],
)
def test_is_enrolled(the_pod: dict[str, Any], namespace: dict[str, Any] | None, enrolled: bool) -> None:
    assert is_enrolled(the_pod, namespace) is enrolled


def test_readiness_checks() -> None:
    spec = {
        "containers": [
            {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 81}]},
            {
                "name": "b",
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"port": "http", "path": "/ready"}},
            },
            {"name": "c", "readinessProbe": {"httpGet": {"port": 8443, "scheme": "HTTPS"}}},
            {"name": "d", "readinessProbe": {"tcpSocket": {"port": 9000}}},
        ]
    }
    assert readiness_checks({"spec": spec}) == [
        (80, None),
        (81, None),
        (8080, "/ready"),
        (8443, None),
        (9000, None),
    ]


def test_status_lines() -> None:
    status = ClusterStatus(
        daemon_running=True,
        nodes=[NodeStatus("node1", "a", "running"), NodeStatus("node2", "-", "stopped")],
        pods=[
            PodStatus("ambit-system", "controlplane-1", "node1", "10.244.0.2", True, False),
            PodStatus("default", "web-abcde", "-", "-", False, True),
        ],
        held={"ztunnel-node2"},
    )
    assert status.controlplane == (1, 1)
    assert status.ambient("default") == {"web-abcde": True}
    lines = status.lines()
    assert lines[:3] == [
        "NODES",
        "  node1    zone=a      ztunnel=running",
        "  node2    zone=-      ztunnel=stopped",
    ]
    assert lines[-2:] == [
        "CONTROL PLANE: 1/1 replicas ready",
        "STOPPED (held down until `ambit start`): ztunnel-node2",
    ]
    assert lines[-3].split() == ["default", "web-abcde", "-", "-", "no", "yes"]
