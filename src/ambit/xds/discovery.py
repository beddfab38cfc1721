"""Where the control plane is: the ready endpoints of Service `ambit-system/controlplane`, kept current.

A proxy learns the control plane's endpoints over xDS itself (they are ordinary workloads of an
ordinary Service), so the address provider reads the proxy's own state: every HEALTHY endpoint of the
`controlplane` Service on the gRPC port. Before the first snapshot (or if the Service has no ready
endpoint, e.g. every replica is down and the state says so) it falls back to the bootstrap addresses
the runtime handed the proxy at start, so a proxy can always find some replica to try.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ambit.model.workload import HealthStatus, service_hostname
from ambit.resources.names import CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE
from ambit.state.store import StateStore
from ambit.xds.channel import CONTROL_PLANE_PORT

Address = tuple[str, int]


def control_plane_service_key(cluster_domain: str = "cluster.local") -> str:
    hostname = service_hostname(CONTROL_PLANE_SERVICE, CONTROL_PLANE_NAMESPACE, cluster_domain)
    return f"{CONTROL_PLANE_NAMESPACE}/{hostname}"


def control_plane_addresses(
    state: StateStore,
    bootstrap: Sequence[Address],
    *,
    port: int = CONTROL_PLANE_PORT,
    cluster_domain: str = "cluster.local",
) -> Callable[[], list[Address]]:
    """An address provider for XdsClient/CaClient: live endpoints first, bootstrap as the fallback."""
    key = control_plane_service_key(cluster_domain)

    def addresses() -> list[Address]:
        ready = [
            (workload.addresses[0], port)
            for workload in state.current.endpoints(key)
            if workload.status is HealthStatus.HEALTHY and workload.addresses
        ]
        return sorted(ready) if ready else list(bootstrap)

    return addresses
