"""The kinds ambit knows: API group and versions, scope, kubectl names, and the name rule of each.

A kind is known if it is listed here; anything else is an *unknown kind* that the store keeps as
given (the caller warns). ``resolve_kind`` maps what a user types after ``ambit get`` (plural,
singular, short name, ``plural.group``, the kind itself; any case) to the kind.

Pure: stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class NameRule(Enum):
    """Which Kubernetes rule ``metadata.name`` follows for a kind."""

    DNS1123_SUBDOMAIN = "DNS-1123 subdomain"
    DNS1123_LABEL = "DNS-1123 label"
    DNS1035_LABEL = "DNS-1035 label"


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    group: str  # "" for the core group
    versions: tuple[str, ...]  # accepted versions, preferred first
    namespaced: bool
    plural: str
    short_names: tuple[str, ...] = ()
    name_rule: NameRule = NameRule.DNS1123_SUBDOMAIN

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_versions(self) -> tuple[str, ...]:
        """The accepted ``apiVersion`` strings (``v1``, ``apps/v1``, ...)."""
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)


GATEWAY_GROUP = "gateway.networking.k8s.io"
ISTIO_SECURITY_GROUP = "security.istio.io"
ISTIO_NETWORKING_GROUP = "networking.istio.io"
AMBIT_POLICY_GROUP = "policy.ambit.dev"  # ambit's own policy kinds (beyond Istio)

KINDS: dict[str, KindInfo] = {
    info.kind: info
    for info in (
        KindInfo("Namespace", "", ("v1",), False, "namespaces", ("ns",), NameRule.DNS1123_LABEL),
        KindInfo("Node", "", ("v1",), False, "nodes", ("no",)),
        KindInfo("ServiceAccount", "", ("v1",), True, "serviceaccounts", ("sa",)),
        KindInfo("Pod", "", ("v1",), True, "pods", ("po",)),
        # Kubernetes validates Service names as DNS-1035 labels (a letter first).
        KindInfo("Service", "", ("v1",), True, "services", ("svc",), NameRule.DNS1035_LABEL),
        KindInfo("Deployment", "apps", ("v1",), True, "deployments", ("deploy",)),
        KindInfo("ReplicaSet", "apps", ("v1",), True, "replicasets", ("rs",)),
        KindInfo("PodDisruptionBudget", "policy", ("v1",), True, "poddisruptionbudgets", ("pdb",)),
        KindInfo("Lease", "coordination.k8s.io", ("v1",), True, "leases"),
        KindInfo(
            "HorizontalPodAutoscaler", "autoscaling", ("v2",), True, "horizontalpodautoscalers", ("hpa",)
        ),
        KindInfo(
            "VerticalPodAutoscaler",
            "autoscaling.k8s.io",
            ("v1",),
            True,
            "verticalpodautoscalers",
            ("vpa",),
        ),
        KindInfo("GatewayClass", GATEWAY_GROUP, ("v1", "v1beta1"), False, "gatewayclasses", ("gc",)),
        KindInfo("Gateway", GATEWAY_GROUP, ("v1", "v1beta1"), True, "gateways", ("gtw",)),
        KindInfo("HTTPRoute", GATEWAY_GROUP, ("v1", "v1beta1"), True, "httproutes"),
        KindInfo("GRPCRoute", GATEWAY_GROUP, ("v1",), True, "grpcroutes"),
        KindInfo("TCPRoute", GATEWAY_GROUP, ("v1alpha2",), True, "tcproutes"),
        # v1beta1 is the storage version; Gateway API 1.5+ also serves the same schema as v1.
        KindInfo("ReferenceGrant", GATEWAY_GROUP, ("v1beta1", "v1"), True, "referencegrants", ("refgrant",)),
        KindInfo(
            "AuthorizationPolicy",
            ISTIO_SECURITY_GROUP,
            ("v1", "v1beta1"),
            True,
            "authorizationpolicies",
            ("ap",),
        ),
        KindInfo(
            "PeerAuthentication",
            ISTIO_SECURITY_GROUP,
            ("v1", "v1beta1"),
            True,
            "peerauthentications",
            ("pa",),
        ),
        KindInfo(
            "VirtualService",
            ISTIO_NETWORKING_GROUP,
            ("v1", "v1beta1", "v1alpha3"),
            True,
            "virtualservices",
            ("vs",),
        ),
        KindInfo(
            "DestinationRule",
            ISTIO_NETWORKING_GROUP,
            ("v1", "v1beta1", "v1alpha3"),
            True,
            "destinationrules",
            ("dr",),
        ),
        KindInfo(
            "HTTPLocalRateLimitPolicy",
            AMBIT_POLICY_GROUP,
            ("v1alpha1",),
            True,
            "httplocalratelimitpolicies",
        ),
    )
}


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for info in KINDS.values():
        names = [info.kind.lower(), info.plural, info.singular, *info.short_names]
        if info.group:
            names += [f"{info.plural}.{info.group}", f"{info.singular}.{info.group}"]
            names += [f"{info.plural}.{v}.{info.group}" for v in info.versions]
        for name in names:
            aliases[name.lower()] = info.kind
    return aliases


_ALIASES = _build_aliases()


def kind_info(kind: str) -> KindInfo | None:
    """The registry entry of a kind (exact kind name, as in manifests), or None if unknown."""
    return KINDS.get(kind)


def resolve_kind(text: str) -> str:
    """Map a kubectl-style resource name ('po', 'svc', 'deployments', 'Gateway') to its kind.

    Case-insensitive. An unknown name is returned unchanged.
    """
    return _ALIASES.get(text.strip().lower(), text)


def is_namespaced(kind: str) -> bool:
    """Whether objects of ``kind`` live in a namespace. Unknown kinds count as namespaced (most CRDs are)."""
    info = KINDS.get(kind)
    return True if info is None else info.namespaced


def unknown_kind(obj: dict[str, Any]) -> bool:
    """True if ``obj`` is not of a kind ambit models (the store keeps it as given and warns)."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    return not isinstance(kind, str) or kind not in KINDS
