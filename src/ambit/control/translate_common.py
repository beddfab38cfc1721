"""Shared pieces of the translation: tolerant accessors, the object index, label and selector helpers.

The store hands translation validated, normalized objects, but translation must never crash on an
object it did not expect (a control plane that dies on one odd object fails every proxy), so every
accessor here checks types and falls back to an empty value. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]
ObjectKey = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds

# Labels and annotations ambit reads (Istio's names, so Istio manifests and habits carry over).
DATAPLANE_MODE = "istio.io/dataplane-mode"
USE_WAYPOINT = "istio.io/use-waypoint"
USE_WAYPOINT_NAMESPACE = "istio.io/use-waypoint-namespace"
WAYPOINT_FOR = "istio.io/waypoint-for"
GATEWAY_NAME = "gateway.networking.k8s.io/gateway-name"
GATEWAY_MANAGED = "gateway.istio.io/managed"
MESH_CONTROLLER = "istio.io-mesh-controller"
TUNNEL_LABEL = "networking.istio.io/tunnel"
REDIRECTION_ANNOTATION = "ambient.istio.io/redirection"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
LOCALITY_LABEL = "istio-locality"
REGION_LABEL = "topology.kubernetes.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
SUBZONE_LABEL = "topology.istio.io/subzone"


def mapping(value: Any, *keys: str) -> JSON:
    """``value[k1][k2]...`` if every step is a mapping, else ``{}``."""
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else {}


def items(value: Any, key: str) -> list[JSON]:
    """The mappings in the list ``value[key]`` (anything else skipped)."""
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def strings(value: Any, key: str) -> list[str]:
    found = value.get(key) if isinstance(value, dict) else None
    return [item for item in found if isinstance(item, str)] if isinstance(found, list) else []


def text(value: Any, key: str, default: str = "") -> str:
    found = value.get(key) if isinstance(value, dict) else None
    return found if isinstance(found, str) else default


def string_map(value: Any) -> dict[str, str]:
    return (
        {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}
        if isinstance(value, dict)
        else {}
    )


def labels(obj: Any) -> dict[str, str]:
    return string_map(mapping(obj, "metadata").get("labels"))


def annotations_of(obj: Any) -> dict[str, str]:
    return string_map(mapping(obj, "metadata").get("annotations"))


def name_of(obj: Any) -> str:
    return text(mapping(obj, "metadata"), "name")


def namespace_of(obj: Any) -> str:
    return text(mapping(obj, "metadata"), "namespace")


def subset(selector: Mapping[str, str], target: Mapping[str, str]) -> bool:
    """Every label of ``selector`` is in ``target`` with the same value (Istio's matchLabels)."""
    return all(target.get(k) == v for k, v in selector.items())


def label_selector_matches(selector: Any, target: Mapping[str, str]) -> bool:
    """Kubernetes LabelSelector (matchLabels and matchExpressions) semantics."""
    if not subset(string_map(mapping(selector).get("matchLabels")), target):
        return False
    for req in items(selector, "matchExpressions"):
        key, op, values = text(req, "key"), text(req, "operator"), strings(req, "values")
        present = key in target
        if op == "In" and not (present and target[key] in values):
            return False
        if op == "NotIn" and present and target[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


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
