"""Workload certificates, trust bundles, CSR creation and reading the SPIFFE ID out of a certificate.

Owns the in-memory forms every proxy handles: :class:`WorkloadCert` (an identity's chain, key and
validity) and :class:`TrustBundle` (the roots a peer must chain to, several during a rotation), the
rule "a certificate names exactly one URI SAN, and that is its identity", and writing PEM files with
the right permissions (keys 0600, written atomically). Also the CA's answer (:class:`IssuedCert`) and
`issue`, which asks any `CsrSigner` (the CA of ``ambit.identity.ca``) for a credential: this module
does not import the CA.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

from ambit.model.identity import Identity, IdentityError, NodeIdentity, parse_spiffe_id

PUBLIC_FILE_MODE = 0o644
PRIVATE_FILE_MODE = 0o600


class CertError(ValueError):
    """A certificate, key or bundle is unusable; the message says why."""


@dataclass(frozen=True)
class IssuedCert:
    """The CA's answer: chain (leaf, intermediates, root — as Istio returns it) and leaf validity (UTC)."""

    chain_pem: bytes
    not_before: datetime
    not_after: datetime


class CsrSigner(Protocol):
    """What `issue` needs of a CA (``ambit.identity.ca.CertificateAuthority`` is one)."""

    def sign_csr(
        self,
        csr_pem: bytes,
        identity: Identity | NodeIdentity,
        *,
        ttl: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> IssuedCert: ...


def generate_key_and_csr(identity: Identity | NodeIdentity) -> tuple[bytes, bytes]:
    """A fresh EC P-256 key (PKCS#8 PEM, unencrypted) and a CSR (PEM) asking for ``identity``.

    The CSR has an empty subject and one critical URI SAN, as X.509-SVIDs do.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]), critical=True
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def _load_certificate(data: bytes | x509.Certificate) -> x509.Certificate:
    if isinstance(data, x509.Certificate):
        return data
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertError(f"not a parsable X.509 certificate: {exc}") from exc


def identity_of_certificate(der_or_cert: bytes | x509.Certificate) -> Identity | NodeIdentity:
    """The SPIFFE identity a certificate (DER, PEM or parsed) names in its single URI SAN.

    Raises CertError when the certificate has no SAN, no URI SAN, several URI SANs, or a URI that is
    not a valid ambit SPIFFE ID (including NUL bytes and other control characters).
    """
    cert = _load_certificate(der_or_cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise CertError("certificate has no subjectAltName extension, so it names no SPIFFE ID") from None
    except ValueError as exc:
        raise CertError(f"certificate extensions cannot be parsed: {exc}") from exc
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise CertError("certificate has no URI subjectAltName, so it names no SPIFFE ID")
    if len(uris) > 1:
        listed = ", ".join(map(repr, uris))
        raise CertError(f"certificate has {len(uris)} URI subjectAltNames ({listed}); exactly one is allowed")
    try:
        return parse_spiffe_id(uris[0])
    except IdentityError as exc:
        raise CertError(f"certificate URI SAN is not a valid SPIFFE ID: {exc}") from exc


def _load_chain(chain_pem: bytes) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CertError(f"certificate chain is not valid PEM: {exc}") from exc
    if not chain:
        raise CertError("certificate chain is empty")
    return chain


def _load_private_key(key_pem: bytes) -> PrivateKeyTypes:
    try:
        return serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"private key is not a valid unencrypted PEM key: {exc}") from exc


def _public_der(public: PublicKeyTypes) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class WorkloadCert:
    """An identity's credential: chain (leaf, intermediates, root), private key and validity window.

    The key is left out of ``repr`` so it never lands in a log line.
    """

    identity: Identity | NodeIdentity
    chain_pem: bytes
    key_pem: bytes = field(repr=False)
    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        if self.not_before.tzinfo is None or self.not_after.tzinfo is None:
            raise CertError("certificate validity times must be timezone-aware (UTC)")
        if self.not_after <= self.not_before:
            raise CertError(
                f"certificate not_after {self.not_after} is not after not_before {self.not_before}"
            )

    @classmethod
    def from_issued(
        cls, identity: Identity | NodeIdentity, key_pem: bytes, issued: IssuedCert
    ) -> WorkloadCert:
        """Pair a CA answer with the key that made the CSR; the leaf must name ``identity``."""
        leaf = _load_chain(issued.chain_pem)[0]
        named = identity_of_certificate(leaf)
        if named != identity:
            raise CertError(f"issued certificate names {named}, but {identity} was requested")
        _check_key_matches(leaf, key_pem)
        return cls(identity, issued.chain_pem, key_pem, issued.not_before, issued.not_after)

    @classmethod
    def from_pem(cls, chain_pem: bytes, key_pem: bytes) -> WorkloadCert:
        """Read a credential from PEM: identity and validity come from the leaf (the first certificate)."""
        leaf = _load_chain(chain_pem)[0]
        identity = identity_of_certificate(leaf)
        _check_key_matches(leaf, key_pem)
        return cls(identity, chain_pem, key_pem, leaf.not_valid_before_utc, leaf.not_valid_after_utc)

    @property
    def refresh_at(self) -> datetime:
        """Half-life of the certificate, when a refresh should start (as ztunnel does)."""
        return self.not_before + (self.not_after - self.not_before) / 2

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before

    def expired(self, now: datetime) -> bool:
        """True once ``now`` is at or past not_after."""
        return now >= self.not_after

    def valid_at(self, now: datetime) -> bool:
        """True while not_before <= ``now`` < not_after."""
        return self.not_before <= now < self.not_after

    def leaf(self) -> x509.Certificate:
        """The parsed leaf certificate."""
        return _load_chain(self.chain_pem)[0]


def _check_key_matches(leaf: x509.Certificate, key_pem: bytes) -> None:
    key = _load_private_key(key_pem)
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertError("private key does not match the leaf certificate's public key")


@dataclass(frozen=True)
class TrustBundle:
    """The root certificates peers must chain to (PEM, one or more concatenated; several during rotation)."""

    roots_pem: bytes

    def __post_init__(self) -> None:
        try:
            roots = x509.load_pem_x509_certificates(self.roots_pem)
        except ValueError as exc:
            raise CertError(f"trust bundle is not valid PEM: {exc}") from exc
        if not roots:
            raise CertError("trust bundle contains no certificates")
        for root in roots:
            _require_ca(root)

    @classmethod
    def from_file(cls, path: Path) -> TrustBundle:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CertError(f"cannot read trust bundle {path}: {exc.strerror or exc}") from exc
        try:
            return cls(data)
        except CertError as exc:
            raise CertError(f"{path}: {exc}") from exc

    @classmethod
    def from_certificates(cls, roots: Iterable[x509.Certificate]) -> TrustBundle:
        """A bundle of the given roots, duplicates removed, order kept."""
        seen: set[bytes] = set()
        pems: list[bytes] = []
        for root in roots:
            der = root.public_bytes(serialization.Encoding.DER)
            if der not in seen:
                seen.add(der)
                pems.append(root.public_bytes(serialization.Encoding.PEM))
        return cls(b"".join(pems))

    def certificates(self) -> list[x509.Certificate]:
        return x509.load_pem_x509_certificates(self.roots_pem)

    def merge(self, other: TrustBundle) -> TrustBundle:
        """Roots of both bundles (this one's first), each root once."""
        return TrustBundle.from_certificates([*self.certificates(), *other.certificates()])


def _require_ca(cert: x509.Certificate) -> None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertError(
            f"certificate {cert.subject.rfc4514_string()!r} is not a CA (no basicConstraints)"
        ) from None
    if not constraints.ca:
        raise CertError(
            f"certificate {cert.subject.rfc4514_string()!r} is not a CA (basicConstraints CA=false)"
        )


def issue(
    ca: CsrSigner,
    identity: Identity | NodeIdentity,
    ttl: timedelta | None = None,
    not_before: datetime | None = None,
) -> WorkloadCert:
    """Key, CSR and signature in one step: a ready credential for ``identity`` from ``ca``."""
    key_pem, csr_pem = generate_key_and_csr(identity)
    issued = ca.sign_csr(csr_pem, identity, ttl=ttl, not_before=not_before)
    return WorkloadCert.from_issued(identity, key_pem, issued)


def write_pem(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename) with permissions ``mode`` from the start."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_cert_files(cert: WorkloadCert, directory: Path, prefix: str) -> tuple[Path, Path]:
    """Write ``PREFIX-cert.pem`` (chain, 0644) and ``PREFIX-key.pem`` (0600) into ``directory``."""
    directory = Path(directory)
    cert_path = directory / f"{prefix}-cert.pem"
    key_path = directory / f"{prefix}-key.pem"
    write_pem(key_path, cert.key_pem, mode=PRIVATE_FILE_MODE)
    write_pem(cert_path, cert.chain_pem, mode=PUBLIC_FILE_MODE)
    return cert_path, key_path
