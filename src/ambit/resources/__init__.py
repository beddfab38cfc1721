"""Layer L1: Kubernetes-style resources: the kinds ambit knows, their schemas, reading manifests.

Pure (no I/O): the store and the CLI call these functions on text and objects they already hold.

* ``parse_manifests(text, source)``: YAML/JSON text → validated, normalized objects;
* ``validate(obj, source)``: one object → a normalized copy (unknown kinds returned as given);
* ``is_namespaced(kind)``, ``resolve_kind(text)``, ``unknown_kind(obj)``: the kind registry;
* ``ManifestError``: every problem, as ``<source>: <Kind>/<namespace>/<name>: <field.path>: <message>``.
"""

from ambit.resources.kinds import KINDS, KindInfo, is_namespaced, kind_info, resolve_kind, unknown_kind
from ambit.resources.manifest import ManifestError, format_path, parse_manifests, validate
from ambit.resources.rules import selector_matches

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
