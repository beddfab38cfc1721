"""Workload certificates, trust bundles, CSRs, reading identities out of certificates, PEM files."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import (
    CertError,
    TrustBundle,
    WorkloadCert,
    generate_key_and_csr,
    identity_of_certificate,
    issue,
    write_cert_files,
)
from ambit.model.identity import Identity, NodeIdentity

WORKLOAD = Identity("cluster.local", "default", "web")
NODE = NodeIdentity("cluster.local", "node-1")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(intermediate=True)


def _self_signed(sans: list[x509.GeneralName] | None) -> x509.Certificate:
    """A throwaway certificate with exactly the SANs given (None: no SAN extension at all)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(hours=1))
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256())


def test_generate_key_and_csr() -> None:
    key_pem, csr_pem = generate_key_and_csr(WORKLOAD)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    key = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    csr = x509.load_pem_x509_csr(csr_pem)
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([])
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(str(WORKLOAD))]


def test_issue_returns_a_matching_credential(ca: CertificateAuthority) -> None:
    cert = issue(ca, WORKLOAD, ttl=timedelta(hours=2))
    assert cert.identity == WORKLOAD
    leaf = cert.leaf()
    assert cert.not_before == leaf.not_valid_before_utc
    assert cert.not_after == leaf.not_valid_after_utc
    assert cert.lifetime == timedelta(hours=2, minutes=1)
    assert cert.refresh_at == cert.not_before + cert.lifetime / 2


def test_validity_predicates(ca: CertificateAuthority) -> None:
    start = datetime(2026, 5, 1, tzinfo=UTC)
    cert = issue(ca, WORKLOAD, ttl=timedelta(hours=1), not_before=start)
    assert not cert.valid_at(start - timedelta(seconds=1))
    assert not cert.expired(start - timedelta(seconds=1))
    assert cert.valid_at(start)
    assert cert.valid_at(cert.not_after - timedelta(microseconds=1))
    assert not cert.valid_at(cert.not_after)
    assert cert.expired(cert.not_after)


def test_from_pem_reads_identity_and_validity(ca: CertificateAuthority) -> None:
    original = issue(ca, NODE)
    again = WorkloadCert.from_pem(original.chain_pem, original.key_pem)
    assert again == original


def test_from_pem_rejects_a_key_of_another_certificate(ca: CertificateAuthority) -> None:
    a, b = issue(ca, WORKLOAD), issue(ca, WORKLOAD)
    with pytest.raises(CertError, match="does not match"):
        WorkloadCert.from_pem(a.chain_pem, b.key_pem)


def test_from_pem_rejects_garbage(ca: CertificateAuthority) -> None:
    cert = issue(ca, WORKLOAD)
    with pytest.raises(CertError, match="chain is not valid PEM"):
        WorkloadCert.from_pem(b"junk", cert.key_pem)
    with pytest.raises(CertError, match="private key is not a valid"):
        WorkloadCert.from_pem(cert.chain_pem, b"junk")


def test_from_issued_checks_the_identity(ca: CertificateAuthority) -> None:
    key_pem, csr_pem = generate_key_and_csr(WORKLOAD)
    issued = ca.sign_csr(csr_pem, WORKLOAD)
    assert WorkloadCert.from_issued(WORKLOAD, key_pem, issued).identity == WORKLOAD
    with pytest.raises(CertError, match=re.escape("names spiffe://cluster.local/ns/default/sa/web, but")):
        WorkloadCert.from_issued(Identity("cluster.local", "default", "other"), key_pem, issued)


def test_workload_cert_rejects_naive_or_inverted_times(ca: CertificateAuthority) -> None:
    cert = issue(ca, WORKLOAD)
    with pytest.raises(CertError, match="timezone-aware"):
        WorkloadCert(WORKLOAD, cert.chain_pem, cert.key_pem, datetime(2026, 1, 1), cert.not_after)
    with pytest.raises(CertError, match="is not after"):
        WorkloadCert(WORKLOAD, cert.chain_pem, cert.key_pem, cert.not_after, cert.not_before)


def test_repr_never_shows_the_key(ca: CertificateAuthority) -> None:
    cert = issue(ca, WORKLOAD)
    assert b"PRIVATE KEY" in cert.key_pem
    assert "PRIVATE KEY" not in repr(cert)
    assert "key_pem" not in repr(cert)


def test_identity_of_certificate_accepts_der_pem_and_objects(ca: CertificateAuthority) -> None:
    leaf = issue(ca, WORKLOAD).leaf()
    assert identity_of_certificate(leaf) == WORKLOAD
    assert identity_of_certificate(leaf.public_bytes(serialization.Encoding.DER)) == WORKLOAD
    assert identity_of_certificate(leaf.public_bytes(serialization.Encoding.PEM)) == WORKLOAD


@pytest.mark.parametrize(
    ("sans", "reason"),
    [
        (None, "no subjectAltName extension"),
        ([x509.DNSName("web.default.svc")], "no URI subjectAltName"),
        (
            [
                x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a/sa/b"),
                x509.UniformResourceIdentifier("spiffe://cluster.local/ns/c/sa/d"),
            ],
            "2 URI subjectAltNames",
        ),
        ([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/a\x00/sa/b")], "NUL byte"),
        ([x509.UniformResourceIdentifier("https://example.com/")], "must start with 'spiffe://'"),
        ([x509.UniformResourceIdentifier("spiffe://cluster.local")], "has no path"),
    ],
)
def test_identity_of_certificate_rejections(sans: list[x509.GeneralName] | None, reason: str) -> None:
    with pytest.raises(CertError, match=reason):
        identity_of_certificate(_self_signed(sans))


def test_identity_of_certificate_allows_other_san_types_beside_one_uri() -> None:
    cert = _self_signed([x509.DNSName("web"), x509.UniformResourceIdentifier(str(WORKLOAD))])
    assert identity_of_certificate(cert) == WORKLOAD


def test_identity_of_certificate_rejects_unparsable_bytes() -> None:
    with pytest.raises(CertError, match=re.escape("not a parsable X.509 certificate")):
        identity_of_certificate(b"\x30\x03\x02\x01\x00")


def test_trust_bundle_validates_and_merges(tmp_path: Path) -> None:
    a, b = CertificateAuthority.create(), CertificateAuthority.create()
    merged = a.trust_bundle.merge(b.trust_bundle).merge(a.trust_bundle)
    assert merged.certificates() == [a.root_cert, b.root_cert]
    path = tmp_path / "bundle.pem"
    path.write_bytes(merged.roots_pem)
    assert TrustBundle.from_file(path) == merged


def test_trust_bundle_rejections(tmp_path: Path, ca: CertificateAuthority) -> None:
    with pytest.raises(CertError, match="not valid PEM"):
        TrustBundle(b"")
    leaf_pem = issue(ca, WORKLOAD).leaf().public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertError, match="is not a CA"):
        TrustBundle(leaf_pem)
    with pytest.raises(CertError, match="cannot read trust bundle"):
        TrustBundle.from_file(tmp_path / "missing.pem")


def test_write_cert_files_modes_and_content(tmp_path: Path, ca: CertificateAuthority) -> None:
    cert = issue(ca, WORKLOAD)
    cert_path, key_path = write_cert_files(cert, tmp_path, "web")
    assert cert_path == tmp_path / "web-cert.pem" and key_path == tmp_path / "web-key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert WorkloadCert.from_pem(cert_path.read_bytes(), key_path.read_bytes()) == cert
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
