"""A waypoint Gateway's status: conditions, address, and the determinism two writers rely on."""

from __future__ import annotations

from typing import Any

import pytest

from ambit.control.waypoint_status import gateway_status

T0, T1 = "2026-12-07T10:00:00Z", "2026-12-07T11:00:00Z"


def gateway(
    *, generation: int = 1, listeners: list[dict[str, Any]] | None = None, waypoint_for: str | None = None
) -> dict[str, Any]:
    return {
        "kind": "Gateway",
        "metadata": {
            "name": "wp",
            "namespace": "shop",
            "generation": generation,
            "labels": {} if waypoint_for is None else {"istio.io/waypoint-for": waypoint_for},
        },
        "spec": {
            "gatewayClassName": "istio-waypoint",
            "listeners": [{"name": "mesh", "port": 15008, "protocol": "HBONE"}]
            if listeners is None
            else listeners,
        },
    }


SERVICE = {"kind": "Service", "spec": {"clusterIP": "10.96.0.20"}}


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_accepted_and_programmed_with_the_service_address() -> None:
    status = gateway_status(gateway(generation=3), SERVICE, now=T0)
    assert conditions(status) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.96.0.20"}]
    programmed = status["conditions"][1]
    assert (
        programmed["message"] == "Resource programmed, assigned to service(s) wp.shop.svc.cluster.local:15008"
    )
    assert {c["observedGeneration"] for c in status["conditions"]} == {3}
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {T0}


@pytest.mark.parametrize("service", [None, {"spec": {}}, {"spec": {"clusterIP": "None"}}])
def test_no_service_address_is_not_programmed(service: Any) -> None:
    status = gateway_status(gateway(), service, now=T0)
    assert conditions(status)["Programmed"] == ("False", "AddressNotUsable")
    assert "wp.shop.svc.cluster.local has no address" in status["conditions"][1]["message"]
    assert "addresses" not in status


def test_without_an_hbone_listener_it_is_not_accepted() -> None:
    gw = gateway(listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}])
    status = gateway_status(gw, SERVICE, now=T0)
    assert conditions(status) == {
        "Accepted": ("False", "ListenersNotValid"),
        "Programmed": ("False", "Invalid"),
    }
    assert "port 15008 with protocol HBONE" in status["conditions"][0]["message"]
    assert "addresses" not in status


def test_an_unknown_waypoint_for_value_is_not_accepted_and_named() -> None:
    status = gateway_status(gateway(waypoint_for="everything"), SERVICE, now=T0)
    assert conditions(status)["Accepted"] == ("False", "Invalid")
    message = status["conditions"][0]["message"]
    assert "metadata.labels[istio.io/waypoint-for]: 'everything'" in message
    assert "all, none, service, workload" in message
    assert conditions(gateway_status(gateway(waypoint_for="all"), SERVICE, now=T0))["Accepted"][0] == "True"


def test_same_inputs_give_the_same_status_so_a_second_writer_writes_nothing() -> None:
    gw = gateway()
    gw["status"] = gateway_status(gw, SERVICE, now=T0)
    assert gateway_status(gw, SERVICE, now=T1) == gw["status"], "a later clock alone changes nothing"


def test_last_transition_time_moves_only_on_a_status_change() -> None:
    gw = gateway()
    gw["status"] = gateway_status(gw, SERVICE, now=T0)
    lost = gateway_status(gw, None, now=T1)
    by_type = {c["type"]: c for c in lost["conditions"]}
    assert by_type["Programmed"]["lastTransitionTime"] == T1, "True → False is a transition"
    assert by_type["Accepted"]["lastTransitionTime"] == T0, "Accepted stayed True"


def test_a_new_generation_is_observed_without_a_transition() -> None:
    gw = gateway(generation=1)
    gw["status"] = gateway_status(gw, SERVICE, now=T0)
    gw["metadata"]["generation"] = 2
    status = gateway_status(gw, SERVICE, now=T1)
    assert {c["observedGeneration"] for c in status["conditions"]} == {2}
    assert {c["lastTransitionTime"] for c in status["conditions"]} == {T0}
