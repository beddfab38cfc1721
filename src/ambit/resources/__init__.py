"""Layer L1: Kubernetes-style resources: the kinds ambit knows, their schemas, reading manifests.

Pure (no I/O): the store and the CLI call these functions on text and objects they already hold.

* ``parse_manifests(text, source)``: YAML/JSON text → validated, normalized objects;
* ``validate(obj, source)``: one object → a normalized copy (unknown kinds returned as given);
* ``is_namespaced(kind)``, ``resolve_kind(text)``, ``unknown_kind(obj)``: the kind registry;
* ``ManifestError``: every problem, as ``<source>: <Kind>/<namespace>/<name>: <field.path>: <message>``;
* ``objects``: the object rules every layer shares (selectors, enrolment, waypoint use, accessors);
* ``names``: the control plane's own namespace, Service and identity.

The names below load on first use, so a process that needs only ``objects`` or ``names`` (a ztunnel)
does not import the schemas (pydantic).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ambit.resources.kinds import KINDS, KindInfo, is_namespaced, kind_info, resolve_kind, unknown_kind
    from ambit.resources.manifest import ManifestError, format_path, parse_manifests, validate
    from ambit.resources.objects import selector_matches

_HOMES = {
    "KINDS": "ambit.resources.kinds",
    "KindInfo": "ambit.resources.kinds",
    "is_namespaced": "ambit.resources.kinds",
    "kind_info": "ambit.resources.kinds",
    "resolve_kind": "ambit.resources.kinds",
    "unknown_kind": "ambit.resources.kinds",
    "ManifestError": "ambit.resources.manifest",
    "format_path": "ambit.resources.manifest",
    "parse_manifests": "ambit.resources.manifest",
    "validate": "ambit.resources.manifest",
    "selector_matches": "ambit.resources.objects",
}

__all__ = [
    "KINDS",
    "KindInfo",
    "ManifestError",
    "format_path",
    "is_namespaced",
    "kind_info",
    "parse_manifests",
    "resolve_kind",
    "selector_matches",
    "unknown_kind",
    "validate",
]


def __getattr__(attr: str) -> Any:
    home = _HOMES.get(attr)
    if home is None:
        raise AttributeError(f"module 'ambit.resources' has no attribute {attr!r}")
    return getattr(importlib.import_module(home), attr)
