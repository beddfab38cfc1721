"""Pod-bound tokens: what verifies, and every way a token is refused (with the reason)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ambit.identity.tokens import (
    MAX_TOKEN_BYTES,
    TOKEN_AUDIENCE,
    TOKEN_ISSUER,
    TokenError,
    TokenSigner,
    TokenVerifier,
    create_token_keys,
    key_id,
    load_signer,
    load_verifier,
    refresh_at,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
KEY = ec.generate_private_key(ec.SECP256R1())
SIGNER = TokenSigner(KEY)
VERIFIER = TokenVerifier([KEY.public_key()])
POD = {"namespace": "shop", "service_account": "waypoint", "pod_name": "waypoint-1", "pod_uid": "uid-1"}


def issue(**overrides: Any) -> str:
    return SIGNER.issue(**{**POD, "now": NOW, **overrides})


def forged(claims: dict[str, Any], *, key: Any = KEY, alg: str = "ES256", kid: str | None = None) -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid or SIGNER.key_id})


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": TOKEN_ISSUER,
        "aud": [TOKEN_AUDIENCE],
        "sub": "system:serviceaccount:shop:waypoint",
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int((NOW + timedelta(hours=1)).timestamp()),
        "kubernetes.io": {
            "namespace": "shop",
            "pod": {"name": "waypoint-1", "uid": "uid-1"},
            "serviceaccount": {"name": "waypoint"},
        },
    }
    base.update(overrides)
    return base


def test_a_token_verifies_to_its_pod() -> None:
    token = VERIFIER.verify(issue(), now=NOW + timedelta(minutes=5))
    assert (token.namespace, token.service_account, token.pod_name, token.pod_uid) == (
        "shop",
        "waypoint",
        "waypoint-1",
        "uid-1",
    )
    assert token.expires_at - token.issued_at == timedelta(hours=1)
    assert token.subject == "system:serviceaccount:shop:waypoint"
    header = jwt.get_unverified_header(issue())
    assert header["alg"] == "ES256" and header["kid"] == key_id(KEY.public_key())


def test_shaped_like_a_kubernetes_projected_token() -> None:
    payload = jwt.decode(issue(), options={"verify_signature": False})
    assert payload["aud"] == ["ambit-ca"]
    assert payload["kubernetes.io"]["pod"] == {"name": "waypoint-1", "uid": "uid-1"}


@pytest.mark.parametrize(
    ("at", "reason"),
    [
        (NOW + timedelta(hours=1, seconds=31), "token expired at"),
        (NOW - timedelta(seconds=31), "not valid before"),
    ],
)
def test_time_is_checked_on_the_callers_clock(at: datetime, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        VERIFIER.verify(issue(), now=at)
    VERIFIER.verify(issue(), now=NOW + timedelta(hours=1, seconds=29))  # control: within the leeway


def b64(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hs256_with_the_public_key() -> str:
    """The classic algorithm confusion: an HMAC token keyed with the (public) verification key."""
    pem = KEY.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    signing_input = b64({"alg": "HS256", "kid": SIGNER.key_id}) + "." + b64(claims())
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "not a JWT"),
        (b64({"alg": "none", "kid": SIGNER.key_id}) + "." + b64(claims()) + ".", "algorithm 'none'"),
        (hs256_with_the_public_key(), "algorithm 'HS256'"),
        (forged(claims(), kid="0000000000000000"), "not a known token key"),
        (forged(claims(), key=ec.generate_private_key(ec.SECP256R1())), "Signature verification failed"),
        (forged(claims(aud=["istio-ca"])), "Audience doesn't match"),
        (forged(claims(iss="https://elsewhere")), "Invalid issuer"),
        (forged({k: v for k, v in claims().items() if k != "kubernetes.io"}), "not bound to a pod"),
        (
            forged(
                claims(
                    **{
                        "kubernetes.io": {
                            "namespace": "shop",
                            "pod": {"name": "p"},
                            "serviceaccount": {"name": "w"},
                        }
                    }
                )
            ),
            "kubernetes.io.pod.uid",
        ),
        (forged(claims(sub="system:serviceaccount:shop:admin")), "does not match its claims"),
        (forged({k: v for k, v in claims().items() if k != "exp"}), 'Token is missing the "exp" claim'),
        ("a" * (MAX_TOKEN_BYTES + 1), "at most"),
    ],
)
def test_refused_tokens_say_why(token: str, reason: str) -> None:
    with pytest.raises(TokenError, match=reason):
        VERIFIER.verify(token, now=NOW)


def test_a_tampered_payload_fails_the_signature() -> None:
    head, _payload, signature = issue().split(".")
    other = claims(**{"kubernetes.io": {**claims()["kubernetes.io"], "namespace": "kube-system"}})
    with pytest.raises(TokenError, match="Signature verification failed"):
        VERIFIER.verify(f"{head}.{b64(other)}.{signature}", now=NOW)


def test_signer_rules() -> None:
    with pytest.raises(TokenError, match="below the minimum"):
        issue(ttl=timedelta(minutes=5))
    with pytest.raises(TokenError, match="needs a namespace"):
        issue(pod_uid="")
    with pytest.raises(TokenError, match="EC P-256"):
        TokenSigner(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(TokenError, match="at least one public key"):
        TokenVerifier([])


def test_rsa_keys_are_not_token_keys() -> None:
    with pytest.raises(TokenError, match=r"EC P-256; got _?RSAPrivateKey"):
        TokenSigner(rsa.generate_private_key(65537, 2048))  # type: ignore[arg-type]


def test_two_keys_verify_during_a_rotation() -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    both = TokenVerifier([KEY.public_key(), new.public_key()])
    assert both.verify(issue(), now=NOW).pod_uid == "uid-1"
    assert both.verify(TokenSigner(new).issue(**POD, now=NOW), now=NOW).pod_uid == "uid-1"


def test_refresh_at_eighty_percent_of_the_lifetime() -> None:
    assert refresh_at(NOW, NOW + timedelta(hours=1)) == NOW + timedelta(minutes=48)


def test_key_files_round_trip_and_errors_name_the_file(tmp_path: Path) -> None:
    signer = create_token_keys(tmp_path / "tokens")
    assert (tmp_path / "tokens" / "signing-key.pem").stat().st_mode & 0o777 == 0o600
    token = load_signer(tmp_path / "tokens").issue(**POD, now=NOW)
    assert load_verifier(tmp_path / "tokens").verify(token, now=NOW).pod_uid == "uid-1"
    assert jwt.get_unverified_header(token)["kid"] == signer.key_id
    with pytest.raises(TokenError, match="cannot read the token public keys"):
        load_verifier(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "public-keys.pem").write_text(
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(TokenError, match="not a PEM public key"):
        load_verifier(tmp_path / "junk")
    (tmp_path / "junk" / "public-keys.pem").write_text("")
    with pytest.raises(TokenError, match="at least one public key"):
        load_verifier(tmp_path / "junk")
    with pytest.raises(TokenError, match="cannot load the token signing key"):
        load_signer(tmp_path / "junk")
