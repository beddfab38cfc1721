"""An immutable snapshot of the mesh as a proxy sees it, with the indexes routing and policy need.

A snapshot is a set of named, versioned resources (``name -> (version, value)``):

* ``wl/<uid>`` → :class:`~ambit.model.workload.Workload`;
* ``svc/<namespace>/<hostname>`` → :class:`~ambit.model.workload.Service` (``svc/`` + ``Service.key``);
* ``ap/<namespace>/<name>`` → :class:`~ambit.model.policy.Authorization` (``ap/`` + ``Authorization.key``);
* ``l7/<namespace>/<name>`` → :class:`~ambit.model.policy.L7Authorization` (``l7/`` + its key): a
  waypoint's policy, indexed by the Gateways and Services it targets (:meth:`Snapshot.l7_policies_for`).
  Every proxy may hold them; only waypoints read them;
* ``rt/<namespace>/<kind>/<name>/<service key>[:<port>]`` → :class:`~ambit.model.route.HttpRoute`
  (``rt/`` + ``HttpRoute.key``): a Gateway API route (GAMMA) as it applies to one Service, indexed by
  that Service (:meth:`Snapshot.routes_for`). Every proxy may hold them; only waypoints read them;
* ``tp/<namespace>/<name>`` → :class:`~ambit.model.traffic_policy.TrafficPolicy` (``tp/`` +
  ``TrafficPolicy.key``): the DestinationRules of one Service (connection pool, outlier detection, subsets),
  indexed by that Service (:meth:`Snapshot.traffic_policy_for`). Only waypoints read them;
* ``rl/<namespace>/<name>`` → :class:`~ambit.model.rate_limit.RateLimitPolicy` (``rl/`` +
  ``RateLimitPolicy.key``): an HTTPLocalRateLimitPolicy, indexed by the Gateways and Services it targets
  (:meth:`Snapshot.rate_limits_for`). Only waypoints read them.

Built once, never changed: a connection takes the current snapshot and every decision it makes sees
the same config. ``version`` is a content hash over the resources' names and versions, so two
snapshots with the same resources at the same versions have the same version, whoever built them.

Lookups are deterministic when several workloads share an address (e.g. a pod being replaced): a
healthy one wins over an unhealthy one, then the lowest uid. Addresses are compared in their
canonical form (``ipaddress``), so ``::1`` and ``0:0::1`` are the same address. Pure: no I/O.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TypeVar

from ambit.model.policy import Authorization, L7Authorization, Scope
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import HealthStatus, Service, Workload

Resource = Workload | Service | Authorization | L7Authorization | HttpRoute | TrafficPolicy | RateLimitPolicy
Entry = tuple[str, Resource]  # (version, value)

WORKLOAD_PREFIX = "wl/"
SERVICE_PREFIX = "svc/"
POLICY_PREFIX = "ap/"
L7_POLICY_PREFIX = "l7/"
ROUTE_PREFIX = "rt/"
TRAFFIC_POLICY_PREFIX = "tp/"
RATE_LIMIT_PREFIX = "rl/"

_MASK = (1 << 64) - 1
_Targeted = TypeVar("_Targeted", L7Authorization, RateLimitPolicy)  # policies indexed by their targets
_Keyed = TypeVar("_Keyed", Authorization, L7Authorization, HttpRoute, TrafficPolicy, RateLimitPolicy)


def resource_name(value: Resource) -> str:
    """The resource name of a workload, service, policy or route (see the module docstring)."""
    if isinstance(value, Workload):
        return WORKLOAD_PREFIX + value.uid
    if isinstance(value, Service):
        return SERVICE_PREFIX + value.key
    if isinstance(value, Authorization):
        return POLICY_PREFIX + value.key
    if isinstance(value, L7Authorization):
        return L7_POLICY_PREFIX + value.key
    if isinstance(value, HttpRoute):
        return ROUTE_PREFIX + value.key
    if isinstance(value, TrafficPolicy):
        return TRAFFIC_POLICY_PREFIX + value.key
    if isinstance(value, RateLimitPolicy):
        return RATE_LIMIT_PREFIX + value.key
    raise TypeError(f"not a mesh resource: {type(value).__name__}")


def check_entry(name: str, entry: Entry) -> None:
    """Raise ValueError unless ``entry`` is a (version, value) pair whose value is named ``name``."""
    version, value = entry
    if not isinstance(version, str) or not version:
        raise ValueError(f"resource {name!r} has no version")
    expected = resource_name(value)
    if expected != name:
        raise ValueError(f"resource named {name!r} holds a value named {expected!r}")


@functools.lru_cache(maxsize=4096)  # per request on the proxies' hot paths; bounded, so any input is safe
def canonical_ip(text: str) -> str:
    """The canonical text of an IP address; the input unchanged when it is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


