"""Gateway API ReferenceGrant: which cross-namespace references are permitted (pure).

The rule lives here once (:func:`reference_permitted`); route translation
(``ambit.control.translate_routes.resolve_backend``, backendRefs and RequestMirror backends alike) and
the route status (``ambit.control.route_status``, through the same ``resolve_backend``) ask it, so
what the proxies get and what the status says cannot disagree.

The rule (``gateway.networking.k8s.io`` ReferenceGrant, v1beta1 and v1; the spec's "All cross-namespace
references in Gateway API (with the exception of cross-namespace Gateway-route attachment) require a
ReferenceGrant"):

* a reference within one namespace never needs a grant;
* a reference from an object of (group, kind) in namespace F to an object (group, kind, name) in
  namespace T is permitted when a ReferenceGrant **in T** has a ``from`` entry with that group, kind
  and namespace F, and a ``to`` entry with that group and kind whose ``name`` is unset (every object of
  that kind in T) or the referent's name. Entries of ``from`` and of ``to`` are each ORed; any one
  grant suffices;
* groups compare as written, except that ``""`` and ``core`` both mean the core group (a Service
  ``to`` entry is ``group: ""``); kinds and names compare exactly (case-sensitive, as Kubernetes);
* a grant of another apiVersion group, or whose fields are not strings, grants nothing. Removing a
  grant revokes what it permitted (translation and status are recomputed from the current objects).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ambit.resources.objects import JSON, items, mapping, name_of, namespace_or_default, text

REFERENCE_GRANT = "ReferenceGrant"
GATEWAY_GROUP = "gateway.networking.k8s.io"
_CORE_GROUPS = frozenset({"", "core"})


def _group(value: str) -> str:
    """A group as compared: the core group is ``""`` however it is written."""
    return "" if value in _CORE_GROUPS else value


@dataclass(frozen=True, slots=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True, slots=True)
class GrantTo:
    group: str
    kind: str
    name: str = ""  # "": every object of the kind in the grant's namespace


@dataclass(frozen=True, slots=True)
class Grant:
    """One ReferenceGrant: in ``namespace``, trusting ``sources`` to reference ``targets``."""

    namespace: str
    name: str
    sources: tuple[GrantFrom, ...]
    targets: tuple[GrantTo, ...]


def is_reference_grant(obj: Any) -> bool:
    """A ReferenceGrant of the Gateway API's group (any served version)."""
    return (
        isinstance(obj, dict)
        and text(obj, "kind") == REFERENCE_GRANT
        and text(obj, "apiVersion").startswith(GATEWAY_GROUP + "/")
    )


def grant_of(obj: JSON) -> Grant | None:
    """The grant a store object states, or None when it is not a ReferenceGrant of the Gateway API."""
    if not is_reference_grant(obj):
        return None
    spec = mapping(obj, "spec")
    sources = tuple(
        GrantFrom(_group(text(entry, "group")), text(entry, "kind"), text(entry, "namespace"))
        for entry in items(spec, "from")
    )
    targets = tuple(
        GrantTo(_group(text(entry, "group")), text(entry, "kind"), text(entry, "name"))
        for entry in items(spec, "to")
    )
    return Grant(namespace_or_default(obj), name_of(obj), sources, targets)


@dataclass(frozen=True)
class ReferenceGrants:
    """Every ReferenceGrant by the namespace it is in (the namespace whose objects it lets others use)."""

    by_namespace: Mapping[str, tuple[Grant, ...]] = field(default_factory=dict)

    @classmethod
    def from_objects(cls, objects: Iterable[Any]) -> ReferenceGrants:
        """The grants among ``objects`` (anything else is passed over)."""
        found: dict[str, list[Grant]] = {}
        for obj in objects:
            grant = grant_of(obj) if isinstance(obj, dict) else None
            if grant is not None:
                found.setdefault(grant.namespace, []).append(grant)
        return cls({ns: tuple(grants) for ns, grants in found.items()})

    def in_namespace(self, namespace: str) -> tuple[Grant, ...]:
        return tuple(self.by_namespace.get(namespace, ()))


NO_GRANTS = ReferenceGrants()


def reference_permitted(
    grants: ReferenceGrants,
    *,
    from_group: str,
    from_kind: str,
    from_namespace: str,
    to_group: str,
    to_kind: str,
    to_namespace: str,
    to_name: str,
) -> bool:
    """Whether an object of (``from_group``, ``from_kind``) in ``from_namespace`` may reference the object
    (``to_group``, ``to_kind``, ``to_name``) in ``to_namespace`` (module docstring)."""
    if from_namespace == to_namespace:
        return True
    source = GrantFrom(_group(from_group), from_kind, from_namespace)
    wanted_group = _group(to_group)
    for grant in grants.in_namespace(to_namespace):
        if source not in grant.sources:
            continue
        if any(
            target.group == wanted_group and target.kind == to_kind and target.name in ("", to_name)
            for target in grant.targets
        ):
            return True
    return False
