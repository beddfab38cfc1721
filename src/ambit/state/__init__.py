"""Layer L1: the proxy's view of the mesh as one immutable, indexed snapshot, and its single writer.

``snapshot`` holds :class:`Snapshot` (workloads, services, L4 and L7 policies, Gateway API routes,
DestinationRule traffic policies and rate limit policies with their lookup indexes) and the resource naming
rules (``wl/<uid>``, ``svc/<ns>/<hostname>``, ``ap/<ns>/<name>``, ``l7/<ns>/<name>``, ``rt/<route key>``,
``tp/<ns>/<name>``, ``rl/<ns>/<name>``);
``store`` holds :class:`StateStore`, which applies updates and tells subscribers (plain callbacks, no
asyncio). Pure: no I/O.
"""

from ambit.state.snapshot import (
    L7_POLICY_PREFIX,
    POLICY_PREFIX,
    RATE_LIMIT_PREFIX,
    ROUTE_PREFIX,
    SERVICE_PREFIX,
    TRAFFIC_POLICY_PREFIX,
    WORKLOAD_PREFIX,
    Entry,
    Resource,
    Snapshot,
    resource_name,
)
from ambit.state.store import StateStore

__all__ = [
    "L7_POLICY_PREFIX",
    "POLICY_PREFIX",
    "RATE_LIMIT_PREFIX",
    "ROUTE_PREFIX",
    "SERVICE_PREFIX",
    "TRAFFIC_POLICY_PREFIX",
    "WORKLOAD_PREFIX",
    "Entry",
    "Resource",
    "Snapshot",
    "StateStore",
    "resource_name",
]