def _entry_hash(name: str, version: str) -> int:
    digest = hashlib.sha256(f"{name}\0{version}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big")


def _format_version(total: int) -> str:
    return f"{total & _MASK:016x}"


def versions_digest(names_and_versions: Iterable[tuple[str, str]]) -> str:
    """A short content hash over distinct (name, version) pairs, independent of their order.

    The sum (mod 2**64) of a hash of each pair, so a snapshot can update it per changed resource."""
    return _format_version(sum(_entry_hash(name, version) for name, version in names_and_versions))


def _prefer(workload: Workload) -> tuple[int, str]:
    return (0 if workload.status is HealthStatus.HEALTHY else 1, workload.uid)


class Snapshot:
    """The immutable, indexed config of one moment; build with :meth:`build` or :meth:`empty`.

    :meth:`with_changes` derives a new snapshot by copying the maps and updating only the index
    entries the changed resources touch; the result equals a full rebuild from the same entries.
    """

    __slots__ = (
        "_by_ip",
        "_by_vip",
        "_endpoints",
        "_entries",
        "_global_policies",
        "_hash",
        "_ip_holders",
        "_l7_by_target",
        "_l7_policies",
        "_namespace_policies",
        "_own",
        "_policies",
        "_rate_limits",
        "_rate_limits_by_target",
        "_routes",
        "_routes_by_service",
        "_services",
        "_traffic_by_service",
        "_traffic_policies",
        "_vip_holders",
        "_workloads",
    )

    _own: dict[str, Entry]
    _entries: Mapping[str, Entry]
    _workloads: dict[str, Workload]
    _services: dict[str, Service]
    _policies: dict[str, Authorization]
    _ip_holders: dict[str, tuple[Workload, ...]]  # canonical address -> every workload holding it
    _by_ip: dict[str, Workload]
    _vip_holders: dict[str, tuple[str, ...]]  # canonical VIP -> keys of every service claiming it, sorted
    _by_vip: dict[str, Service]
    _endpoints: dict[str, tuple[Workload, ...]]
    _global_policies: tuple[Authorization, ...]
    _namespace_policies: dict[str, tuple[Authorization, ...]]
    _l7_policies: dict[str, L7Authorization]
    _l7_by_target: dict[tuple[str, str, str], tuple[L7Authorization, ...]]  # (kind, ns, name) -> by key
    _routes: dict[str, HttpRoute]
    _routes_by_service: dict[str, tuple[HttpRoute, ...]]  # service key -> its routes, by key
    _traffic_policies: dict[str, TrafficPolicy]
    _traffic_by_service: dict[str, TrafficPolicy]  # service key -> its traffic policy
    _rate_limits: dict[str, RateLimitPolicy]
    _rate_limits_by_target: dict[tuple[str, str, str], tuple[RateLimitPolicy, ...]]  # as _l7_by_target
    _hash: int

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        """Build a snapshot from ``name -> (version, value)``; raises ValueError for a misnamed entry."""
        own: dict[str, Entry] = {}
        workloads: dict[str, Workload] = {}
        services: dict[str, Service] = {}
        keyed: list[Resource] = []  # policies, routes, traffic and rate limit policies
        total = 0
        for name, entry in entries.items():
            check_entry(name, entry)
            own[name] = entry
            total += _entry_hash(name, entry[0])
            value = entry[1]
            if isinstance(value, Workload):
                workloads[value.uid] = value
            elif isinstance(value, Service):
                services[value.key] = value
            else:
                keyed.append(value)

        ip_holders: dict[str, list[Workload]] = {}
        endpoints: dict[str, list[Workload]] = {}
        for uid in sorted(workloads):
            workload = workloads[uid]
            for key in _addresses(workload):
                ip_holders.setdefault(key, []).append(workload)
            for service_key in _service_keys(workload):
                endpoints.setdefault(service_key, []).append(workload)
        vip_holders: dict[str, list[str]] = {}
        for key in sorted(services):
            for vip in _vips(services[key]):
                vip_holders.setdefault(vip, []).append(key)

        self._own = own
        self._entries = MappingProxyType(own)
        self._workloads = workloads
        self._services = services
        self._ip_holders = {ip: tuple(holders) for ip, holders in ip_holders.items()}
        self._by_ip = {ip: min(holders, key=_prefer) for ip, holders in ip_holders.items()}
        self._vip_holders = {vip: tuple(keys) for vip, keys in vip_holders.items()}
        self._by_vip = {vip: services[keys[0]] for vip, keys in vip_holders.items()}
        self._endpoints = {key: tuple(members) for key, members in endpoints.items()}
        self._set_keyed(keyed)
        self._hash = total & _MASK

    def _set_keyed(self, values: list[Resource]) -> None:
        """Set the maps (by key) and indexes of the policies, routes, traffic and rate limit policies."""
        policies = _of_type(values, Authorization)
        self._policies = policies
        self._global_policies, self._namespace_policies = _policy_indexes(policies)
        self._l7_policies = _of_type(values, L7Authorization)
        self._l7_by_target = _target_index(self._l7_policies)
        self._routes = _of_type(values, HttpRoute)
        self._routes_by_service = _route_index(self._routes)
        self._traffic_policies = _of_type(values, TrafficPolicy)
        self._traffic_by_service = _traffic_index(self._traffic_policies)
        self._rate_limits = _of_type(values, RateLimitPolicy)
        self._rate_limits_by_target = _target_index(self._rate_limits)

    @classmethod
    def empty(cls) -> Snapshot:
        return cls({})

    @classmethod
    def build(cls, entries: Mapping[str, Entry]) -> Snapshot:
        return cls(entries)

    # -- contents -------------------------------------------------------------------------------

    @property
    def version(self) -> str:
        """Content hash over every resource's name and version (see :func:`versions_digest`)."""
        return _format_version(self._hash)

    @property
    def entries(self) -> Mapping[str, Entry]:
        """Every resource: name -> (version, value)."""
        return self._entries

    @property
    def workloads(self) -> Mapping[str, Workload]:
        """Workloads by uid."""
        return MappingProxyType(self._workloads)

    @property
    def services(self) -> Mapping[str, Service]:
        """Services by key (``<namespace>/<hostname>``)."""
        return MappingProxyType(self._services)

    @property
    def policies(self) -> Mapping[str, Authorization]:
        """Authorization policies by key (``<namespace>/<name>``)."""
        return MappingProxyType(self._policies)

    @property
    def l7_policies(self) -> Mapping[str, L7Authorization]:
        """Waypoint (L7) policies by key (``<namespace>/<name>``)."""
        return MappingProxyType(self._l7_policies)

    @property
    def routes(self) -> Mapping[str, HttpRoute]:
        """Gateway API routes by key (``HttpRoute.key``)."""
        return MappingProxyType(self._routes)

    @property
    def traffic_policies(self) -> Mapping[str, TrafficPolicy]:
        """DestinationRule traffic policies by key (``<namespace>/<name>``)."""
        return MappingProxyType(self._traffic_policies)

    @property
    def rate_limits(self) -> Mapping[str, RateLimitPolicy]:
        """HTTPLocalRateLimitPolicies by key (``<namespace>/<name>``)."""
        return MappingProxyType(self._rate_limits)

    def versions(self, prefixes: tuple[str, ...] | None = None) -> dict[str, str]:
        """name -> version of every resource (only names starting with one of ``prefixes``, if given)."""
        if prefixes is None:
            return {name: entry[0] for name, entry in self._entries.items()}
        return {name: entry[0] for name, entry in self._entries.items() if name.startswith(prefixes)}

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return (
            f"Snapshot(version={self.version}, workloads={len(self._workloads)}, "
            f"services={len(self._services)}, policies={len(self._policies)}, "
            f"l7_policies={len(self._l7_policies)}, routes={len(self._routes)}, "
            f"traffic_policies={len(self._traffic_policies)}, rate_limits={len(self._rate_limits)})"
        )

    # -- lookups --------------------------------------------------------------------------------

    def find_workload_by_ip(self, ip: str) -> Workload | None:
        """The workload holding address ``ip`` (healthy preferred, then lowest uid), or None."""
        found = self._by_ip.get(ip)  # addresses are almost always canonical already
        return found if found is not None else self._by_ip.get(canonical_ip(ip))

    def find_service_by_vip(self, ip: str) -> Service | None:
        """The service with VIP ``ip`` (lowest key if several claim it), or None."""
        found = self._by_vip.get(ip)
        return found if found is not None else self._by_vip.get(canonical_ip(ip))

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

    def l7_policies_for(self, kind: str, namespace: str, name: str) -> tuple[L7Authorization, ...]:
        """The L7 policies that target the ``kind`` (``"Gateway"`` or ``"Service"``) ``namespace/name``,
        sorted by key; () when none do (or for any other kind). An index lookup, built with the snapshot."""
        return self._l7_by_target.get((kind, namespace, name), ())

    def routes_for(self, service_key: str) -> tuple[HttpRoute, ...]:
        """The routes whose parent is the Service ``service_key`` (``<namespace>/<hostname>``), on any
        port, sorted by key; () when none. An index lookup, built with the snapshot. The order is not
        the Gateway API precedence: ``ambit.routing.http_routes.route_table`` applies that."""
        return self._routes_by_service.get(service_key, ())

    def traffic_policy_for(self, service_key: str) -> TrafficPolicy | None:
        """The traffic policy (connection pool, outlier detection) of the Service ``service_key``
        (``<namespace>/<hostname>``), or None. An index lookup, built with the snapshot; should two
        policies name one Service (translation gives at most one), the lowest key wins."""
        return self._traffic_by_service.get(service_key)

    def rate_limits_for(self, kind: str, namespace: str, name: str) -> tuple[RateLimitPolicy, ...]:
        """The rate limit policies that target the ``kind`` (``"Gateway"`` or ``"Service"``)
        ``namespace/name``, sorted by key; () when none do (or for any other kind). An index lookup,
        built with the snapshot."""
        return self._rate_limits_by_target.get((kind, namespace, name), ())

    # -- deriving -------------------------------------------------------------------------------

    def with_changes(self, upserts: Mapping[str, Entry], removals: Iterable[str]) -> Snapshot:
        """A new snapshot: this one with ``upserts`` set and ``removals`` dropped (unknown names ignored).

        Raises ValueError for a misnamed upsert. Costs a copy of the maps plus work proportional to
        what the changed resources touch, not a rebuild of every index."""
        for name, entry in upserts.items():
            check_entry(name, entry)
        own = dict(self._own)
        old_entries: dict[str, Entry] = {}
        for name in removals:
            removed = own.pop(name, None)
            if removed is not None:
                old_entries.setdefault(name, removed)
        for name, entry in upserts.items():
            previous = own.get(name)
            own[name] = entry
            if name not in old_entries and previous is not None:
                old_entries[name] = previous

        total = self._hash
        old_workloads: list[Workload] = []
        new_workloads: list[Workload] = []
        old_services: list[Service] = []
        new_services: list[Service] = []
        changed: set[type] = set()  # the other types with a changed resource
        for name in old_entries.keys() | upserts.keys():
            old = old_entries.get(name)
            new = own.get(name)
            if old is new:
                continue
            for item, sign in ((old, -1), (new, 1)):
                if item is None:
                    continue
                total += sign * _entry_hash(name, item[0])
                value = item[1]
                if isinstance(value, Workload):
                    (old_workloads if sign < 0 else new_workloads).append(value)
                elif isinstance(value, Service):
                    (old_services if sign < 0 else new_services).append(value)
                else:
                    changed.add(type(value))

        snap = Snapshot.__new__(Snapshot)
        snap._own = own
        snap._entries = MappingProxyType(own)
        snap._hash = total & _MASK
        snap._workloads, snap._ip_holders, snap._by_ip, snap._endpoints = self._derive_workloads(
            old_workloads, new_workloads
        )
        snap._services, snap._vip_holders, snap._by_vip = self._derive_services(old_services, new_services)
        self._derive_policies(
            snap, policies_changed=Authorization in changed, l7_changed=L7Authorization in changed
        )
        self._derive_routes(snap, changed=HttpRoute in changed)
        self._derive_traffic_policies(snap, changed=TrafficPolicy in changed)
        self._derive_rate_limits(snap, changed=RateLimitPolicy in changed)
        return snap

    def _derive_rate_limits(self, snap: Snapshot, *, changed: bool) -> None:
        """Set ``snap``'s rate limit policies and their index: rebuilt from its entries if any changed,
        else shared with this snapshot."""
        if changed:
            policies = _of_type([entry[1] for entry in snap._own.values()], RateLimitPolicy)
            snap._rate_limits = policies
            snap._rate_limits_by_target = _target_index(policies)
        else:
            snap._rate_limits = self._rate_limits
            snap._rate_limits_by_target = self._rate_limits_by_target

    def _derive_traffic_policies(self, snap: Snapshot, *, changed: bool) -> None:
        """Set ``snap``'s traffic policies and their index: rebuilt from its entries if any changed, else
        shared with this snapshot."""
        if changed:
            policies = {
                entry[1].key: entry[1] for entry in snap._own.values() if isinstance(entry[1], TrafficPolicy)
            }
            snap._traffic_policies = policies
            snap._traffic_by_service = _traffic_index(policies)
        else:
            snap._traffic_policies = self._traffic_policies
            snap._traffic_by_service = self._traffic_by_service

    def _derive_routes(self, snap: Snapshot, *, changed: bool) -> None:
        """Set ``snap``'s routes and their index: rebuilt from its entries if any route changed, else
        shared with this snapshot."""
        if changed:
            routes = {
                entry[1].key: entry[1] for entry in snap._own.values() if isinstance(entry[1], HttpRoute)
            }
            snap._routes = routes
            snap._routes_by_service = _route_index(routes)
        else:
            snap._routes = self._routes
            snap._routes_by_service = self._routes_by_service

    def _derive_policies(self, snap: Snapshot, *, policies_changed: bool, l7_changed: bool) -> None:
        """Set ``snap``'s L4 and L7 policy maps and indexes: rebuilt from its entries where they
        changed, else shared with this snapshot."""
        if policies_changed:
            policies = {
                entry[1].key: entry[1] for entry in snap._own.values() if isinstance(entry[1], Authorization)
            }
            snap._policies = policies
            snap._global_policies, snap._namespace_policies = _policy_indexes(policies)
        else:
            snap._policies = self._policies
            snap._global_policies = self._global_policies
            snap._namespace_policies = self._namespace_policies
        if l7_changed:
            l7_policies = {
                entry[1].key: entry[1]
                for entry in snap._own.values()
                if isinstance(entry[1], L7Authorization)
            }
            snap._l7_policies = l7_policies
            snap._l7_by_target = _target_index(l7_policies)
        else:
            snap._l7_policies = self._l7_policies
            snap._l7_by_target = self._l7_by_target

    def _derive_workloads(
        self, old: list[Workload], new: list[Workload]
    ) -> tuple[
        dict[str, Workload],
        dict[str, tuple[Workload, ...]],
        dict[str, Workload],
        dict[str, tuple[Workload, ...]],
    ]:
        if not old and not new:
            return self._workloads, self._ip_holders, self._by_ip, self._endpoints
        workloads = dict(self._workloads)
        for workload in old:
            workloads.pop(workload.uid, None)
        for workload in new:
            workloads[workload.uid] = workload
        # Per address / service key: the uids to drop, then the workloads to add.
        ip_drop: dict[str, set[str]] = {}
        ip_add: dict[str, list[Workload]] = {}
        ep_drop: dict[str, set[str]] = {}
        ep_add: dict[str, list[Workload]] = {}
        for workload in old:
            for key in _addresses(workload):
                ip_drop.setdefault(key, set()).add(workload.uid)
            for key in _service_keys(workload):
                ep_drop.setdefault(key, set()).add(workload.uid)
        for workload in new:
            for key in _addresses(workload):
                ip_add.setdefault(key, []).append(workload)
            for key in _service_keys(workload):
                ep_add.setdefault(key, []).append(workload)

        ip_holders = dict(self._ip_holders)
        by_ip = dict(self._by_ip)
        for key in ip_drop.keys() | ip_add.keys():
            drop = ip_drop.get(key, ())
            holders = [w for w in ip_holders.get(key, ()) if w.uid not in drop]
            holders.extend(ip_add.get(key, ()))
            if holders:
                holders.sort(key=_uid)
                ip_holders[key] = tuple(holders)
                by_ip[key] = min(holders, key=_prefer)
            else:
                ip_holders.pop(key, None)
                by_ip.pop(key, None)

        endpoints = dict(self._endpoints)
        for key in ep_drop.keys() | ep_add.keys():
            drop = ep_drop.get(key, ())
            members = [w for w in endpoints.get(key, ()) if w.uid not in drop]
            members.extend(ep_add.get(key, ()))
            if members:
                members.sort(key=_uid)
                endpoints[key] = tuple(members)
            else:
                endpoints.pop(key, None)
        return workloads, ip_holders, by_ip, endpoints

    def _derive_services(
        self, old: list[Service], new: list[Service]
    ) -> tuple[dict[str, Service], dict[str, tuple[str, ...]], dict[str, Service]]:
        if not old and not new:
            return self._services, self._vip_holders, self._by_vip
        services = dict(self._services)
        for service in old:
            services.pop(service.key, None)
        for service in new:
            services[service.key] = service
        affected: dict[str, tuple[set[str], set[str]]] = {}  # vip -> (keys to drop, keys to add)
        for service in old:
            for vip in _vips(service):
                affected.setdefault(vip, (set(), set()))[0].add(service.key)
        for service in new:
            for vip in _vips(service):
                affected.setdefault(vip, (set(), set()))[1].add(service.key)
        vip_holders = dict(self._vip_holders)
        by_vip = dict(self._by_vip)
        for vip, (drop, add) in affected.items():
            keys = (set(vip_holders.get(vip, ())) - drop) | add
            if keys:
                ordered = tuple(sorted(keys))
                vip_holders[vip] = ordered
                by_vip[vip] = services[ordered[0]]
            else:
                vip_holders.pop(vip, None)
                by_vip.pop(vip, None)
        return services, vip_holders, by_vip


