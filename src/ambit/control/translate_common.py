"""Shared pieces of the translation: the object index, the labels translation reads, a tolerant selector.

The store hands translation validated, normalized objects, but translation must never crash on an
object it did not expect (a control plane that dies on one odd object fails every proxy): the
accessors it uses (``ambit.resources.objects``) check types and fall back to an empty value. Pure:
no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ambit.resources.objects import JSON, SelectorError, labels, name_of, namespace_of, selector_matches, text

ObjectKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds

# Labels and annotations translation reads (Istio's names, so Istio manifests and habits carry over);
# the enrolment and waypoint-use labels live with their rules in ``ambit.resources.objects``.
TUNNEL_LABEL = "networking.istio.io/tunnel"
REDIRECTION_ANNOTATION = "ambient.istio.io/redirection"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
LOCALITY_LABEL = "istio-locality"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def selects(selector: Any, target: Mapping[str, str], what: str, warnings: list[str]) -> bool:
    """:func:`selector_matches`, except that a selector it cannot evaluate selects nothing (a warning).

    Translation must not stop on one odd object; validation refuses unknown operators at apply
    time, so this only guards objects that reached the store some other way."""
    try:
        return selector_matches(selector if isinstance(selector, dict) else None, target)
    except SelectorError as exc:
        warnings.append(f"{what}: {exc}; it selects nothing")
        return False


@dataclass
class Index:
    """The store's objects grouped by kind, each group sorted by (namespace, name) for determinism."""

    by_key: dict[ObjectKey, JSON]
    by_kind: dict[str, list[JSON]] = field(default_factory=dict)
    by_kind_namespace: dict[tuple[str, str], list[JSON]] = field(default_factory=dict)

    @classmethod
    def build(cls, objects: Mapping[ObjectKey, JSON]) -> Index:
        index = cls(by_key=dict(objects))
        for key in sorted(objects):
            index.by_kind.setdefault(key[0], []).append(objects[key])
            index.by_kind_namespace.setdefault((key[0], key[1]), []).append(objects[key])
        return index

    def kind(self, kind: str) -> list[JSON]:
        return self.by_kind.get(kind, [])

    def in_namespace(self, kind: str, namespace: str) -> list[JSON]:
        return self.by_kind_namespace.get((kind, namespace), [])

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        return self.by_key.get((kind, namespace, name))

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return labels(self.get("Namespace", "", namespace))


def object_key(obj: JSON) -> ObjectKey | None:
    """(kind, namespace, name) of a store object, or None if it lacks a kind or name."""
    kind, name = text(obj, "kind"), name_of(obj)
    if not kind or not name:
        return None
    return (kind, namespace_of(obj), name)


def build_objects(objects: Iterable[JSON]) -> dict[ObjectKey, JSON]:
    out: dict[ObjectKey, JSON] = {}
    for obj in objects:
        key = object_key(obj) if isinstance(obj, dict) else None
        if key is not None:
            out[key] = obj
    return out
