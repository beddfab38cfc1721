"""`ambit ca init` / `ambit ca issue`: files, modes, strict openssl verification, errors."""

from __future__ import annotations

import shutil
import stat
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509

from ambit.cli.ca import ca, parse_ttl
from ambit.identity.certs import WorkloadCert
from ambit.model.identity import Identity, NodeIdentity

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def run(*args: str) -> Result:
    return CliRunner().invoke(ca, list(args), catch_exceptions=False)


def init(directory: Path, *extra: str) -> None:
    result = run("init", "--dir", str(directory), *extra)
    assert result.exit_code == 0, result.output


def openssl_verify(ca_dir: Path, cert_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-CAfile",
            str(ca_dir / "root-cert.pem"),
            "-untrusted",
            str(cert_path),
            str(cert_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


@needs_openssl
@pytest.mark.parametrize("intermediate", [False, True])
def test_init_and_issue_pass_strict_openssl_verification(tmp_path: Path, intermediate: bool) -> None:
    ca_dir = tmp_path / "ca"
    init(ca_dir, *(["--intermediate"] if intermediate else []))
    expected = {"root-cert.pem", "root-key.pem", "trust-bundle.pem"}
    if intermediate:
        expected |= {"ca-cert.pem", "ca-key.pem", "cert-chain.pem"}
    assert {p.name for p in ca_dir.iterdir()} == expected

    uri = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
    result = run(
        "issue", "--dir", str(ca_dir), "--identity", uri, "--ttl", "1h", "--out", str(tmp_path / "pp")
    )
    assert result.exit_code == 0, result.output
    assert f"issued {uri}" in result.output
    cert_path, key_path = tmp_path / "pp-cert.pem", tmp_path / "pp-key.pem"

    verified = openssl_verify(ca_dir, cert_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f"{cert_path}: OK"

    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert len(chain) == (3 if intermediate else 2)
    sans = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(cert_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert [line.strip() for line in sans.splitlines()] == [
        "X509v3 Subject Alternative Name: critical",
        f"URI:{uri}",
    ]
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    cert = WorkloadCert.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    assert cert.identity == Identity.parse(uri)
    assert cert.lifetime == timedelta(hours=1, minutes=1)


@needs_openssl
def test_issue_node_identity(tmp_path: Path) -> None:
    init(tmp_path / "ca", "--trust-domain", "example.org")
    result = run(
        "issue", "--dir", str(tmp_path / "ca"), "--node", "node-3", "--out", str(tmp_path / "out" / "n3")
    )
    assert result.exit_code == 0, result.output
    cert_path = tmp_path / "out" / "n3-cert.pem"
    key_path = tmp_path / "out" / "n3-key.pem"
    assert openssl_verify(tmp_path / "ca", cert_path).returncode == 0
    cert = WorkloadCert.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    assert cert.identity == NodeIdentity("example.org", "node-3")
    assert cert.lifetime == timedelta(hours=24, minutes=1)  # default TTL


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    init(tmp_path)
    root = (tmp_path / "root-cert.pem").read_bytes()
    result = CliRunner().invoke(ca, ["init", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "a CA already exists in" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "root-cert.pem").read_bytes() == root
    init(tmp_path, "--force")
    assert (tmp_path / "root-cert.pem").read_bytes() != root


def test_init_rejects_a_bad_trust_domain(tmp_path: Path) -> None:
    result = CliRunner().invoke(ca, ["init", "--dir", str(tmp_path / "x"), "--trust-domain", "Bad:443"])
    assert result.exit_code == 2
    assert "contains a port" in result.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (
            ["--identity", "spiffe://cluster.local/ns/default"],
            "expected exactly /ns/<namespace>/sa/<service-account>",
        ),
        (["--identity", "SPIFFE://cluster.local/ns/a/sa/b"], "lowercase 'spiffe://'"),
        (["--identity", "spiffe://cluster.local/ns/a%20b/sa/b"], "percent-encoding"),
        (["--identity", "spiffe://cluster.local/ns/../sa/b"], "dot segments"),
        (["--identity", "spiffe://cluster.local:80/ns/a/sa/b"], "contains a port"),
        (["--identity", "spiffe://cluster.local/ns/a/sa/b/"], "trailing '/'"),
        (["--node", "bad/name"], "node name 'bad/name'"),
        (
            ["--identity", "spiffe://cluster.local/ns/a/sa/b", "--node", "n1"],
            "exactly one of --identity or --node",
        ),
        ([], "exactly one of --identity or --node"),
        (["--identity", "spiffe://cluster.local/ns/a/sa/b", "--ttl", "1w"], "is not a duration"),
        (["--identity", "spiffe://cluster.local/ns/a/sa/b", "--ttl", "0h"], "longer than zero"),
        (["--identity", "spiffe://cluster.local/ns/a/sa/b", "--ttl", "-5m"], "is not a duration"),
    ],
)
def test_bad_requests_exit_non_zero_with_the_reason(tmp_path: Path, args: list[str], reason: str) -> None:
    init(tmp_path / "ca")
    result = CliRunner().invoke(
        ca, ["issue", "--dir", str(tmp_path / "ca"), *args, "--out", str(tmp_path / "w")]
    )
    assert result.exit_code == 2
    assert reason in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "w-cert.pem").exists() and not (tmp_path / "w-key.pem").exists()


def test_identity_of_another_trust_domain_is_refused(tmp_path: Path) -> None:
    init(tmp_path / "ca")
    result = CliRunner().invoke(
        ca,
        [
            "issue",
            "--dir",
            str(tmp_path / "ca"),
            "--identity",
            "spiffe://other.org/ns/a/sa/b",
            "--out",
            str(tmp_path / "w"),
        ],
    )
    assert result.exit_code == 1
    assert "trust domain 'other.org' is not this CA's 'cluster.local'" in result.stderr


def test_issue_from_a_missing_or_broken_ca(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(
        ca, ["issue", "--dir", str(tmp_path / "empty"), "--node", "n1", "--out", str(tmp_path / "w")]
    )
    assert result.exit_code == 1
    assert "root-cert.pem is missing" in result.stderr


def test_ttl_above_the_maximum_is_clamped_with_a_warning(tmp_path: Path) -> None:
    init(tmp_path / "ca")
    result = CliRunner().invoke(
        ca,
        [
            "issue",
            "--dir",
            str(tmp_path / "ca"),
            "--node",
            "n1",
            "--ttl",
            "365d",
            "--out",
            str(tmp_path / "n1"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "clamped to 90 days" in result.stderr
    cert = WorkloadCert.from_pem(
        (tmp_path / "n1-cert.pem").read_bytes(), (tmp_path / "n1-key.pem").read_bytes()
    )
    assert cert.lifetime == timedelta(days=90, minutes=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
    ],
)
def test_parse_ttl(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1.5h", "1H", "1h30m", "one hour", "1 h x"])
def test_parse_ttl_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_ttl(text)