def _uid(workload: Workload) -> str:
    return workload.uid


def _addresses(workload: Workload) -> dict[str, None]:
    """The canonical forms of a workload's addresses, each once, in order."""
    return dict.fromkeys(canonical_ip(address) for address in workload.addresses)


def _service_keys(workload: Workload) -> dict[str, None]:
    """The keys of the services a workload lists, each once, in order."""
    return dict.fromkeys(key for key, _ports in workload.services)


def _vips(service: Service) -> dict[str, None]:
    """The canonical forms of a service's VIPs, each once, in order."""
    return dict.fromkeys(canonical_ip(vip) for vip in service.vips)


def _policy_indexes(
    policies: Mapping[str, Authorization],
) -> tuple[tuple[Authorization, ...], dict[str, tuple[Authorization, ...]]]:
    """(the GLOBAL policies, namespace -> its NAMESPACE policies), each sorted by key."""
    global_policies: list[Authorization] = []
    namespace_policies: dict[str, list[Authorization]] = {}
    for key in sorted(policies):
        policy = policies[key]
        if policy.scope is Scope.GLOBAL:
            global_policies.append(policy)
        elif policy.scope is Scope.NAMESPACE:
            namespace_policies.setdefault(policy.namespace, []).append(policy)
    return tuple(global_policies), {ns: tuple(p) for ns, p in namespace_policies.items()}


