"""The control-plane address provider follows the controlplane Service's ready endpoints."""

from __future__ import annotations

from ambit.model.workload import HealthStatus, PortMapping, Service, ServicePort, Workload
from ambit.state.snapshot import resource_name
from ambit.state.store import StateStore
from ambit.xds.discovery import control_plane_addresses, control_plane_service_key

KEY = control_plane_service_key()


def replica(uid: str, ip: str, status: HealthStatus = HealthStatus.HEALTHY) -> Workload:
    return Workload(
        uid=uid,
        name=f"controlplane-{uid}",
        namespace="ambit-system",
        service_account="controlplane",
        node="node-1",
        addresses=(ip,),
        status=status,
        services=((KEY, (PortMapping(15012, 15012),)),),
    )


SERVICE = Service(
    "controlplane",
    "ambit-system",
    "controlplane.ambit-system.svc.cluster.local",
    ("10.96.0.12",),
    (ServicePort(15012, 15012),),
)


def entries(*values: Workload | Service) -> dict[str, tuple[str, Workload | Service]]:
    return {resource_name(v): ("v1", v) for v in values}


def test_bootstrap_until_the_state_knows_better() -> None:
    state = StateStore()
    provider = control_plane_addresses(state, [("172.30.0.11", 15012)])
    assert provider() == [("172.30.0.11", 15012)]
    state.replace(entries(SERVICE, replica("a", "10.244.1.3"), replica("b", "10.244.2.3")))
    assert provider() == [("10.244.1.3", 15012), ("10.244.2.3", 15012)]


def test_only_ready_replicas_and_fallback_when_none() -> None:
    state = StateStore()
    provider = control_plane_addresses(state, [("172.30.0.11", 15012)])
    state.replace(
        entries(SERVICE, replica("a", "10.244.1.3", HealthStatus.UNHEALTHY), replica("b", "10.244.2.3"))
    )
    assert provider() == [("10.244.2.3", 15012)]
    state.replace(entries(SERVICE, replica("a", "10.244.1.3", HealthStatus.UNHEALTHY)))
    assert provider() == [("172.30.0.11", 15012)]
