"""What a proxy believes, as one typed value: the read model behind ``/config_dump``.

A proxy builds a :class:`ConfigDump` from its parts (ztunnel: ``ZtunnelApp.config_dump``); the admin
port serves :meth:`ConfigDump.to_json`; a reader (``ambit ztunnel-config``, later a dashboard) turns the
JSON back into a :class:`ConfigDump` with :meth:`ConfigDump.from_json` and reads typed fields, never
dict keys. The JSON keys are the field names; workloads, services and policies are the model's own
values (:mod:`ambit.model`) in their :func:`~ambit.model.jsonable.jsonable` form. A section the proxy
does not have (``counts``, ``heap``, ``agent``, ``xds`` when None) is left out of the JSON, and a
section missing from the JSON takes its default, so a partial dump still reads.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ambit.model.jsonable import from_jsonable, jsonable
from ambit.model.policy import Authorization, L7Authorization
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import Service, Workload
from ambit.routing.ejection import Ejections

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Counts:
    """How many resources of each kind the proxy's config holds."""

    workloads: int
    services: int
    policies: int


@dataclass(frozen=True, slots=True)
class PodView:
    """A pod the proxy serves."""

    name: str  # namespace/name
    identity: str  # SPIFFE ID
    state: str  # new, serving, draining, closed


@dataclass(frozen=True, slots=True)
class CertificateView:
    """A workload certificate the proxy holds."""

    not_after: datetime


@dataclass(frozen=True, slots=True)
class ConnectionView:
    """A live connection the proxy tracks (ztunnel: inbound ones)."""

    direction: str
    protocol: str  # TCP or HBONE
    source: str  # IP
    destination: str  # IP:port
    source_identity: str | None
    destination_identity: str | None
    workload_uid: str
    workload: str | None  # namespace/name
    age_seconds: float
    bytes_received: int  # from the client
    bytes_sent: int  # to the client


@dataclass(frozen=True, slots=True)
class HeapView:
    free_bytes: int
    trims: int


@dataclass(frozen=True, slots=True)
class AgentView:
    """ztunnel's node-agent connection."""

    socket: str
    connected: bool
    snapshot_processed: bool


@dataclass(frozen=True, slots=True)
class EjectionView:
    """A waypoint replica this proxy skips for now (outlier ejection, ``ambit.routing.ejection``)."""

    uid: str
    name: str  # namespace/name of the replica's pod, when the config still knows it
    remaining: float  # seconds until it is tried first again
    failures: int  # failures in a row (the ejection doubles with each)
    reason: str  # the last failure


def ejection_views(
    ejections: Ejections, workloads: Mapping[str, Workload], now: float
) -> tuple[EjectionView, ...]:
    """The running ejections of a proxy (``now`` on the clock they were recorded with), named by pod."""
    views = []
    for e in ejections.snapshot(now):
        workload = workloads.get(e.uid)
        name = f"{workload.namespace}/{workload.name}" if workload is not None else ""
        views.append(EjectionView(e.uid, name, round(e.until - now, 3), e.failures, e.reason))
    return tuple(views)


@dataclass(frozen=True, slots=True)
class OutlierView:
    """One endpoint as a waypoint's outlier detection (DestinationRule) sees it."""

    service: str  # the Service key whose policy tracks it
    uid: str
    name: str  # namespace/name of the endpoint's pod, when the config still knows it
    ejected: bool
    remaining: float | None  # seconds until the interval sweep that returns it; None when not ejected
    ejections: int  # how many times it has been ejected
    consecutive_5xx: int
    consecutive_gateway_errors: int


@dataclass(frozen=True, slots=True)
class WaypointView:
    """What a waypoint replica serves: its Gateway, its identity, and the destinations bound to it (its
    routes: each service key and workload uid whose traffic comes to it; their endpoints are in
    ``workloads``, the policies it applies in ``l7_policies``)."""

    gateway: str  # namespace/name
    identity: str
    services: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class XdsView:
    address: Address | None
    synced: bool
    last_error: str | None


# Left out of the JSON when None.
_OPTIONAL = frozenset({"counts", "heap", "agent", "xds", "waypoint"})


@dataclass(frozen=True, slots=True)
class ConfigDump:
    """What a proxy believes; see the module docstring."""

    node: str = ""
    synced: bool = False
    synced_from_cache: bool = False
    config_version: str = ""
    counts: Counts | None = None
    workloads: Mapping[str, Workload] = field(default_factory=dict)  # by uid
    services: Mapping[str, Service] = field(default_factory=dict)  # by namespace/hostname
    policies: Mapping[str, Authorization] = field(default_factory=dict)  # by namespace/name
    l7_policies: Mapping[str, L7Authorization] = field(default_factory=dict)  # by namespace/name
    routes: Mapping[str, HttpRoute] = field(default_factory=dict)  # by HttpRoute.key (a waypoint's)
    traffic_policies: Mapping[str, TrafficPolicy] = field(
        default_factory=dict
    )  # DestinationRules, by ns/name
    rate_limits: Mapping[str, RateLimitPolicy] = field(default_factory=dict)  # HTTPLocalRateLimitPolicies
    pods: Mapping[str, PodView] = field(default_factory=dict)  # by uid
    certificates: Mapping[str, CertificateView] = field(default_factory=dict)  # by SPIFFE ID
    connections: tuple[ConnectionView, ...] = ()  # oldest first
    ejections: tuple[EjectionView, ...] = ()  # by uid
    outliers: tuple[OutlierView, ...] = ()  # a waypoint's outlier detection, by service then uid
    inbound_connections: int = 0
    pool_connections: int = 0
    heap: HeapView | None = None
    agent: AgentView | None = None
    xds: XdsView | None = None
    waypoint: WaypointView | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON object ``/config_dump`` serves."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in _OPTIONAL:
                continue
            out[f.name] = jsonable(value)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> ConfigDump:
        """The dump whose JSON is ``data``; raises ValueError if a section present does not fit.

        A section that is not a JSON object or list where one is expected (an older manager-only dump
        gives ``workloads``, ``services`` and ``policies`` as counts) reads as empty.
        """
        known = {f.name: f for f in dataclasses.fields(cls)}
        present = {k: v for k, v in data.items() if k in known and _shaped(known[k], v)}
        return from_jsonable(cls, present)


def _shaped(f: dataclasses.Field[Any], value: object) -> bool:
    """False for a collection section that is not a collection (then it takes its default)."""
    if f.name in (
        "workloads",
        "services",
        "policies",
        "l7_policies",
        "routes",
        "traffic_policies",
        "rate_limits",
        "pods",
        "certificates",
    ):
        return isinstance(value, dict)
    if f.name in ("connections", "ejections", "outliers"):
        return isinstance(value, list)
    return True
