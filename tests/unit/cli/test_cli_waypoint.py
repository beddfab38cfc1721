"""``ambit waypoint generate|apply|list|status|delete`` against a real store server (istioctl's habits).

The control plane is not running here: where a test needs what its waypoint controller writes (the
Deployment, the Service, the Gateway's status) it runs the controller's own ``reconcile`` and
``write_status`` once against the same store.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import yaml
from cli_harness import CLUSTER, ambit, ok

from ambit.cli.waypoint import list_rows, status_rows, waypoint_gateway
from ambit.control.waypoints import reconcile, write_status
from ambit.store import StoreClient, socket_path

pytestmark = pytest.mark.usefixtures("store")


def controller_pass(name: str = "waypoint", namespace: str = "default") -> None:
    """One pass of the waypoint controller: its objects, then the Gateway's status."""

    async def work() -> None:
        async with StoreClient(socket_path(CLUSTER)) as client:
            gateway = await client.get("Gateway", name, namespace)
            await reconcile(client, gateway)
            await write_status(client, gateway)

    asyncio.run(work())


def get(kind: str, name: str, namespace: str | None = "default") -> dict[str, Any]:
    args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
    loaded: dict[str, Any] = yaml.safe_load(ok(*args).output)
    return loaded


# -- pure ------------------------------------------------------------------------------------------


def test_generated_gateway_is_istioctls_shape() -> None:
    gw = waypoint_gateway("waypoint", "shop", "all", replicas=3)
    assert gw["spec"] == {
        "gatewayClassName": "istio-waypoint",
        "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}],
    }
    assert gw["metadata"]["labels"] == {"istio.io/waypoint-for": "all"}
    assert gw["metadata"]["annotations"] == {"ambit.dev/replicas": "3"}
    assert "annotations" not in waypoint_gateway("w", "ns", "service")["metadata"]


def test_list_rows_count_ready_pods_of_that_waypoint_only() -> None:
    gw = waypoint_gateway("wp", "a", "workload")
    gw["status"] = {"conditions": [{"type": "Programmed", "status": "True"}]}
    other = {**waypoint_gateway("ingress", "a", "service"), "spec": {"gatewayClassName": "istio"}}
    dep = {"kind": "Deployment", "metadata": {"name": "wp", "namespace": "a"}, "spec": {"replicas": 2}}

    def pod(name: str, gateway: str, ready: str) -> dict[str, Any]:
        return {
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": "a",
                "labels": {"gateway.networking.k8s.io/gateway-name": gateway},
            },
            "status": {"conditions": [{"type": "Ready", "status": ready}]},
        }

    pods = [pod("wp-1", "wp", "True"), pod("wp-2", "wp", "False"), pod("x-1", "other", "True")]
    assert list_rows([gw, other], [], [dep], pods, with_namespace=False) == [
        ["wp", "workload", "1/2", "True"]
    ]
    fresh = waypoint_gateway("wp", "a", "workload")
    assert list_rows([fresh], [], [], [], with_namespace=True) == [["a", "wp", "workload", "0/-", "Unknown"]]


def test_status_rows_show_every_condition_or_say_none_was_written() -> None:
    gw = waypoint_gateway("wp", "a", "service")
    assert status_rows([gw]) == [["a", "wp", "Unknown", "-", "-", "no status written yet"]]
    gw["status"] = {
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "Resource accepted"},
            {"type": "Programmed", "status": "False", "reason": "AddressNotUsable", "message": "m"},
        ]
    }
    assert status_rows([gw]) == [
        ["a", "wp", "True", "Accepted", "Accepted", "Resource accepted"],
        ["a", "wp", "False", "Programmed", "AddressNotUsable", "m"],
    ]


# -- against the store -----------------------------------------------------------------------------


def test_generate_prints_yaml_that_apply_accepts() -> None:
    text = ok("waypoint", "generate", "-n", "default", "--for", "workload").output
    assert yaml.safe_load(text) == waypoint_gateway("waypoint", "default", "workload")
    assert "created" in ok("apply", "-f", "-", stdin=text).output


