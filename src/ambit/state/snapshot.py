"""An immutable snapshot of the mesh as a proxy sees it, with the indexes routing and policy need.

A snapshot is a set of named, versioned resources (``name -> (version, value)``):

* ``wl/<uid>`` → :class:`~ambit.model.workload.Workload`;
* ``svc/<namespace>/<hostname>`` → :class:`~ambit.model.workload.Service` (``svc/`` + ``Service.key``);
* ``ap/<namespace>/<name>`` → :class:`~ambit.model.policy.Authorization` (``ap/`` + ``Authorization.key``).

Built once, never changed: a connection takes the current snapshot and every decision it makes sees
the same config. ``version`` is a content hash over the resources' names and versions, so two
snapshots with the same resources at the same versions have the same version, whoever built them.

Lookups are deterministic when several workloads share an address (e.g. a pod being replaced): a
healthy one wins over an unhealthy one, then the lowest uid. Addresses are compared in their
canonical form (``ipaddress``), so ``::1`` and ``0:0::1`` are the same address. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ambit.model.policy import Authorization, Scope
from ambit.model.workload import HealthStatus, Service, Workload

Resource = Workload | Service | Authorization
Entry = tuple[str, Resource]  # (version, value)

WORKLOAD_PREFIX = "wl/"
SERVICE_PREFIX = "svc/"
POLICY_PREFIX = "ap/"


def resource_name(value: Resource) -> str:
    """The resource name of a workload, service or policy (see the module docstring)."""
    if isinstance(value, Workload):
        return WORKLOAD_PREFIX + value.uid
    if isinstance(value, Service):
        return SERVICE_PREFIX + value.key
    if isinstance(value, Authorization):
        return POLICY_PREFIX + value.key
    raise TypeError(f"not a mesh resource: {type(value).__name__}")


def check_entry(name: str, entry: Entry) -> None:
    """Raise ValueError unless ``entry`` is a (version, value) pair whose value is named ``name``."""
    version, value = entry
    if not isinstance(version, str) or not version:
        raise ValueError(f"resource {name!r} has no version")
    expected = resource_name(value)
    if expected != name:
        raise ValueError(f"resource named {name!r} holds a value named {expected!r}")


def canonical_ip(text: str) -> str:
    """The canonical text of an IP address; the input unchanged when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def content_version(names_and_versions: Iterable[tuple[str, str]]) -> str:
    """A short content hash over (name, version) pairs, independent of their order."""
    text = "".join(f"{name}\0{version}\n" for name, version in sorted(names_and_versions))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _prefer(workload: Workload) -> tuple[int, str]:
    return (0 if workload.status is HealthStatus.HEALTHY else 1, workload.uid)


