"""A ready-made PKI for tests: one CA (optionally with an intermediate) that issues credentials on demand.

Used by unit, integration and interop tests across the tree. Issuing goes through the real CA and CSR
code (``ambit.identity``), so every credential is what production would produce; ``not_before`` and
``ttl`` make expired and not-yet-valid certificates for negative tests. PEM file helpers write keys
with mode 0600 for tests that hand files to other programs (Node.js, openssl, stunnel).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from ambit.identity.ca import TRUST_BUNDLE_FILE, CertificateAuthority
from ambit.identity.certs import TrustBundle, WorkloadCert, issue, write_cert_files
from ambit.model.identity import DEFAULT_TRUST_DOMAIN, Identity, NodeIdentity, parse_spiffe_id

DEFAULT_TEST_TTL = timedelta(hours=1)


class Pki:
    """A CA for one trust domain that issues workload and node credentials for tests."""

    def __init__(self, trust_domain: str = DEFAULT_TRUST_DOMAIN, *, intermediate: bool = False) -> None:
        self.ca = CertificateAuthority.create(trust_domain, intermediate=intermediate)

    @property
    def trust_domain(self) -> str:
        return self.ca.trust_domain

    @property
    def bundle(self) -> TrustBundle:
        """The roots peers of this PKI trust."""
        return self.ca.trust_bundle

    def issue(
        self,
        identity: Identity | NodeIdentity | str,
        *,
        ttl: timedelta = DEFAULT_TEST_TTL,
        not_before: datetime | None = None,
    ) -> WorkloadCert:
        """A credential for ``identity`` (an identity or its ``spiffe://`` URI)."""
        if isinstance(identity, str):
            identity = parse_spiffe_id(identity)
        return issue(self.ca, identity, ttl=ttl, not_before=not_before)

    def workload(
        self,
        namespace: str,
        service_account: str,
        *,
        ttl: timedelta = DEFAULT_TEST_TTL,
        not_before: datetime | None = None,
    ) -> WorkloadCert:
        """A credential for ``spiffe://<td>/ns/<namespace>/sa/<service_account>``."""
        return self.issue(
            Identity(self.trust_domain, namespace, service_account), ttl=ttl, not_before=not_before
        )

    def node(
        self, name: str, *, ttl: timedelta = DEFAULT_TEST_TTL, not_before: datetime | None = None
    ) -> WorkloadCert:
        """A node credential for ``spiffe://<td>/node/<name>`` (what a ztunnel holds)."""
        return self.issue(NodeIdentity(self.trust_domain, name), ttl=ttl, not_before=not_before)

    def write(self, directory: Path) -> Path:
        """Save the whole CA into ``directory``; return the path of its trust bundle (all roots)."""
        self.ca.save(directory)
        return Path(directory) / TRUST_BUNDLE_FILE


def write_cert(cert: WorkloadCert, directory: Path, prefix: str) -> tuple[Path, Path]:
    """Write ``PREFIX-cert.pem`` (leaf, intermediates, root) and ``PREFIX-key.pem`` (0600); return both."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    return write_cert_files(cert, Path(directory), prefix)


def write_bundle(bundle: TrustBundle, path: Path) -> Path:
    """Write a trust bundle as one PEM file (e.g. ``root-cert.pem`` for another TLS stack)."""
    Path(path).write_bytes(bundle.roots_pem)
    return Path(path)
