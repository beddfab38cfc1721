"""The certificate profiles the CA signs: root and intermediate CA certificates, X.509-SVID leaves.

Pure builders on ``cryptography`` objects: the CA (``ambit.identity.ca``) decides what to sign and
with which key; this module only says what such a certificate looks like (extensions, criticality,
key identifiers, random 128-bit serials), so that it passes ``openssl verify -x509_strict``.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ambit.model.identity import Identity, NodeIdentity


def _serial() -> int:
    """A random positive 128-bit serial number."""
    return secrets.randbits(128) or 1


def _ski_of(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    """The certificate's SubjectKeyIdentifier, or the RFC 5280 method-1 one for CAs that lack it."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key())


def ca_certificate(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Certificate | None,
    signing_key: ec.EllipticCurvePrivateKey,
    trust_domain: str,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
) -> x509.Certificate:
    """A CA certificate (self-signed root when ``issuer`` is None) that passes ``openssl -x509_strict``."""
    ski = x509.SubjectKeyIdentifier.from_public_key(public_key)
    if issuer is None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        issuer_name = subject
    else:
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski_of(issuer))
        issuer_name = issuer.subject
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]),
            critical=False,
        )
        .sign(signing_key, hashes.SHA256())
    )


def ca_name(common_name: str) -> x509.Name:
    """``O=ambit, CN=<common_name>``: the subject of ambit's root and intermediate certificates."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ambit"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def svid_certificate(
    *,
    public_key: CertificatePublicKeyTypes,
    identity: Identity | NodeIdentity,
    signer: x509.Certificate,
    signing_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
) -> x509.Certificate:
    """An X.509-SVID leaf: empty subject, `identity`'s URI as its only (critical) SAN, server+client auth."""
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski_of(signer))
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(signer.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(identity))]), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(aki, critical=False)
        .sign(signing_key, hashes.SHA256())
    )
