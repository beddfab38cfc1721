"""The certificate authority: a root (and optional intermediate) key pair that signs workload CSRs.

Owns the CA's files on disk (Istio's
``cacerts`` names: ``root-cert.pem``, ``root-key.pem``, ``ca-cert.pem``, ``ca-key.pem``,
``cert-chain.pem``, plus ``trust-bundle.pem`` for root rotation) and the signing rule: **the CA issues
exactly the identity it was told to, whatever the CSR asks for.** The CSR only contributes a public
key (after its signature is checked). Deciding *whether* a caller may have that identity is
``node_auth``'s job, done before ``sign_csr`` is called. What the certificates look like (root,
intermediate, X.509-SVID leaf) is ``profiles``'s; the answer (`IssuedCert`) and the trust bundle are
``certs``'s, which never imports this module. No sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from ambit.identity.certs import (
    PRIVATE_FILE_MODE,
    PUBLIC_FILE_MODE,
    CertError,
    IssuedCert,
    TrustBundle,
    write_pem,
)
from ambit.identity.profiles import ca_certificate, ca_name, svid_certificate
from ambit.model.identity import (
    DEFAULT_TRUST_DOMAIN,
    Identity,
    IdentityError,
    NodeIdentity,
    check_trust_domain,
)

DEFAULT_TTL = timedelta(hours=24)
DEFAULT_MAX_TTL = timedelta(days=90)
DEFAULT_ROOT_TTL = timedelta(days=3650)
CLOCK_SKEW = timedelta(minutes=1)
CA_BACKDATE = timedelta(hours=1)
MIN_RSA_BITS = 2048

ROOT_CERT_FILE = "root-cert.pem"
ROOT_KEY_FILE = "root-key.pem"
CA_CERT_FILE = "ca-cert.pem"
CA_KEY_FILE = "ca-key.pem"
CERT_CHAIN_FILE = "cert-chain.pem"
TRUST_BUNDLE_FILE = "trust-bundle.pem"
CA_FILES = (ROOT_CERT_FILE, ROOT_KEY_FILE, CA_CERT_FILE, CA_KEY_FILE, CERT_CHAIN_FILE, TRUST_BUNDLE_FILE)


class CaError(Exception):
    """The CA cannot be built, loaded or cannot sign a request; the message says why."""


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return cert.public_key().public_bytes(der, spki) == key.public_key().public_bytes(der, spki)


def _check_csr_key(public_key: CertificatePublicKeyTypes) -> None:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1 | ec.SECP384R1):
            raise CaError(f"CSR key uses curve {public_key.curve.name}; only P-256 and P-384 are accepted")
        return
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise CaError(f"CSR RSA key has {public_key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return
    raise CaError(f"CSR key type {type(public_key).__name__} is not accepted; use EC P-256")


def _new_ca_cert(
    role: str,
    trust_domain: str,
    validity: tuple[datetime, datetime],
    *,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    path_length: int | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A fresh EC P-256 key and its CA certificate ``O=ambit, CN=ambit <role> <td>``, signed by
    ``issuer`` (certificate and key), or by itself without one."""
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_cert, signing_key = issuer if issuer is not None else (None, key)
    cert = ca_certificate(
        subject=ca_name(f"ambit {role} {trust_domain}"),
        public_key=key.public_key(),
        issuer=issuer_cert,
        signing_key=signing_key,
        trust_domain=trust_domain,
        not_before=validity[0],
        not_after=validity[1],
        path_length=path_length,
    )
    return cert, key


