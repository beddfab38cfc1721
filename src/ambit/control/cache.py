"""The snapshot cache: the control plane's current resources, encoded once, shared by every stream.

Translation hands the cache the complete set of resources (``name -> (version, value)``) with
:meth:`SnapshotCache.set`; names are ``wl/<uid>``, ``svc/<ns>/<hostname>``, ``ap/<ns>/<name>``,
``l7/<ns>/<name>``, ``rt/<route key>``, ``tp/<ns>/<name>`` and ``rl/<ns>/<name>``
(``ambit.state.resource_name``). The Address type carries
``wl/`` and ``svc/`` names, the Authorization type ``ap/`` names, the L7Authorization type (waypoints'
policies) ``l7/`` names and the HttpRoute type (waypoints' Gateway API routes) ``rt/`` names; the
TrafficPolicy type (waypoints' DestinationRule connection pool, outlier detection, subsets) ``tp/`` names and
the RateLimitPolicy type (waypoints' HTTPLocalRateLimitPolicy) ``rl/`` names.
A resource is encoded to its wire form only when its version changes; every proxy stream then sends
those same bytes.

Versions should be derived from content (``ambit.model.version.content_version``, shortened to
16 hex digits on the wire, and :func:`versioned`), so replicas that
translate the same store serve the same versions and a proxy that moves between them is sent nothing
it already has. A value that cannot be encoded (an address that is not an IP) does not stop the others:
its previous good version stays in the cache (or it is left out if it never had one) and the error is
logged and counted.

Listeners are plain callbacks, called after every change on the thread that called ``set`` (the
control plane's event loop).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ambit.model.policy import Authorization, L7Authorization
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.version import content_version
from ambit.model.workload import Service, Workload
from ambit.state.snapshot import resource_name, versions_digest
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2

log = logging.getLogger(__name__)

Value = Workload | Service | Authorization | L7Authorization | HttpRoute | TrafficPolicy | RateLimitPolicy
_VERSION_CHARS = 16


def versioned(values: Iterable[Value]) -> dict[str, tuple[str, Value]]:
    """``name -> (content version, value)`` for ``values``, ready for :meth:`SnapshotCache.set`.

    Raises ValueError when two values have the same name.
    """
    result: dict[str, tuple[str, Value]] = {}
    for value in values:
        name = resource_name(value)
        if name in result:
            raise ValueError(f"two resources are named {name}")
        result[name] = (content_version(value, _VERSION_CHARS), value)
    return result


class Versioner:
    """:func:`versioned` with a memo: a value equal to one of the previous call's keeps its version.

    Translation builds new, equal objects for every resource that did not change; re-encoding and
    hashing them all on every change is most of the cost of versioning. Values are frozen dataclasses,
    hashable and compared by value, so the previous call's ``value -> (version, value)`` answers for
    them (and hands back the previous, equal object, so the cache sees the very same value). The memo
    is rebuilt on every call from that call's values only, so it never outgrows one generation.
    """

    def __init__(self) -> None:
        self._memo: dict[Value, tuple[str, Value]] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, values: Iterable[Value]) -> dict[str, tuple[str, Value]]:
        """Like :func:`versioned`; raises ValueError when two values have the same name."""
        memo = self._memo
        fresh: dict[Value, tuple[str, Value]] = {}
        result: dict[str, tuple[str, Value]] = {}
        for value in values:
            name = resource_name(value)
            if name in result:
                raise ValueError(f"two resources are named {name}")
            try:
                entry = memo.get(value)
            except TypeError:  # an unhashable field: version it without the memo
                result[name] = (content_version(value, _VERSION_CHARS), value)
                self.misses += 1
                continue
            if entry is None:
                entry = (content_version(value, _VERSION_CHARS), value)
                self.misses += 1
            else:
                self.hits += 1
            fresh[value] = entry
            result[name] = entry
        self._memo = fresh
        return result


@dataclass(frozen=True, slots=True)
class CachedResource:
    name: str
    version: str
    value: Value
    wire: discovery_pb2.Resource


class CacheSnapshot:
    """One immutable state of the cache: resources per type, and a content hash over all of them."""

    __slots__ = ("_by_type", "_versions", "ready", "version")

    def __init__(self, resources: Mapping[str, CachedResource], *, ready: bool) -> None:
        by_type: dict[str, dict[str, CachedResource]] = {url: {} for url in codec.TYPE_URLS}
        for name, resource in resources.items():
            type_url = codec.type_url_for_name(name)
            if type_url is None:
                raise ValueError(
                    f"resource name {name!r} has no known prefix (wl/, svc/, ap/, l7/, rt/, tp/, rl/)"
                )
            by_type[type_url][name] = resource
        self._by_type: Mapping[str, Mapping[str, CachedResource]] = MappingProxyType(
            {url: MappingProxyType(items) for url, items in by_type.items()}
        )
        self._versions: Mapping[str, Mapping[str, str]] = MappingProxyType(
            {
                url: MappingProxyType({name: r.version for name, r in items.items()})
                for url, items in by_type.items()
            }
        )
        self.ready = ready
        self.version = versions_digest((name, r.version) for name, r in resources.items())

    def resources(self, type_url: str) -> Mapping[str, CachedResource]:
        return self._by_type.get(type_url, MappingProxyType({}))

    def versions(self, type_url: str) -> Mapping[str, str]:
        """name -> version of every resource of ``type_url``."""
        return self._versions.get(type_url, MappingProxyType({}))

    def wire(self, type_url: str, names: Iterable[str]) -> dict[str, discovery_pb2.Resource]:
        resources = self.resources(type_url)
        return {name: resources[name].wire for name in names}

    def __len__(self) -> int:
        return sum(len(items) for items in self._by_type.values())


Listener = Callable[[CacheSnapshot], None]


class SnapshotCache:
    """Holds the current :class:`CacheSnapshot`; see the module docstring."""

    def __init__(self) -> None:
        self._resources: dict[str, CachedResource] = {}
        self._snapshot = CacheSnapshot({}, ready=False)
        self._listeners: list[Listener] = []
        self.encode_errors = 0
        self.sets = 0

    @property
    def current(self) -> CacheSnapshot:
        return self._snapshot

    @property
    def ready(self) -> bool:
        """True once ``set`` was called: until then the cache is not the truth and must not be served."""
        return self._snapshot.ready

    def set(self, resources: Mapping[str, tuple[str, Value]]) -> CacheSnapshot:
        """Replace the whole content with ``resources`` (name -> (version, value)); return the snapshot.

        Raises ValueError (and changes nothing) when a name does not match its value.
        """
        updated: dict[str, CachedResource] = {}
        errors = 0
        for name, (version, value) in resources.items():
            old = self._resources.get(name)
            if old is not None and old.version == version and (old.value is value or old.value == value):
                updated[name] = old
                continue
            expected = resource_name(value)
            if name != expected:
                raise ValueError(f"resource named {name!r} holds a value named {expected!r}")
            if not version:
                raise ValueError(f"resource {name!r} has no version")
            try:
                wire = codec.encode_resource(name, version, value)
            except codec.CodecError as exc:
                errors += 1
                if old is not None:
                    updated[name] = old
                log.error(
                    "cannot encode %s at version %s (%s); %s",
                    name,
                    version,
                    exc.reason,
                    f"keeping version {old.version}" if old is not None else "leaving it out",
                )
                continue
            updated[name] = CachedResource(name, version, value, wire)
        self.sets += 1
        self.encode_errors += errors
        was_ready = self._snapshot.ready
        unchanged = updated.keys() == self._resources.keys() and all(
            updated[name] is self._resources[name] for name in updated
        )
        self._resources = updated
        if unchanged and was_ready:
            return self._snapshot
        self._snapshot = CacheSnapshot(updated, ready=True)
        for listener in list(self._listeners):
            try:
                listener(self._snapshot)
            except Exception:
                log.exception("snapshot cache listener %r failed", listener)
        return self._snapshot

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(snapshot)`` after every change; returns a function that unsubscribes."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe
