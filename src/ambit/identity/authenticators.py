"""Who is asking the CA: authenticators that turn a request's credentials into a caller.

The CA takes a list of authenticators (Kubernetes' authenticator chain, in small). Each looks at the
credentials of one request and either does not apply (returns None: its kind of credential is not
there), or returns the authenticated caller, or raises :class:`AuthenticationError` with the reason
(its credential is there and is bad; the chain stops: a bad token is never retried as something else).

* :class:`NodeCertificateAuthenticator`: the SPIFFE identity of the client certificate verified in the
  mTLS handshake (a ztunnel's node identity). Never a request field.
* :class:`PodTokenAuthenticator`: ``authorization: Bearer <token>`` carrying a pod-bound token
  (:mod:`ambit.identity.tokens`), e.g. a waypoint pod's before it has a certificate.

:func:`authorize` then applies the rule that belongs to the caller's kind: node authorization
(:mod:`ambit.identity.node_auth`) or pod-token authorization (:mod:`ambit.identity.pod_auth`). The
kubectl issue adds bearer tokens for users and TokenReview behind this same interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ambit.identity.node_auth import CaDecision, authorize_certificate_request
from ambit.identity.pod_auth import authorize_pod_token_request
from ambit.identity.tokens import PodToken, TokenError, TokenVerifier
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement

BEARER = "bearer "

Caller = Identity | NodeIdentity | PodToken


class AuthenticationError(Exception):
    """A credential was presented and is not good; the message is the reason the caller gets."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request carries: the handshake's verified peer identity and its authorization header."""

    peer: Identity | NodeIdentity | None
    authorization: str | None = None

    def bearer_token(self) -> str | None:
        value = self.authorization
        if value is None:
            return None
        if not value.lower().startswith(BEARER) or not value[len(BEARER) :].strip():
            raise AuthenticationError("the authorization header is not 'Bearer <token>'")
        return value[len(BEARER) :].strip()


class Authenticator(Protocol):
    def authenticate(self, credentials: Credentials, *, now: datetime) -> Caller | None: ...


class NodeCertificateAuthenticator:
    """The verified client certificate's SPIFFE identity (node authorization decides what it may get)."""

    def authenticate(self, credentials: Credentials, *, now: datetime) -> Caller | None:
        return credentials.peer


class PodTokenAuthenticator:
    """A pod-bound bearer token, verified against the cluster's token keys."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier

    def authenticate(self, credentials: Credentials, *, now: datetime) -> Caller | None:
        token = credentials.bearer_token()
        if token is None:
            return None
        try:
            return self._verifier.verify(token, now=now)
        except TokenError as exc:
            raise AuthenticationError(str(exc)) from None


def authenticate(
    authenticators: Sequence[Authenticator], credentials: Credentials, *, now: datetime
) -> Caller | None:
    """The first authenticator's caller, in order; None when no credential was presented at all.

    A bearer token is an explicit claim: when one is present and no authenticator accepts it, the
    request fails rather than falling back to the peer certificate.
    """
    token_presented = credentials.authorization is not None
    for authenticator in authenticators:
        caller = authenticator.authenticate(credentials, now=now)
        if caller is None:
            continue
        if token_presented and not isinstance(caller, PodToken):
            continue  # the certificate authenticator does not speak for a presented token
        return caller
    if token_presented:
        raise AuthenticationError("a bearer token was presented but no authenticator here accepts tokens")
    return None


def authorize(
    caller: Caller | None,
    requested: Identity | NodeIdentity,
    pods: Iterable[PodPlacement],
    *,
    trust_domain: str,
) -> CaDecision:
    """The rule for the caller's kind: pod-token authorization for a token, node authorization otherwise."""
    if isinstance(caller, PodToken):
        return authorize_pod_token_request(caller, requested, pods, trust_domain=trust_domain)
    return authorize_certificate_request(caller, requested, pods, trust_domain=trust_domain)
