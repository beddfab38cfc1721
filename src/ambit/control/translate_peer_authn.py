"""PeerAuthentication → the STRICT-mTLS policies ztunnel enforces (Istio's ``policies.go``).

Part of the pure translation of policies (``ambit.control.translate_policy``). Exactly what happens:

(DISABLE is ignored: ambient cannot turn mTLS off.)

  * if any PeerAuthentication exists, the static policy ``<root>/istio_converted_static_strict``
    is emitted: scope WORKLOAD_SELECTOR, action DENY, one rule matching connections WITHOUT a
    principal (``not_principals=(PRESENCE,)``, i.e. plaintext);
  * every workload whose effective mode is STRICT lists that key. The effective mode follows
    Istio's precedence workload > namespace > mesh: the mesh policy is the oldest selector-less
    one in the root namespace, the namespace policy the oldest selector-less one in the
    workload's namespace, the workload policy the oldest one with a selector matching the
    workload in its namespace (root-namespace policies with a selector are ignored); ``UNSET``
    inherits from the level above; so a namespace or workload PERMISSIVE overrides a mesh
    STRICT, and a workload STRICT overrides a namespace PERMISSIVE;
  * ``portLevelMtls`` (workload policies only) becomes a DENY policy
    ``<ns>/converted_peer_authentication_<name>`` listed on the workloads it governs, exactly as
    Istio's ``convertPeerAuthentication`` (STRICT ports deny plaintext to that port, PERMISSIVE
    ports are exempted from an inherited STRICT); ambit reads the "parent is STRICT" test as
    intended (workload STRICT, or workload UNSET and namespace STRICT, or workload and namespace
    UNSET and mesh STRICT), where Istio's Go expression lets a mesh STRICT swallow a STRICT port
    of a PERMISSIVE workload;
  * "oldest" is by ``metadata.creationTimestamp``, ties (or no timestamps) by name.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ambit.model.policy import (
    STRICT_POLICY_NAME,
    Action,
    Authorization,
    Clause,
    Match,
    MatchKind,
    Rule,
    Scope,
    StringMatch,
)
from ambit.resources.objects import JSON, labels_subset, mapping, name_of, namespace_of, string_map, text

PEER_AUTHN_PREFIX = "converted_peer_authentication_"
_PRESENCE = StringMatch(MatchKind.PRESENCE)


def _mode(mtls: Any) -> str:
    mode = text(mtls, "mode", "UNSET")
    return mode if mode in ("UNSET", "DISABLE", "PERMISSIVE", "STRICT") else "UNSET"


def _spec_mode(pa: JSON) -> str:
    return _mode(mapping(pa, "spec", "mtls"))


def _selector(pa: JSON) -> dict[str, str]:
    return string_map(mapping(pa, "spec", "selector").get("matchLabels"))


def _oldest(policies: Sequence[JSON]) -> JSON | None:
    if not policies:
        return None
    return min(policies, key=lambda p: (text(mapping(p, "metadata"), "creationTimestamp"), name_of(p)))


def _port_levels(pa: JSON) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for key, mtls in mapping(pa, "spec", "portLevelMtls").items():
        if isinstance(key, str) and key.isdigit() and 0 < int(key) <= 65535:
            out.append((int(key), _mode(mtls)))
    return sorted(out)


def _level_policies(pas: Sequence[JSON], namespace: str) -> JSON | None:
    """The oldest selector-less PeerAuthentication of ``namespace``."""
    return _oldest([p for p in pas if namespace_of(p) == namespace and not _selector(p)])


def converted_peer_authentication_name(name: str) -> str:
    return PEER_AUTHN_PREFIX + name


def static_strict_policy(root_namespace: str) -> Authorization:
    return Authorization(
        name=STRICT_POLICY_NAME,
        namespace=root_namespace,
        scope=Scope.WORKLOAD_SELECTOR,
        action=Action.DENY,
        rules=(Rule((Clause((Match(not_principals=(_PRESENCE,)),)),)),),
    )


def convert_port_level_peer_authentication(
    pa: JSON, pas: Sequence[JSON], root_namespace: str
) -> Authorization | None:
    """A workload PeerAuthentication with ``portLevelMtls`` → its DENY policy.

    Istio's ``convertPeerAuthentication``; None when the static STRICT policy (or nothing) covers it.
    """
    ns = namespace_of(pa)
    ports = _port_levels(pa)
    if ns == root_namespace or not _selector(pa) or not ports:
        return None
    mode = _spec_mode(pa)
    ns_cfg = _level_policies(pas, ns)
    root_cfg = _level_policies(pas, root_namespace)
    ns_mode = _spec_mode(ns_cfg) if ns_cfg is not None else None
    root_mode = _spec_mode(root_cfg) if root_cfg is not None else None

    parent_strict = mode == "STRICT" or (
        mode == "UNSET" and (ns_mode == "STRICT" or (ns_mode in (None, "UNSET") and root_mode == "STRICT"))
    )
    clauses: list[Clause] = []
    groups: list[Rule] = []
    if mode == "STRICT":
        clauses.append(Clause((Match(not_principals=(_PRESENCE,)),)))
    found_non_strict = False
    for port, port_mode in ports:
        if port_mode == "STRICT":
            if parent_strict:
                continue  # the parent's STRICT already covers this port
            groups.append(Rule((Clause((Match(not_principals=(_PRESENCE,), destination_ports=(port,)),)),)))
        elif port_mode in ("PERMISSIVE", "DISABLE"):
            if mode in ("PERMISSIVE", "DISABLE"):
                continue
            if mode == "UNSET" and (
                (ns_mode is not None and ns_mode != "STRICT")
                or (ns_mode is None and root_mode is not None and root_mode != "STRICT")
                or (ns_mode is None and root_mode is None)
            ):
                continue  # nothing STRICT to exempt this port from
            found_non_strict = True
            clauses.append(Clause((Match(not_destination_ports=(port,)),)))
    if mode == "STRICT" and not found_non_strict:
        return None  # plain STRICT: the static policy covers it
    if not clauses and not groups:
        return None
    merge_strict = (root_mode == "STRICT" and ns_mode in (None, "UNSET", "STRICT")) or ns_mode == "STRICT"
    if merge_strict and found_non_strict:
        clauses.append(Clause((Match(not_principals=(_PRESENCE,)),)))
    if clauses:
        groups.append(Rule(tuple(clauses)))
    return Authorization(
        name=converted_peer_authentication_name(name_of(pa)),
        namespace=ns,
        scope=Scope.WORKLOAD_SELECTOR,
        action=Action.DENY,
        rules=tuple(groups),
    )


def peer_authentication_keys(
    pas: Sequence[JSON], namespace: str, pod_labels: dict[str, str], root_namespace: str
) -> list[str]:
    """The PeerAuthentication-derived policy keys a workload lists.

    Istio's ``convertedSelectorPeerAuthentications``: the static STRICT key when the effective mode
    is STRICT, and the workload policy's converted port-level policy when it has port exceptions.
    """
    mesh_cfg = _level_policies(pas, root_namespace)
    ns_cfg = _level_policies(pas, namespace) if namespace != root_namespace else None
    workload_cfg = _oldest(
        [
            p
            for p in pas
            if namespace_of(p) == namespace
            and namespace != root_namespace
            and _selector(p)
            and labels_subset(_selector(p), pod_labels)
        ]
    )
    strict = mesh_cfg is not None and _spec_mode(mesh_cfg) == "STRICT"
    if ns_cfg is not None and _spec_mode(ns_cfg) != "UNSET":
        strict = _spec_mode(ns_cfg) == "STRICT"
    port_key = ""
    if workload_cfg is not None:
        mode = _spec_mode(workload_cfg)
        if mode == "STRICT":
            strict = True
        elif mode in ("PERMISSIVE", "DISABLE"):
            strict = False
        port_modes = [m for _, m in _port_levels(workload_cfg)]
        key = f"{namespace_of(workload_cfg)}/{converted_peer_authentication_name(name_of(workload_cfg))}"
        if port_modes:
            if mode == "STRICT":
                if any(m in ("PERMISSIVE", "DISABLE") for m in port_modes):
                    port_key, strict = key, False
            elif mode in ("PERMISSIVE", "DISABLE"):
                if "STRICT" in port_modes:
                    port_key = key
            elif strict:
                if "PERMISSIVE" in port_modes:
                    port_key, strict = key, False
            elif "STRICT" in port_modes:
                port_key = key
    keys = [f"{root_namespace}/{STRICT_POLICY_NAME}"] if strict else []
    if port_key:
        keys.append(port_key)
    return keys


def asks_for_disable(pa: JSON) -> bool:
    """True when the PeerAuthentication, or one of its ports, asks for mode DISABLE (ignored)."""
    return _spec_mode(pa) == "DISABLE" or any(m == "DISABLE" for _, m in _port_levels(pa))
