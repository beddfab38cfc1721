"""The test PKI helper: issuing by URI or identity, node credentials, PEM files for other programs."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.model.identity import Identity, NodeIdentity
from ambit.testing.pki import Pki, write_bundle, write_cert


def test_issue_by_uri_identity_and_shortcuts() -> None:
    pki = Pki("example.org", intermediate=True)
    by_uri = pki.issue("spiffe://example.org/ns/a/sa/b")
    assert by_uri.identity == Identity("example.org", "a", "b")
    assert by_uri.lifetime == timedelta(hours=1, minutes=1)
    assert pki.workload("a", "b").identity == by_uri.identity
    assert pki.node("n1").identity == NodeIdentity("example.org", "n1")
    assert len(x509.load_pem_x509_certificates(by_uri.chain_pem)) == 3
    assert pki.trust_domain == "example.org"


def test_not_before_and_ttl_are_passed_through() -> None:
    pki = Pki()
    start = datetime(2026, 3, 1, tzinfo=UTC)
    cert = pki.node("n1", ttl=timedelta(minutes=5), not_before=start)
    assert (cert.not_before, cert.not_after) == (start, start + timedelta(minutes=5))


def test_write_helpers(tmp_path: Path) -> None:
    pki = Pki()
    cert = pki.workload("default", "web")
    cert_path, key_path = write_cert(cert, tmp_path / "certs", "web")
    assert (cert_path.name, key_path.name) == ("web-cert.pem", "web-key.pem")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert WorkloadCert.from_pem(cert_path.read_bytes(), key_path.read_bytes()) == cert

    bundle_path = pki.write(tmp_path / "ca")
    assert TrustBundle.from_file(bundle_path) == pki.bundle
    assert CertificateAuthority.load(tmp_path / "ca").root_cert == pki.ca.root_cert
    root_path = write_bundle(pki.bundle, tmp_path / "root-cert.pem")
    assert TrustBundle.from_file(root_path) == pki.bundle
