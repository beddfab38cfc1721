"""Pod-bound tokens: what a pod without a certificate (a waypoint) shows the CA to get one.

Shaped like a Kubernetes projected ServiceAccount token (a ``TokenRequest`` bound to a pod): a JWT
signed with ES256 by the cluster's token key, with

* ``iss`` :data:`TOKEN_ISSUER`; ``aud`` ``["ambit-ca"]`` (Istio's CA wants ``istio-ca``; ours is named
  for ours); ``sub`` ``system:serviceaccount:<ns>:<sa>``; ``iat``, ``nbf``, ``exp``;
* ``kubernetes.io``: ``{namespace, pod: {name, uid}, serviceaccount: {name}}``, the claims Kubernetes
  puts in a pod-bound token (``pkg/serviceaccount/claims.go``);
* header ``kid``: which token key signed it (so keys can be rotated with both verifying meanwhile).

:class:`TokenSigner` issues (the runtime's kubelet role, for each pod that needs one; rotated at 80 %
of the TTL, as the kubelet refreshes projected tokens); :class:`TokenVerifier` checks signature,
algorithm (ES256 only: no ``none``, no HMAC with a public key), issuer, audience, time (with a small
leeway for clock skew) and the claims' shape, and returns a :class:`PodToken`. Whether the pod still
exists with that uid is not a property of the token: the CA's authorization asks its pod view
(:mod:`ambit.identity.pod_auth`), as Kubernetes' TokenReview does for bound tokens.

Key files (:func:`create_token_keys`, :func:`load_signer`, :func:`load_verifier`): a cluster's
token directory holds ``signing-key.pem`` (0600, the runtime's) and ``public-keys.pem`` (every key
that verifies, one PEM block each, so a rotation can add a key before the old one goes).

PyJWT does the JOSE work (compared with joserfc and jwcrypto in ARCHITECTURE.md, "Dependencies"),
imported where a token is made or checked: every ambit process imports the runtime's names, and a
ztunnel never touches a token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from ambit.identity.certs import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_pem

TOKEN_ISSUER = "https://kubernetes.default.svc.cluster.local"
TOKEN_AUDIENCE = "ambit-ca"
TOKEN_ALGORITHM = "ES256"
DEFAULT_TOKEN_TTL = timedelta(hours=1)
MIN_TOKEN_TTL = timedelta(minutes=10)  # Kubernetes' floor for a TokenRequest's expirationSeconds
MAX_TOKEN_BYTES = 8 * 1024
CLOCK_LEEWAY = timedelta(seconds=30)
_SUBJECT_PREFIX = "system:serviceaccount:"
SIGNING_KEY_FILE = "signing-key.pem"
PUBLIC_KEYS_FILE = "public-keys.pem"


class TokenError(ValueError):
    """A token that cannot be trusted; the message says why (for the CA's refusal and its log)."""


@dataclass(frozen=True, slots=True)
class PodToken:
    """What a verified token says: which pod, with which service account, until when."""

    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    issued_at: datetime
    expires_at: datetime

    @property
    def subject(self) -> str:
        return f"{_SUBJECT_PREFIX}{self.namespace}:{self.service_account}"

    def __str__(self) -> str:
        pod = f"{self.namespace}/{self.pod_name}"
        return f"pod {pod} (uid {self.pod_uid}, service account {self.service_account})"


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """A stable id for a token key: the first 16 hex digits of SHA-256 over its DER public key."""
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def refresh_at(issued_at: datetime, expires_at: datetime) -> datetime:
    """When a holder should fetch a new token: at 80 % of its lifetime (the kubelet's rule)."""
    return issued_at + (expires_at - issued_at) * 0.8


class TokenSigner:
    """Issues pod-bound tokens with one EC P-256 key."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            got = getattr(getattr(private_key, "curve", None), "name", type(private_key).__name__)
            raise TokenError(f"token keys are EC P-256; got {got}")
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def issue(
        self,
        *,
        namespace: str,
        service_account: str,
        pod_name: str,
        pod_uid: str,
        now: datetime,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
    ) -> str:
        if ttl < MIN_TOKEN_TTL:
            raise TokenError(f"token TTL {ttl} is below the minimum {MIN_TOKEN_TTL}")
        if not all((namespace, service_account, pod_name, pod_uid)):
            raise TokenError("a pod token needs a namespace, service account, pod name and pod uid")
        claims = {
            "iss": TOKEN_ISSUER,
            "aud": [TOKEN_AUDIENCE],
            "sub": f"{_SUBJECT_PREFIX}{namespace}:{service_account}",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "kubernetes.io": {
                "namespace": namespace,
                "pod": {"name": pod_name, "uid": pod_uid},
                "serviceaccount": {"name": service_account},
            },
        }
        import jwt

        return jwt.encode(claims, self._key, algorithm=TOKEN_ALGORITHM, headers={"kid": self.key_id})


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise TokenError(f"token claim {what} is missing or not a string")
    return value


class TokenVerifier:
    """Verifies pod tokens against the public token keys it knows (by ``kid``)."""

    def __init__(
        self, public_keys: Mapping[str, ec.EllipticCurvePublicKey] | list[ec.EllipticCurvePublicKey]
    ):
        keys = public_keys if isinstance(public_keys, Mapping) else {key_id(k): k for k in public_keys}
        if not keys:
            raise TokenError("a token verifier needs at least one public key")
        self._keys = dict(keys)

    def verify(self, token: str, *, now: datetime) -> PodToken:
        import jwt

        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError(f"token is {len(token)} bytes; at most {MAX_TOKEN_BYTES} are accepted")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError(f"token is not a JWT: {exc}") from None
        if header.get("alg") != TOKEN_ALGORITHM:
            raise TokenError(f"token algorithm {header.get('alg')!r} is not {TOKEN_ALGORITHM}")
        key = self._keys.get(str(header.get("kid")))
        if key is None:
            raise TokenError(f"token key id {header.get('kid')!r} is not a known token key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[TOKEN_ALGORITHM],
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                # PyJWT would compare exp/nbf with the wall clock; the caller's clock (a fake one in
                # tests) is the one that counts, so time is checked in _pod_token instead.
                options={
                    "require": ["exp", "iat", "nbf", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"token rejected: {exc}") from None
        return _pod_token(claims, now)


def _pod_token(claims: Mapping[str, Any], now: datetime) -> PodToken:
    issued = datetime.fromtimestamp(int(claims["iat"]), UTC)
    not_before = datetime.fromtimestamp(int(claims["nbf"]), UTC)
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    if now + CLOCK_LEEWAY < not_before:
        raise TokenError(f"token is not valid before {not_before.isoformat()}")
    if now - CLOCK_LEEWAY >= expires:
        raise TokenError(f"token expired at {expires.isoformat()}")
    kube = claims.get("kubernetes.io")
    if not isinstance(kube, Mapping):
        raise TokenError("token has no kubernetes.io claims (it is not bound to a pod)")
    pod = kube.get("pod")
    account = kube.get("serviceaccount")
    if not isinstance(pod, Mapping) or not isinstance(account, Mapping):
        raise TokenError("token is not bound to a pod (kubernetes.io.pod and .serviceaccount are required)")
    token = PodToken(
        namespace=_text(kube.get("namespace"), "kubernetes.io.namespace"),
        service_account=_text(account.get("name"), "kubernetes.io.serviceaccount.name"),
        pod_name=_text(pod.get("name"), "kubernetes.io.pod.name"),
        pod_uid=_text(pod.get("uid"), "kubernetes.io.pod.uid"),
        issued_at=issued,
        expires_at=expires,
    )
    if claims.get("sub") != token.subject:
        raise TokenError(f"token subject {claims.get('sub')!r} does not match its claims ({token.subject})")
    return token


# -- key files -------------------------------------------------------------------------------------


def create_token_keys(directory: Path) -> TokenSigner:
    """A new EC P-256 token key in ``directory`` (signing key 0600, public keys 0644); its signer."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    public = key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    write_pem(directory / SIGNING_KEY_FILE, private, mode=PRIVATE_FILE_MODE)
    write_pem(directory / PUBLIC_KEYS_FILE, public, mode=PUBLIC_FILE_MODE)
    return TokenSigner(key)


def load_signer(directory: Path) -> TokenSigner:
    try:
        key = load_pem_private_key((directory / SIGNING_KEY_FILE).read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise TokenError(
            f"cannot load the token signing key from {directory / SIGNING_KEY_FILE}: {exc}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TokenError(f"{directory / SIGNING_KEY_FILE} is not an EC key")
    return TokenSigner(key)


def load_verifier(directory: Path) -> TokenVerifier:
    path = directory / PUBLIC_KEYS_FILE
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TokenError(f"cannot read the token public keys {path}: {exc}") from None
    marker = b"-----END PUBLIC KEY-----"
    keys = []
    for block in text.split(marker)[:-1]:
        try:
            key = load_pem_public_key(block + marker + b"\n")
        except ValueError as exc:
            raise TokenError(f"{path}: a block is not a PEM public key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise TokenError(f"{path}: a key is not an EC key")
        keys.append(key)
    return TokenVerifier(keys)
