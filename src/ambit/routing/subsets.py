"""DestinationRule subsets at the waypoint: which workloads a VirtualService destination's ``subset`` allows.

The control plane resolves each subset into the uids of the Service's workloads whose pod labels match
it (``ambit.control.translate_destination_rule``; ``ambit.model.traffic_policy.Subset``), so the
waypoint only looks the name up. Istio's waypoint sends a destination with a subset to the cluster
``outbound|<port>|<subset>|<host>``; a subset no DestinationRule defines is a cluster that does not
exist, answered 503 with the response flag ``NC``. A defined subset that holds no workload (or none
that is healthy) is a cluster without endpoints: 503 ``UH``, as for a Service without endpoints.
Pure: no I/O.
"""

from __future__ import annotations

from ambit.model.traffic_policy import TrafficPolicy

__all__ = ["subset_members"]


def subset_members(policy: TrafficPolicy | None, name: str) -> frozenset[str] | None:
    """The workload uids of subset ``name`` of the backend Service whose traffic policy is ``policy``
    (``Snapshot.traffic_policy_for(backend.service_key)``), or None when no DestinationRule defines that
    subset (the waypoint answers 503 ``NC``). The endpoints to use are the Service's endpoints whose
    ``Workload.uid`` is in the set; an empty set is a subset without endpoints (503 ``UH``)."""
    subset = policy.subset(name) if policy is not None else None
    return frozenset(subset.workloads) if subset is not None else None
