"""Pod-token authorization for the CA: may the holder of this pod's token have that identity?

The rule (Kubernetes' bound service-account tokens, applied to our CA): a verified pod token
(:mod:`ambit.identity.tokens`) for pod ``<ns>/<name>`` with uid ``U`` and service account ``<sa>``
may obtain exactly ``spiffe://<td>/ns/<ns>/sa/<sa>``, and only while the CA's pod view holds that
pod **with uid U**, not terminated, still running as ``<sa>``. A token outlives neither its pod nor a
replacement of the pod under the same name (a new uid): TokenReview rejects such a token in
Kubernetes, and so does this. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

from ambit.identity.node_auth import CaDecision
from ambit.identity.tokens import PodToken
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement


def authorize_pod_token_request(
    token: PodToken,
    requested: Identity | NodeIdentity,
    pods: Iterable[PodPlacement],
    *,
    trust_domain: str,
) -> CaDecision:
    """Decide whether the holder of ``token`` (already verified) may obtain ``requested``."""
    if isinstance(requested, NodeIdentity):
        return CaDecision(False, f"requested {requested} is a node identity; a pod token never gets one")
    if requested.trust_domain != trust_domain:
        return CaDecision(False, f"requested {requested} is not in trust domain {trust_domain!r}")
    if (requested.namespace, requested.service_account) != (token.namespace, token.service_account):
        return CaDecision(
            False,
            f"the token of {token} may obtain only service account "
            f"{token.namespace}/{token.service_account}, not {requested}",
        )
    name = f"{token.namespace}/{token.pod_name}"
    pod = next((p for p in pods if (p.namespace, p.name) == (token.namespace, token.pod_name)), None)
    if pod is None:
        return CaDecision(False, f"pod {name} of the token no longer exists")
    if pod.uid != token.pod_uid:
        return CaDecision(
            False, f"pod {name} now has uid {pod.uid}; the token was issued for uid {token.pod_uid}"
        )
    if pod.terminated:
        return CaDecision(False, f"pod {name} (uid {pod.uid}) has terminated ({pod.phase})")
    if pod.service_account != token.service_account:
        return CaDecision(
            False,
            f"pod {name} now runs as service account {pod.service_account}, not {token.service_account}",
        )
    return CaDecision(
        True, f"token of pod {name} (uid {pod.uid}, {pod.phase}) with service account {pod.service_account}"
    )
