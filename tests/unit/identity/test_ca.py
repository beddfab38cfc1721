"""The CA: leaf profile, CSR handling, TTLs, chain order, files on disk, strict verification."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from ambit.identity.ca import CaError, CertificateAuthority
from ambit.identity.certs import generate_key_and_csr, issue, write_cert_files
from ambit.model.identity import Identity, NodeIdentity

WORKLOAD = Identity("cluster.local", "default", "bookinfo-productpage")
NODE = NodeIdentity("cluster.local", "node-1")


@pytest.fixture(scope="module")
def root_ca() -> CertificateAuthority:
    return CertificateAuthority.create()


@pytest.fixture(scope="module")
def intermediate_ca() -> CertificateAuthority:
    return CertificateAuthority.create(intermediate=True)


def _chain(pem: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem)


def _csr_asking_for(key: ec.EllipticCurvePrivateKey, sans: list[x509.GeneralName], cn: str = "") -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _strict_verify(chain_pem: bytes, roots: list[x509.Certificate]) -> list[x509.GeneralName]:
    chain = _chain(chain_pem)
    verifier = PolicyBuilder().store(Store(roots)).build_client_verifier()
    verified = verifier.verify(chain[0], chain[1:-1])
    assert verified.subjects is not None
    return list(verified.subjects)


@pytest.mark.parametrize("ca_fixture", ["root_ca", "intermediate_ca"])
def test_leaf_profile(ca_fixture: str, request: pytest.FixtureRequest) -> None:
    ca: CertificateAuthority = request.getfixturevalue(ca_fixture)
    key_pem, csr_pem = generate_key_and_csr(WORKLOAD)
    issued = ca.sign_csr(csr_pem, WORKLOAD)
    leaf = _chain(issued.chain_pem)[0]

    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [x509.UniformResourceIdentifier(str(WORKLOAD))]
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not usage.value.key_cert_sign and not usage.value.key_encipherment
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf.public_key())
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    signer_ski = ca.signing_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == signer_ski.digest
    assert leaf.issuer == ca.signing_cert.subject
    assert 0 < leaf.serial_number < 2**128
    # The leaf certifies the CSR's key.
    key = serialization.load_pem_private_key(key_pem, None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )


def test_serials_are_random(root_ca: CertificateAuthority) -> None:
    serials = {_chain(issue(root_ca, WORKLOAD).chain_pem)[0].serial_number for _ in range(5)}
    assert len(serials) == 5


def test_ca_ignores_what_the_csr_asks_for(root_ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = _csr_asking_for(
        key,
        [
            x509.DNSName("evil.example.com"),
            x509.UniformResourceIdentifier("spiffe://cluster.local/ns/kube-system/sa/admin"),
            x509.UniformResourceIdentifier("spiffe://cluster.local/node/node-9"),
        ],
        cn="admin",
    )
    issued = root_ca.sign_csr(csr, WORKLOAD)
    leaf = _chain(issued.chain_pem)[0]
    assert leaf.subject == x509.Name([])
    names = list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    assert names == [x509.UniformResourceIdentifier(str(WORKLOAD))]


def test_csr_with_bad_signature_is_rejected(root_ca: CertificateAuthority) -> None:
    _, csr_pem = generate_key_and_csr(WORKLOAD)
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # flip a bit inside the signature
    tampered = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CaError, match="signature does not verify"):
        root_ca.sign_csr(tampered, WORKLOAD)


def test_csr_signed_by_another_key_is_rejected(root_ca: CertificateAuthority) -> None:
    """A CSR whose public key was swapped after signing (the requester does not hold the key)."""
    victim = ec.generate_private_key(ec.SECP256R1()).public_key()
    attacker = ec.generate_private_key(ec.SECP256R1())
    genuine = x509.load_pem_x509_csr(_csr_asking_for(attacker, []))
    der = genuine.public_bytes(serialization.Encoding.DER)
    spki_attacker = attacker.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    spki_victim = victim.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    swapped = x509.load_der_x509_csr(der.replace(spki_attacker, spki_victim))
    with pytest.raises(CaError, match="signature does not verify"):
        root_ca.sign_csr(swapped.public_bytes(serialization.Encoding.PEM), WORKLOAD)


@pytest.mark.parametrize("garbage", [b"", b"not a csr", b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"])
def test_malformed_csr_is_rejected(root_ca: CertificateAuthority, garbage: bytes) -> None:
    with pytest.raises(CaError, match="CSR is not a valid PEM"):
        root_ca.sign_csr(garbage, WORKLOAD)


def test_weak_csr_keys_are_rejected(root_ca: CertificateAuthority) -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(small_rsa, hashes.SHA256())
    with pytest.raises(CaError, match="1024 bits"):
        root_ca.sign_csr(csr.public_bytes(serialization.Encoding.PEM), WORKLOAD)
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(CaError, match="secp521r1"):
        root_ca.sign_csr(_csr_asking_for(p521, []), WORKLOAD)


def test_identity_of_another_trust_domain_is_refused(root_ca: CertificateAuthority) -> None:
    _, csr = generate_key_and_csr(WORKLOAD)
    with pytest.raises(CaError, match=re.escape("is not this CA's 'cluster.local'")):
        root_ca.sign_csr(csr, Identity("other.domain", "default", "web"))


def test_default_ttl_is_24h_with_one_minute_backdate(root_ca: CertificateAuthority) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    _, csr = generate_key_and_csr(WORKLOAD)
    issued = root_ca.sign_csr(csr, WORKLOAD)
    after = datetime.now(UTC)
    assert before - timedelta(minutes=1, seconds=1) <= issued.not_before <= after - timedelta(minutes=1)
    lifetime = issued.not_after - issued.not_before
    assert timedelta(hours=24, minutes=1) - timedelta(seconds=2) <= lifetime <= timedelta(hours=24, minutes=1)
    assert issued.not_before.tzinfo is not None and issued.not_after.tzinfo is not None


def test_ttl_above_max_is_clamped_not_refused() -> None:
    ca = CertificateAuthority.create(max_ttl=timedelta(days=2))
    _, csr = generate_key_and_csr(WORKLOAD)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    issued = ca.sign_csr(csr, WORKLOAD, ttl=timedelta(days=365), not_before=start)
    assert issued.not_after - issued.not_before == timedelta(days=2)


def test_default_max_ttl_is_90_days(root_ca: CertificateAuthority) -> None:
    start = datetime.now(UTC).replace(microsecond=0)
    cert = issue(root_ca, WORKLOAD, ttl=timedelta(days=1000), not_before=start)
    assert cert.not_after - cert.not_before == timedelta(days=90)


def test_leaf_never_outlives_its_signer() -> None:
    ca = CertificateAuthority.create(root_ttl=timedelta(hours=2))
    cert = issue(ca, WORKLOAD, ttl=timedelta(days=30))
    assert cert.not_after == ca.root_cert.not_valid_after_utc


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-5)])
def test_non_positive_ttl_is_refused(root_ca: CertificateAuthority, ttl: timedelta) -> None:
    _, csr = generate_key_and_csr(WORKLOAD)
    with pytest.raises(CaError, match="not positive"):
        root_ca.sign_csr(csr, WORKLOAD, ttl=ttl)


def test_not_before_override_makes_expired_and_future_certs(root_ca: CertificateAuthority) -> None:
    now = datetime.now(UTC)
    expired = issue(root_ca, WORKLOAD, ttl=timedelta(hours=1), not_before=now - timedelta(hours=3))
    assert expired.expired(now)
    future = issue(root_ca, WORKLOAD, ttl=timedelta(hours=1), not_before=now + timedelta(hours=3))
    assert not future.valid_at(now) and not future.expired(now)


def test_chain_order_root_ca(root_ca: CertificateAuthority) -> None:
    chain = _chain(issue(root_ca, WORKLOAD).chain_pem)
    assert len(chain) == 2
    assert chain[1] == root_ca.root_cert
    chain[0].verify_directly_issued_by(chain[1])


def test_chain_order_with_intermediate(intermediate_ca: CertificateAuthority) -> None:
    chain = _chain(issue(intermediate_ca, WORKLOAD).chain_pem)
    assert len(chain) == 3
    assert chain[1] == intermediate_ca.intermediate_cert
    assert chain[2] == intermediate_ca.root_cert
    chain[0].verify_directly_issued_by(chain[1])
    chain[1].verify_directly_issued_by(chain[2])


def test_ca_certificate_profiles(intermediate_ca: CertificateAuthority) -> None:
    root, inter = intermediate_ca.root_cert, intermediate_ca.intermediate_cert
    assert inter is not None
    assert root.subject.rfc4514_string() == "CN=ambit root cluster.local,O=ambit"
    assert root.issuer == root.subject
    for cert in (root, inter):
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and bc.value.ca
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)
    assert root.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


@pytest.mark.parametrize("ca_fixture", ["root_ca", "intermediate_ca"])
@pytest.mark.parametrize("identity", [WORKLOAD, NODE])
def test_strict_verification_with_cryptography(
    ca_fixture: str, identity: Identity | NodeIdentity, request: pytest.FixtureRequest
) -> None:
    ca: CertificateAuthority = request.getfixturevalue(ca_fixture)
    cert = issue(ca, identity)
    subjects = _strict_verify(cert.chain_pem, [ca.root_cert])
    assert subjects == [x509.UniformResourceIdentifier(str(identity))]


def test_strict_verification_fails_against_a_foreign_root(root_ca: CertificateAuthority) -> None:
    other = CertificateAuthority.create()
    with pytest.raises(VerificationError):
        _strict_verify(issue(root_ca, WORKLOAD).chain_pem, [other.root_cert])


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
@pytest.mark.parametrize("intermediate", [False, True])
def test_openssl_x509_strict_accepts_the_chain(tmp_path: Path, intermediate: bool) -> None:
    ca = CertificateAuthority.create(intermediate=intermediate)
    ca.save(tmp_path / "ca")
    cert_path, _ = write_cert_files(issue(ca, WORKLOAD), tmp_path, "leaf")
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(tmp_path / "ca" / "root-cert.pem"),
            "-untrusted",
            str(cert_path),
            str(cert_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{cert_path}: OK"


def test_save_writes_files_with_modes(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(intermediate=True)
    ca.save(tmp_path)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {
        "root-cert.pem": 0o644,
        "root-key.pem": 0o600,
        "ca-cert.pem": 0o644,
        "ca-key.pem": 0o600,
        "cert-chain.pem": 0o644,
        "trust-bundle.pem": 0o644,
    }
    chain = _chain((tmp_path / "cert-chain.pem").read_bytes())
    assert chain == [ca.intermediate_cert, ca.root_cert]


def test_save_without_intermediate_and_stale_files_are_removed(tmp_path: Path) -> None:
    CertificateAuthority.create(intermediate=True).save(tmp_path)
    plain = CertificateAuthority.create()
    plain.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root-cert.pem", "root-key.pem", "trust-bundle.pem"]
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.intermediate_cert is None
    assert loaded.root_cert == plain.root_cert


def test_load_round_trip_signs_verifiable_leaves(tmp_path: Path) -> None:
    ca = CertificateAuthority.create("example.org", intermediate=True)
    ca.save(tmp_path)
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.trust_domain == "example.org"
    assert loaded.root_cert == ca.root_cert
    assert loaded.intermediate_cert == ca.intermediate_cert
    identity = Identity("example.org", "ns1", "sa1")
    assert _strict_verify(issue(loaded, identity).chain_pem, [ca.root_cert]) == [
        x509.UniformResourceIdentifier(str(identity))
    ]


def test_load_accepts_istio_cacerts_without_root_key(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(intermediate=True)
    ca.save(tmp_path)
    (tmp_path / "root-key.pem").unlink()
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.root_key is None
    _strict_verify(issue(loaded, WORKLOAD).chain_pem, [ca.root_cert])


def test_load_disagreeing_trust_domain_is_refused(tmp_path: Path) -> None:
    CertificateAuthority.create("a.example").save(tmp_path)
    with pytest.raises(CaError, match=r"trust domain 'a.example', not 'b.example'"):
        CertificateAuthority.load(tmp_path, trust_domain="b.example")


@pytest.mark.parametrize(
    ("broken", "action", "message"),
    [
        ("root-cert.pem", "delete", "root-cert.pem is missing"),
        ("root-key.pem", "delete", "root-key.pem is missing"),
        ("root-cert.pem", "corrupt", "root-cert.pem is not a valid PEM certificate"),
        ("root-key.pem", "corrupt", "root-key.pem is not a valid unencrypted PEM private key"),
        ("ca-key.pem", "delete", "ca-key.pem is missing"),
        ("ca-cert.pem", "delete", "ca-cert.pem is missing"),
        ("ca-cert.pem", "corrupt", "ca-cert.pem is not a valid PEM certificate"),
        ("trust-bundle.pem", "corrupt", "trust-bundle.pem"),
    ],
)
def test_load_names_the_broken_file(tmp_path: Path, broken: str, action: str, message: str) -> None:
    CertificateAuthority.create(intermediate=True).save(tmp_path)
    target = tmp_path / broken
    if action == "delete":
        target.unlink()
    else:
        target.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    if broken == "root-key.pem":
        (tmp_path / "ca-key.pem").unlink()
        (tmp_path / "ca-cert.pem").unlink()
    with pytest.raises(CaError, match=message):
        CertificateAuthority.load(tmp_path)


def test_load_detects_mismatched_key(tmp_path: Path) -> None:
    CertificateAuthority.create().save(tmp_path)
    other = tmp_path / "other"
    CertificateAuthority.create().save(other)
    shutil.copy(other / "root-key.pem", tmp_path / "root-key.pem")
    with pytest.raises(CaError, match="root key does not match the root certificate"):
        CertificateAuthority.load(tmp_path)


def test_intermediate_from_another_root_is_refused() -> None:
    a, b = CertificateAuthority.create(intermediate=True), CertificateAuthority.create()
    with pytest.raises(CaError, match="not signed by the root"):
        CertificateAuthority(
            trust_domain="cluster.local",
            root_cert=b.root_cert,
            root_key=b.root_key,
            intermediate_cert=a.intermediate_cert,
            intermediate_key=a.intermediate_key,
        )


def test_trust_bundle_with_several_roots_survives_save_and_load(tmp_path: Path) -> None:
    old, new = CertificateAuthority.create(), CertificateAuthority.create()
    old.add_root(new.root_cert.public_bytes(serialization.Encoding.PEM))
    old.add_root(new.root_cert.public_bytes(serialization.Encoding.PEM))  # added once only
    assert old.trust_bundle.certificates() == [old.root_cert, new.root_cert]
    old.save(tmp_path)
    loaded = CertificateAuthority.load(tmp_path)
    assert loaded.trust_bundle.certificates() == [old.root_cert, new.root_cert]
    # A leaf of the new root verifies against the rotated bundle; the old root keeps signing.
    _strict_verify(issue(new, WORKLOAD).chain_pem, loaded.trust_bundle.certificates())
    assert _chain(issue(loaded, WORKLOAD).chain_pem)[-1] == old.root_cert


def test_add_root_refuses_non_ca_certificates(root_ca: CertificateAuthority) -> None:
    leaf_pem = _chain(issue(root_ca, WORKLOAD).chain_pem)[0].public_bytes(serialization.Encoding.PEM)
    ca = CertificateAuthority.create()
    with pytest.raises(CaError, match="not a CA"):
        ca.add_root(leaf_pem)
    with pytest.raises(CaError, match="not valid PEM"):
        ca.add_root(b"")


def test_invalid_trust_domain_is_refused() -> None:
    with pytest.raises(CaError, match="invalid trust domain"):
        CertificateAuthority.create("Bad_Domain:443")
