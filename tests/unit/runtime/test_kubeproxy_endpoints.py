"""kube-proxy's endpoints: ready pods selected by a Service, never a terminating one."""

from __future__ import annotations

from typing import Any

from ambit.runtime.kubeproxy import service_ports

SERVICE: dict[str, Any] = {
    "kind": "Service",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {
        "clusterIP": "10.96.0.20",
        "selector": {"app": "web"},
        "ports": [{"port": 80, "targetPort": 8080}],
    },
}


def pod(ip: str, *, terminating: bool = False, ready: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"web-{ip}", "namespace": "default", "labels": {"app": "web"}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    return {
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "x"}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_a_terminating_pod_is_no_endpoint_even_while_still_ready() -> None:
    [port] = service_ports(
        [SERVICE], [pod("10.244.1.2"), pod("10.244.1.3", terminating=True), pod("10.244.1.4", ready=False)]
    )
    assert [e.ip for e in port.endpoints] == ["10.244.1.2"]
