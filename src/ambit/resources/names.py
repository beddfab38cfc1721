"""The names of the control plane's own objects: its namespace, Service, ServiceAccount and identity.

One home for them, shared by the control plane (the credential it issues itself), the xDS and CA
clients (the identity they require, the Service they discover) and the runtime (where it runs the
replicas). Pure: no I/O.
"""

from __future__ import annotations

from ambit.model.identity import Identity

CONTROL_PLANE_NAMESPACE = "ambit-system"
CONTROL_PLANE_SERVICE = "controlplane"
CONTROL_PLANE_SERVICE_ACCOUNT = "controlplane"
CA_SUBDIR = "ca"  # the control plane keeps its CA in <state-dir>/ca
TOKENS_SUBDIR = "tokens"  # the pod-token keys: <state-dir>/tokens (ambit.identity.tokens)


def control_plane_identity(trust_domain: str) -> Identity:
    """The identity every control-plane replica holds: ``spiffe://<td>/ns/ambit-system/sa/controlplane``."""
    return Identity(trust_domain, CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE_ACCOUNT)