class Snapshot:
    """The immutable, indexed config of one moment; build with :meth:`build` or :meth:`empty`."""

    __slots__ = (
        "_by_ip",
        "_by_vip",
        "_endpoints",
        "_entries",
        "_global_policies",
        "_namespace_policies",
        "_policies",
        "_services",
        "_version",
        "_workloads",
    )

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        """Build a snapshot from ``name -> (version, value)``; raises ValueError for a misnamed entry."""
        own: dict[str, Entry] = {}
        workloads: dict[str, Workload] = {}
        services: dict[str, Service] = {}
        policies: dict[str, Authorization] = {}
        for name, entry in entries.items():
            check_entry(name, entry)
            own[name] = entry
            value = entry[1]
            if isinstance(value, Workload):
                workloads[value.uid] = value
            elif isinstance(value, Service):
                services[value.key] = value
            else:
                policies[value.key] = value

        by_ip: dict[str, Workload] = {}
        endpoints: dict[str, list[Workload]] = {}
        for uid in sorted(workloads):
            workload = workloads[uid]
            for address in workload.addresses:
                key = canonical_ip(address)
                current = by_ip.get(key)
                if current is None or _prefer(workload) < _prefer(current):
                    by_ip[key] = workload
            for service_key, _ports in workload.services:
                members = endpoints.setdefault(service_key, [])
                if not members or members[-1] is not workload:
                    members.append(workload)
        by_vip: dict[str, Service] = {}
        for key in sorted(services):
            for vip in services[key].vips:
                by_vip.setdefault(canonical_ip(vip), services[key])
        global_policies: list[Authorization] = []
        namespace_policies: dict[str, list[Authorization]] = {}
        for key in sorted(policies):
            policy = policies[key]
            if policy.scope is Scope.GLOBAL:
                global_policies.append(policy)
            elif policy.scope is Scope.NAMESPACE:
                namespace_policies.setdefault(policy.namespace, []).append(policy)

        self._entries: Mapping[str, Entry] = MappingProxyType(own)
        self._workloads: Mapping[str, Workload] = MappingProxyType(workloads)
        self._services: Mapping[str, Service] = MappingProxyType(services)
        self._policies: Mapping[str, Authorization] = MappingProxyType(policies)
        self._by_ip = by_ip
        self._by_vip = by_vip
        self._endpoints = {key: tuple(members) for key, members in endpoints.items()}
        self._global_policies = tuple(global_policies)
        self._namespace_policies = {ns: tuple(p) for ns, p in namespace_policies.items()}
        self._version = content_version((name, entry[0]) for name, entry in own.items())

    @classmethod
    def empty(cls) -> Snapshot:
        return cls({})

    @classmethod
    def build(cls, entries: Mapping[str, Entry]) -> Snapshot:
        return cls(entries)

    # -- contents -------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Content hash over every resource's name and version."""
        return self._version

    @property
    def entries(self) -> Mapping[str, Entry]:
        """Every resource: name -> (version, value)."""
        return self._entries

    @property
    def workloads(self) -> Mapping[str, Workload]:
        """Workloads by uid."""
        return self._workloads

    @property
    def services(self) -> Mapping[str, Service]:
        """Services by key (``<namespace>/<hostname>``)."""
        return self._services

    @property
    def policies(self) -> Mapping[str, Authorization]:
        """Authorization policies by key (``<namespace>/<name>``)."""
        return self._policies

    def versions(self, prefixes: tuple[str, ...] | None = None) -> dict[str, str]:
        """name -> version of every resource (only names starting with one of ``prefixes``, if given)."""
        if prefixes is None:
            return {name: entry[0] for name, entry in self._entries.items()}
        return {name: entry[0] for name, entry in self._entries.items() if name.startswith(prefixes)}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"Snapshot(version={self._version}, workloads={len(self._workloads)}, "
            f"services={len(self._services)}, policies={len(self._policies)})"
        )

    # -- lookups --------------------------------------------------------------------------------

    def find_workload_by_ip(self, ip: str) -> Workload | None:
        """The workload holding address ``ip`` (healthy preferred, then lowest uid), or None."""
        return self._by_ip.get(canonical_ip(ip))

    def find_service_by_vip(self, ip: str) -> Service | None:
        """The service with VIP ``ip`` (lowest key if several claim it), or None."""
        return self._by_vip.get(canonical_ip(ip))

    def endpoints(self, service_key: str) -> tuple[Workload, ...]:
        """Every workload that lists ``service_key`` in its services, by uid; health is not filtered."""
        return self._endpoints.get(service_key, ())

    def policies_for(self, workload: Workload) -> tuple[Authorization, ...]:
        """The policies that apply to ``workload``: every GLOBAL one, the NAMESPACE ones of its
        namespace, and the WORKLOAD_SELECTOR ones it lists (listed keys missing here are skipped).
        Sorted by key."""
        selected = {policy.key: policy for policy in self._global_policies}
        for policy in self._namespace_policies.get(workload.namespace, ()):
            selected[policy.key] = policy
        for key in workload.authorization_policies:
            listed = self._policies.get(key)
            if listed is not None and listed.scope is Scope.WORKLOAD_SELECTOR:
                selected[key] = listed
        return tuple(selected[key] for key in sorted(selected))

    # -- deriving -------------------------------------------------------------------------------

    def with_changes(self, upserts: Mapping[str, Entry], removals: Iterable[str]) -> Snapshot:
        """A new snapshot: this one with ``upserts`` set and ``removals`` dropped (unknown names ignored)."""
        entries = dict(self._entries)
        for name in removals:
            entries.pop(name, None)
        entries.update(upserts)
        return Snapshot(entries)
