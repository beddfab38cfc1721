"""Node authorization for the CA: may this ztunnel have a certificate for that workload identity?

The rule (Istio's ``node_auth.go``, adapted to node certificates): a caller holding a verified node
identity ``spiffe://<td>/node/<N>`` may obtain ``spiffe://<td>/ns/<ns>/sa/<sa>`` only while a pod
with that namespace and service account is scheduled on node ``N`` and has not terminated. So a
compromised ztunnel can only obtain identities of pods that currently run on its own node.

``caller`` must come from the client certificate verified in the TLS handshake of the CA request.
No field of the request (metadata, CSR subject or SANs) can set or change it: this function has no
parameter through which such a value could arrive, and the CA server passes only the handshake's
peer identity. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement


@dataclass(frozen=True)
class CaDecision:
    """Whether a certificate request may be signed, and why (the reason names the facts that decided it)."""

    allowed: bool
    reason: str


def _deny(reason: str) -> CaDecision:
    return CaDecision(allowed=False, reason=reason)


def authorize_certificate_request(
    caller: Identity | NodeIdentity | None,
    requested: Identity | NodeIdentity,
    pods: Iterable[PodPlacement],
    *,
    trust_domain: str,
) -> CaDecision:
    """Decide whether ``caller`` (from its verified certificate) may obtain ``requested``.

    ``pods`` is the CA's current view of pod placements (any superset of the relevant pods).
    """
    if caller is None:
        return _deny("caller presented no verified node credential")
    if not isinstance(caller, NodeIdentity):
        return _deny(f"caller {caller} is a workload identity; only node identities may request certificates")
    if caller.trust_domain != trust_domain:
        return _deny(f"caller {caller} is not in trust domain {trust_domain!r}")
    if isinstance(requested, NodeIdentity):
        return _deny(f"requested {requested} is a node identity; the CA service never issues node identities")
    if requested.trust_domain != trust_domain:
        return _deny(f"requested {requested} is not in trust domain {trust_domain!r}")

    account = f"{requested.namespace}/{requested.service_account}"
    terminated: list[PodPlacement] = []
    for pod in pods:
        if (
            pod.node != caller.node
            or pod.namespace != requested.namespace
            or pod.service_account != requested.service_account
        ):
            continue
        if pod.terminated:
            terminated.append(pod)
            continue
        return CaDecision(
            allowed=True,
            reason=(
                f"pod {pod.namespace}/{pod.name} (uid {pod.uid}, {pod.phase}) with service account "
                f"{account} is scheduled on node {caller.node}"
            ),
        )
    if terminated:
        finished = ", ".join(f"{pod.namespace}/{pod.name} ({pod.phase})" for pod in terminated)
        return _deny(
            f"no running pod with service account {account} is scheduled on node {caller.node}; "
            f"only terminated ones: {finished}"
        )
    return _deny(f"no pod with service account {account} is scheduled on node {caller.node}")