def test_apply_enrol_wait_list_status_delete() -> None:
    out = ok("waypoint", "apply", "-n", "default", "--enroll-namespace", "--replicas", "3")
    assert "waypoint default/waypoint applied" in out.output
    assert 'namespace default labeled with "istio.io/use-waypoint: waypoint"' in out.output
    assert "not labelled istio.io/dataplane-mode=ambient" in out.output  # CliRunner mixes stderr in
    gw = get("gateway", "waypoint")
    assert gw["metadata"]["annotations"] == {"ambit.dev/replicas": "3"}
    assert get("namespace", "default", None)["metadata"]["labels"]["istio.io/use-waypoint"] == "waypoint"

    # Control: with no controller, --wait runs out of time and says why.
    waited = ambit("waypoint", "apply", "-n", "default", "--wait", "--timeout", "0.5", "--replicas", "3")
    assert waited.exit_code == 1
    assert "not programmed after 0.5s: no status written yet" in waited.output

    controller_pass()
    assert (
        "waypoint default/waypoint programmed" in ok("waypoint", "apply", "--wait", "--replicas", "3").output
    )
    service_ip = get("service", "waypoint")["spec"]["clusterIP"]
    assert get("gateway", "waypoint")["status"]["addresses"] == [{"type": "IPAddress", "value": service_ip}]

    listed = ok("waypoint", "list").output.splitlines()
    assert listed[0].split() == ["NAME", "TRAFFIC", "TYPE", "READY", "PROGRAMMED"]
    assert listed[1].split() == ["waypoint", "service", "0/3", "True"]
    assert ok("waypoint", "list", "-A").output.splitlines()[1].split()[:2] == ["default", "waypoint"]

    status = ok("waypoint", "status").output
    assert "Resource programmed, assigned to service(s) waypoint.default.svc.cluster.local:15008" in status

    assert ok("waypoint", "delete").output.strip() == "waypoint default/waypoint deleted"
    assert ambit("get", "deployment", "waypoint").exit_code == 1, "owned objects go with the Gateway"
    assert "No waypoints found." in ok("waypoint", "list").output


def test_enrolling_over_another_waypoint_needs_overwrite() -> None:
    ok("waypoint", "apply", "--name", "first", "--enroll-namespace")
    refused = ambit("waypoint", "apply", "--name", "second", "--enroll-namespace")
    assert refused.exit_code == 1
    assert "already uses waypoint 'first'" in refused.output and "--overwrite" in refused.output
    assert ambit("get", "gateway", "second").exit_code == 1, "nothing half-applied"
    ok("waypoint", "apply", "--name", "second", "--enroll-namespace", "--overwrite")
    assert get("namespace", "default", None)["metadata"]["labels"]["istio.io/use-waypoint"] == "second"


def test_delete_refuses_a_gateway_that_is_not_a_waypoint_and_all_deletes_only_waypoints() -> None:
    ok(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump(
            {
                **waypoint_gateway("ingress", "default", "service"),
                "spec": {
                    "gatewayClassName": "istio",
                    "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
                },
            }
        ),
    )
    refused = ambit("waypoint", "delete", "ingress")
    assert refused.exit_code == 1 and "is not a waypoint" in refused.output
    missing = ambit("waypoint", "delete", "nope")
    assert missing.exit_code == 1 and 'waypoint "nope" not found' in missing.output
    ok("waypoint", "apply", "--name", "a")
    ok("waypoint", "apply", "--name", "b")
    assert ok("waypoint", "delete", "--all").output.splitlines() == [
        "waypoint default/a deleted",
        "waypoint default/b deleted",
    ]
    assert get("gateway", "ingress")["spec"]["gatewayClassName"] == "istio"


def test_apply_in_a_missing_namespace_is_one_clear_line() -> None:
    result = ambit("waypoint", "apply", "-n", "nowhere")
    assert result.exit_code == 1
    assert result.output.strip() == 'Error from server (NotFound): namespaces "nowhere" not found'


def test_infrastructure_labels_are_validated_naming_the_field() -> None:
    gw = waypoint_gateway("waypoint", "default", "service")
    gw["spec"]["infrastructure"] = {"labels": {"not a key!": "x"}}
    result = ambit("apply", "-f", "-", stdin=yaml.safe_dump(gw))
    assert result.exit_code == 1
    assert "spec.infrastructure.labels" in result.output, result.output
    assert ambit("get", "gateway", "waypoint").exit_code == 1, "nothing stored"
