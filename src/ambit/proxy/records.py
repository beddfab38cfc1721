"""What a proxy records about the traffic it carries: one :class:`ConnectionRecord` per connection.

The record is made from what the proxy knows when the connection is counted as opened, and made
again, from the same settled facts, when it ends; it is not kept in between, so an idle connection
holds none (with the pod's identity made once, this saved 0.37 KiB per idle connection through a
ztunnel pair: ``scripts/profile_idle.py``). Both consumers read one shape: the metrics
make their label set from it, and the access log writes its line from it plus the outcome (bytes,
duration, flags, error). :func:`workload_labels` is how both proxies' metrics (the ztunnel's TCP and the
waypoint's request metrics) name a workload, as Istio's do.

It is frozen and has ``__slots__``; it refers to the model values the proxy already holds (workloads,
identities, the service) and copies nothing, so making one costs one small object and nothing per
byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from ambit.model.identity import Identity, NodeIdentity
from ambit.model.workload import Service, Workload

Address = tuple[str, int]

UNKNOWN = "unknown"


def workload_labels(workload: Workload | None) -> tuple[str, str, str, str]:
    """Istio's (workload, canonical service, canonical revision, namespace) of a workload: the workload
    name is its controller's (else the pod's), revision ``latest`` when unlabelled; all ``unknown``
    when there is no workload."""
    if workload is None:
        return UNKNOWN, UNKNOWN, UNKNOWN, UNKNOWN
    name = workload.workload_name or workload.name or UNKNOWN
    return (
        name,
        workload.canonical_name or name,
        workload.canonical_revision or "latest",
        workload.namespace or UNKNOWN,
    )


# direction: which listener accepted the connection
OUTBOUND = "outbound"  # 15001: a local pod's connection out
INBOUND = "inbound"  # 15008: an HBONE CONNECT to a local pod
INBOUND_PLAINTEXT = "inbound_plaintext"  # 15006: a non-mesh client's connection to a local pod


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """Who talked to whom over one connection, as the proxy knew it.

    The workloads feed the metrics labels; the names are the ones the access log shows (for the
    local pod, as its node agent announced it, which is known even before the config is).
    """

    direction: str  # OUTBOUND, INBOUND or INBOUND_PLAINTEXT
    src_addr: Address | None  # the client's address
    dst_addr: Address | None  # where it meant to go
    hbone_addr: str | None  # the HBONE target (``:authority``) when tunnelled, else None
    source: Workload | None  # the client's workload, if known
    source_name: str | None
    source_namespace: str | None
    source_principal: Identity | NodeIdentity | None
    destination: Workload | None  # the server's workload, if known
    destination_name: str | None
    destination_namespace: str | None
    destination_principal: Identity | NodeIdentity | None
    service: Service | None  # the service the client addressed, if any

    @property
    def mutual_tls(self) -> bool:
        """Carried over HBONE (mTLS) rather than plain TCP."""
        return self.hbone_addr is not None