def _of_type(values: Iterable[Resource], kind: type[_Keyed]) -> dict[str, _Keyed]:
    """The values of type ``kind`` by key."""
    return {value.key: value for value in values if isinstance(value, kind)}


def _target_index(policies: Mapping[str, _Targeted]) -> dict[tuple[str, str, str], tuple[_Targeted, ...]]:
    """(target kind, namespace, name) -> the policies (L7 or rate limit) targeting it, sorted by key."""
    index: dict[tuple[str, str, str], list[_Targeted]] = {}
    for key in sorted(policies):
        policy = policies[key]
        for target in dict.fromkeys(policy.targets):
            index.setdefault((target.kind, target.namespace, target.name), []).append(policy)
    return {target: tuple(found) for target, found in index.items()}


def _route_index(routes: Mapping[str, HttpRoute]) -> dict[str, tuple[HttpRoute, ...]]:
    """service key -> the routes whose parent it is, sorted by key."""
    index: dict[str, list[HttpRoute]] = {}
    for key in sorted(routes):
        route = routes[key]
        index.setdefault(route.service_key, []).append(route)
    return {service_key: tuple(found) for service_key, found in index.items()}


def _traffic_index(policies: Mapping[str, TrafficPolicy]) -> dict[str, TrafficPolicy]:
    """service key -> its traffic policy (the lowest key, should several name one Service)."""
    index: dict[str, TrafficPolicy] = {}
    for key in sorted(policies):
        index.setdefault(policies[key].service_key, policies[key])
    return index
