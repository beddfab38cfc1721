"""mTLS ``ssl`` contexts for HBONE and the control plane, and the peer's SPIFFE identity after a handshake.

Owns the TLS policy of the mesh: TLS 1.3 only, client certificates required in both directions,
``VERIFY_X509_STRICT``, ALPN ``h2``, trust = the mesh trust bundle only (never the system store), no
hostname checks (SVIDs carry no DNS names; the identity is checked after the handshake instead, as
ztunnel does). OpenSSL rejects expired and not-yet-valid peer certificates during the handshake.

Key material never touches a filesystem: the chain and key are written to anonymous in-memory files
(``memfd_create``), loaded through ``/proc/self/fd/N``, and the descriptors closed at once.

Session resumption is off on the server (``num_tickets = 0``): every connection runs a full handshake,
so the peer's certificate (and its validity at that moment) is always verified afresh, and no ticket
keys exist to leak. HBONE connections are pooled and long-lived, so resumption would save little.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.model.identity import Identity, IdentityError, NodeIdentity, parse_spiffe_id

DEFAULT_ALPN: tuple[str, ...] = ("h2",)


class PeerIdentityError(Exception):
    """The peer's certificate or negotiation does not give the identity we require; the message says why."""


@contextmanager
def _memory_file(name: str, data: bytes) -> Iterator[str]:
    """A path readable by OpenSSL whose content lives only in memory; closed when the block ends."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


def _load_credential(context: ssl.SSLContext, cert: WorkloadCert) -> None:
    with (
        _memory_file("ambit-chain", cert.chain_pem) as chain_path,
        _memory_file("ambit-key", cert.key_pem) as key_path,
    ):
        try:
            context.load_cert_chain(certfile=chain_path, keyfile=key_path)
        except ssl.SSLError as exc:
            raise ValueError(f"cannot load the certificate of {cert.identity} into TLS: {exc}") from exc


def _apply_policy(
    context: ssl.SSLContext, cert: WorkloadCert | None, bundle: TrustBundle, alpn: Sequence[str]
) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.maximum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=bundle.roots_pem.decode("ascii"))
    if cert is not None:
        _load_credential(context, cert)
    if alpn:
        context.set_alpn_protocols(list(alpn))


def server_context(
    cert: WorkloadCert, bundle: TrustBundle, *, alpn: Sequence[str] = DEFAULT_ALPN
) -> ssl.SSLContext:
    """A TLS 1.3 server context presenting ``cert`` and requiring a client certificate from ``bundle``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_policy(context, cert, bundle, alpn)
    context.num_tickets = 0
    return context


def client_context(
    cert: WorkloadCert | None, bundle: TrustBundle, *, alpn: Sequence[str] = DEFAULT_ALPN
) -> ssl.SSLContext:
    """A TLS 1.3 client context presenting ``cert`` and verifying the server against ``bundle``.

    ``cert`` None presents no certificate (a caller that authenticates otherwise: a pod-bound token).

    Hostname checking is off: call :func:`verify_server_identity` after the handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    _apply_policy(context, cert, bundle, alpn)
    return context


def peer_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket,
    *,
    trust_domain: str | None = None,
    require_alpn: str | None = "h2",
) -> Identity | NodeIdentity:
    """The SPIFFE identity in the verified peer certificate's single URI SAN.

    Raises PeerIdentityError if the peer sent no certificate, the certificate has zero or several URI
    SANs or an invalid SPIFFE ID, the trust domain differs from ``trust_domain`` (when given), or the
    negotiated ALPN protocol is not ``require_alpn`` (when given).
    """
    peer = ssl_object.getpeercert()
    if not peer:
        raise PeerIdentityError("peer presented no verified certificate")
    uris = [
        entry[1]
        for entry in peer.get("subjectAltName", ())
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] == "URI"
    ]
    if len(uris) != 1:
        raise PeerIdentityError(
            f"peer certificate has {len(uris)} URI subjectAltNames; exactly one is required"
        )
    try:
        identity = parse_spiffe_id(str(uris[0]))
    except IdentityError as exc:
        raise PeerIdentityError(f"peer certificate names an invalid SPIFFE ID: {exc}") from exc
    if trust_domain is not None and identity.trust_domain != trust_domain:
        raise PeerIdentityError(f"peer {identity} is not in trust domain {trust_domain!r}")
    if require_alpn is not None:
        negotiated = ssl_object.selected_alpn_protocol()
        if negotiated != require_alpn:
            raise PeerIdentityError(
                f"peer {identity} negotiated ALPN {negotiated!r}, expected {require_alpn!r}"
            )
    return identity


def verify_server_identity(
    ssl_object: ssl.SSLObject | ssl.SSLSocket,
    expected: Identity | NodeIdentity,
    *,
    require_alpn: str | None = "h2",
) -> Identity | NodeIdentity:
    """Check that the server presented exactly ``expected``; return it, else raise PeerIdentityError."""
    presented = peer_identity(ssl_object, require_alpn=require_alpn)
    if presented != expected:
        raise PeerIdentityError(f"server presented {presented}, expected {expected}")
    return presented