class CertificateAuthority:
    """An EC root (and optional intermediate) that signs X.509-SVIDs for one trust domain.

    When an intermediate is present it signs the leaves; the root key may then be absent (as with
    Istio's plug-in ``cacerts``). Extra roots (``add_root``) are only trusted, never used to sign.
    """

    def __init__(
        self,
        *,
        trust_domain: str,
        root_cert: x509.Certificate,
        root_key: ec.EllipticCurvePrivateKey | None,
        intermediate_cert: x509.Certificate | None = None,
        intermediate_key: ec.EllipticCurvePrivateKey | None = None,
        extra_roots: Sequence[x509.Certificate] = (),
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        default_ttl: timedelta = DEFAULT_TTL,
    ) -> None:
        try:
            self.trust_domain = check_trust_domain(trust_domain)
        except IdentityError as exc:
            raise CaError(f"invalid trust domain: {exc}") from exc
        if max_ttl <= timedelta(0) or default_ttl <= timedelta(0):
            raise CaError("max_ttl and default_ttl must be positive")
        if (intermediate_cert is None) != (intermediate_key is None):
            raise CaError("an intermediate needs both its certificate and its key")
        if intermediate_key is None and root_key is None:
            raise CaError("no signing key: give the root key or an intermediate certificate and key")
        if root_key is not None and not _same_key(root_cert, root_key):
            raise CaError("root key does not match the root certificate")
        if intermediate_cert is not None and intermediate_key is not None:
            if not _same_key(intermediate_cert, intermediate_key):
                raise CaError("intermediate key does not match the intermediate certificate")
            try:
                intermediate_cert.verify_directly_issued_by(root_cert)
            except (ValueError, TypeError, InvalidSignature) as exc:
                reason = str(exc) or "signature does not verify"
                raise CaError(f"intermediate certificate is not signed by the root: {reason}") from exc
        self.root_cert = root_cert
        self.root_key = root_key
        self.intermediate_cert = intermediate_cert
        self.intermediate_key = intermediate_key
        self.max_ttl = max_ttl
        self.default_ttl = default_ttl
        self._roots: list[x509.Certificate] = [root_cert]
        for extra in extra_roots:
            self._add_root_certificate(extra)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        trust_domain: str = DEFAULT_TRUST_DOMAIN,
        *,
        intermediate: bool = False,
        root_ttl: timedelta = DEFAULT_ROOT_TTL,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
    ) -> CertificateAuthority:
        """A fresh self-signed EC P-256 root (``O=ambit, CN=ambit root <td>``), optionally an intermediate."""
        try:
            check_trust_domain(trust_domain)
        except IdentityError as exc:
            raise CaError(f"invalid trust domain: {exc}") from exc
        if root_ttl <= timedelta(0):
            raise CaError("root_ttl must be positive")
        now = datetime.now(UTC)
        not_before, not_after = now - CA_BACKDATE, now + root_ttl
        validity = (not_before, not_after)
        root_cert, root_key = _new_ca_cert("root", trust_domain, validity, issuer=None, path_length=None)
        inter_cert: x509.Certificate | None = None
        inter_key: ec.EllipticCurvePrivateKey | None = None
        if intermediate:
            inter_cert, inter_key = _new_ca_cert(
                "intermediate", trust_domain, validity, issuer=(root_cert, root_key), path_length=0
            )
        return cls(
            trust_domain=trust_domain,
            root_cert=root_cert,
            root_key=root_key,
            intermediate_cert=inter_cert,
            intermediate_key=inter_key,
            max_ttl=max_ttl,
        )

    @classmethod
    def load(cls, directory: Path, *, trust_domain: str | None = None) -> CertificateAuthority:
        """Read a CA written by :meth:`save` (or an Istio ``cacerts`` directory).

        The trust domain comes from the signing certificate's ``spiffe://<td>`` URI SAN; pass
        ``trust_domain`` for CAs that have none (it must agree when both exist).
        """
        directory = Path(directory)
        root_cert = _read_cert(directory / ROOT_CERT_FILE)
        root_key_path = directory / ROOT_KEY_FILE
        inter_cert_path, inter_key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        inter_cert = _read_cert(inter_cert_path) if inter_cert_path.exists() else None
        inter_key = _read_key(inter_key_path) if inter_key_path.exists() else None
        if (inter_cert is None) != (inter_key is None):
            missing = inter_key_path if inter_key is None else inter_cert_path
            raise CaError(
                f"{missing} is missing: an intermediate needs both {CA_CERT_FILE} and {CA_KEY_FILE}"
            )
        if inter_key is None or root_key_path.exists():
            root_key: ec.EllipticCurvePrivateKey | None = _read_key(root_key_path)
        else:
            root_key = None
        bundle_path = directory / TRUST_BUNDLE_FILE
        extra: list[x509.Certificate] = []
        if bundle_path.exists():
            try:
                extra = TrustBundle.from_file(bundle_path).certificates()
            except CertError as exc:
                raise CaError(str(exc)) from exc
        signer = inter_cert if inter_cert is not None else root_cert
        domain = _trust_domain_of(
            signer, directory / (CA_CERT_FILE if inter_cert is not None else ROOT_CERT_FILE)
        )
        if trust_domain is not None and domain is not None and trust_domain != domain:
            raise CaError(f"CA in {directory} is for trust domain {domain!r}, not {trust_domain!r}")
        try:
            return cls(
                trust_domain=trust_domain or domain or DEFAULT_TRUST_DOMAIN,
                root_cert=root_cert,
                root_key=root_key,
                intermediate_cert=inter_cert,
                intermediate_key=inter_key,
                extra_roots=extra,
            )
        except CaError as exc:
            raise CaError(f"CA in {directory}: {exc}") from exc

    def save(self, directory: Path) -> None:
        """Write the CA files (keys 0600, certificates 0644, each atomically) into ``directory``.

        Intermediate files left over from an earlier CA are removed when this one has no intermediate.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_pem(directory / ROOT_CERT_FILE, _pem(self.root_cert), mode=PUBLIC_FILE_MODE)
        if self.root_key is not None:
            write_pem(directory / ROOT_KEY_FILE, _key_pem(self.root_key), mode=PRIVATE_FILE_MODE)
        else:
            (directory / ROOT_KEY_FILE).unlink(missing_ok=True)
        if self.intermediate_cert is not None and self.intermediate_key is not None:
            write_pem(directory / CA_KEY_FILE, _key_pem(self.intermediate_key), mode=PRIVATE_FILE_MODE)
            write_pem(directory / CA_CERT_FILE, _pem(self.intermediate_cert), mode=PUBLIC_FILE_MODE)
            chain = _pem(self.intermediate_cert) + _pem(self.root_cert)
            write_pem(directory / CERT_CHAIN_FILE, chain, mode=PUBLIC_FILE_MODE)
        else:
            for name in (CA_KEY_FILE, CA_CERT_FILE, CERT_CHAIN_FILE):
                (directory / name).unlink(missing_ok=True)
        write_pem(directory / TRUST_BUNDLE_FILE, self.trust_bundle.roots_pem, mode=PUBLIC_FILE_MODE)

    # -- trust --------------------------------------------------------------------------------

    @property
    def trust_bundle(self) -> TrustBundle:
        """Every root peers should accept: this CA's root first, then any added roots."""
        return TrustBundle.from_certificates(self._roots)

    @property
    def signing_cert(self) -> x509.Certificate:
        return self.intermediate_cert if self.intermediate_cert is not None else self.root_cert

    def add_root(self, cert_pem: bytes) -> None:
        """Trust one more root (e.g. the next root during a rotation). It never signs here."""
        try:
            certs = x509.load_pem_x509_certificates(cert_pem)
        except ValueError as exc:
            raise CaError(f"root to add is not valid PEM: {exc}") from exc
        if not certs:
            raise CaError("root to add contains no certificate")
        for cert in certs:
            self._add_root_certificate(cert)

    def _add_root_certificate(self, cert: x509.Certificate) -> None:
        try:
            TrustBundle.from_certificates([cert])
        except CertError as exc:
            raise CaError(f"cannot add root: {exc}") from exc
        if cert not in self._roots:
            self._roots.append(cert)

    # -- signing ------------------------------------------------------------------------------

    def sign_csr(
        self,
        csr_pem: bytes,
        identity: Identity | NodeIdentity,
        *,
        ttl: timedelta | None = None,
        not_before: datetime | None = None,
    ) -> IssuedCert:
        """Issue an X.509-SVID for ``identity`` bound to the CSR's public key.

        The CSR's signature must verify; its subject and SANs are ignored. The leaf's only SAN is
        ``identity``'s URI (critical, empty subject). ``ttl`` defaults to ``default_ttl`` and is
        clamped to ``max_ttl`` and to the signing certificate's own expiry. ``not_before`` is for
        tests that need expired or not-yet-valid certificates; normally the leaf starts one minute
        in the past to absorb clock skew.
        """
        if not isinstance(identity, Identity | NodeIdentity):
            raise CaError(f"identity must be an Identity or NodeIdentity, got {type(identity).__name__}")
        if identity.trust_domain != self.trust_domain:
            raise CaError(
                f"cannot issue {identity}: trust domain {identity.trust_domain!r} "
                f"is not this CA's {self.trust_domain!r}"
            )
        csr = _load_csr(csr_pem)
        lifetime = self.default_ttl if ttl is None else ttl
        if lifetime <= timedelta(0):
            raise CaError(f"requested TTL {lifetime} is not positive")
        lifetime = min(lifetime, self.max_ttl)
        if not_before is None:
            now = datetime.now(UTC)
            start, end = now - CLOCK_SKEW, now + lifetime
        else:
            if not_before.tzinfo is None:
                raise CaError("not_before must be timezone-aware")
            start, end = not_before, not_before + lifetime
        signer = self.signing_cert
        end = min(end, signer.not_valid_after_utc)
        if end <= start:
            raise CaError(
                f"signing certificate expires at {signer.not_valid_after_utc}; cannot issue a valid leaf"
            )
        signing_key = self.intermediate_key if self.intermediate_key is not None else self.root_key
        assert signing_key is not None  # guaranteed by __init__
        leaf = svid_certificate(
            public_key=csr.public_key(),
            identity=identity,
            signer=signer,
            signing_key=signing_key,
            not_before=start,
            not_after=end,
        )
        chain = (
            [leaf]
            + ([self.intermediate_cert] if self.intermediate_cert is not None else [])
            + [self.root_cert]
        )
        return IssuedCert(
            chain_pem=b"".join(_pem(cert) for cert in chain),
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )


def _load_csr(csr_pem: bytes) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise CaError(f"CSR is not a valid PEM certificate request: {exc}") from exc
    try:
        valid = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise CaError(f"CSR cannot be checked: {exc}") from exc
    if not valid:
        raise CaError("CSR signature does not verify (the requester does not hold the key)")
    _check_csr_key(public_key)
    return csr


def _read_file(path: Path) -> bytes:
    """The bytes of one of the CA's files; CaError when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CaError(f"{path} is missing") from None
    except OSError as exc:
        raise CaError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_cert(path: Path) -> x509.Certificate:
    data = _read_file(path)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CaError(f"{path} is not a valid PEM certificate: {exc}") from exc


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    data = _read_file(path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise CaError(f"{path} is not a valid unencrypted PEM private key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CaError(f"{path} holds a {type(key).__name__}; the CA needs an EC key")
    return key


def _trust_domain_of(cert: x509.Certificate, path: Path) -> str | None:
    """The trust domain named by a CA certificate's ``spiffe://<td>`` URI SAN, or None if it has none."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://") and "/" not in uri[len("spiffe://") :]:
            domain = uri[len("spiffe://") :]
            try:
                return check_trust_domain(domain)
            except IdentityError as exc:
                raise CaError(f"{path}: {exc}") from exc
    return None
