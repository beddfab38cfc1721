"""Pod-token authorization: a token gets its own service account, only while its pod (same uid) lives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ambit.identity.authenticators import (
    AuthenticationError,
    Credentials,
    NodeCertificateAuthenticator,
    PodTokenAuthenticator,
    authenticate,
    authorize,
)
from ambit.identity.pod_auth import authorize_pod_token_request
from ambit.identity.tokens import PodToken, TokenSigner, TokenVerifier
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement

TD = "cluster.local"
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TOKEN = PodToken("shop", "waypoint", "waypoint-1", "uid-1", NOW, NOW)
WANTED = Identity(TD, "shop", "waypoint")


def pod(
    uid: str = "uid-1", *, sa: str = "waypoint", phase: str = "Running", name: str = "waypoint-1"
) -> PodPlacement:
    return PodPlacement(namespace="shop", name=name, uid=uid, service_account=sa, node="node2", phase=phase)


@pytest.mark.parametrize(
    ("requested", "pods", "allowed", "reason"),
    [
        (WANTED, [pod()], True, "token of pod shop/waypoint-1 (uid uid-1, Running)"),
        (WANTED, [], False, "pod shop/waypoint-1 of the token no longer exists"),
        (WANTED, [pod(name="waypoint-2")], False, "no longer exists"),
        (WANTED, [pod("uid-2")], False, "now has uid uid-2; the token was issued for uid uid-1"),
        (WANTED, [pod(phase="Succeeded")], False, "has terminated (Succeeded)"),
        (WANTED, [pod(sa="other")], False, "now runs as service account other"),
        (Identity(TD, "shop", "admin"), [pod()], False, "may obtain only service account shop/waypoint"),
        (Identity(TD, "kube-system", "waypoint"), [pod()], False, "may obtain only service account"),
        (Identity("other.td", "shop", "waypoint"), [pod()], False, "not in trust domain"),
        (NodeIdentity(TD, "node2"), [pod()], False, "a pod token never gets one"),
    ],
)
def test_pod_token_rule(
    requested: Identity | NodeIdentity, pods: list[PodPlacement], allowed: bool, reason: str
) -> None:
    decision = authorize_pod_token_request(TOKEN, requested, pods, trust_domain=TD)
    assert decision.allowed is allowed
    assert reason in decision.reason


# -- the authenticator chain -----------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
CHAIN = (NodeCertificateAuthenticator(), PodTokenAuthenticator(TokenVerifier([KEY.public_key()])))
NODE = NodeIdentity(TD, "node1")


def bearer(signer_key: ec.EllipticCurvePrivateKey = KEY) -> str:
    token = TokenSigner(signer_key).issue(
        namespace="shop", service_account="waypoint", pod_name="waypoint-1", pod_uid="uid-1", now=NOW
    )
    return f"Bearer {token}"


def test_a_certificate_alone_authenticates_as_its_identity() -> None:
    assert authenticate(CHAIN, Credentials(peer=NODE), now=NOW) == NODE
    assert authenticate(CHAIN, Credentials(peer=None), now=NOW) is None


def test_a_presented_token_decides_even_beside_a_node_certificate() -> None:
    caller = authenticate(CHAIN, Credentials(peer=NODE, authorization=bearer()), now=NOW)
    assert isinstance(caller, PodToken) and caller.pod_uid == "uid-1"
    # The token's rule applies, not node1's: the pod runs on node2.
    assert authorize(caller, WANTED, [pod()], trust_domain=TD).allowed
    assert not authorize(NODE, WANTED, [pod()], trust_domain=TD).allowed, "control: node1 alone may not"


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "not 'Bearer <token>'"),
        ("Bearer ", "not 'Bearer <token>'"),
        ("Bearer junk", "not a JWT"),
    ],
)
def test_a_bad_token_fails_and_never_falls_back_to_the_certificate(authorization: str, reason: str) -> None:
    with pytest.raises(AuthenticationError, match=reason):
        authenticate(CHAIN, Credentials(peer=NODE, authorization=authorization), now=NOW)


def test_a_token_signed_by_another_key_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="not a known token key"):
        authenticate(
            CHAIN,
            Credentials(peer=None, authorization=bearer(ec.generate_private_key(ec.SECP256R1()))),
            now=NOW,
        )


def test_without_a_token_authenticator_a_token_is_refused() -> None:
    with pytest.raises(AuthenticationError, match="no authenticator here accepts tokens"):
        authenticate(
            (NodeCertificateAuthenticator(),), Credentials(peer=NODE, authorization=bearer()), now=NOW
        )
