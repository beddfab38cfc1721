"""The certificates of the store's fabric listener (node heartbeats), separate from the mesh CA.

The runtime makes, once per cluster, under ``<state>/fabric-pki/``:

* a CA (ECDSA P-256, 10 years), used for nothing else: not the mesh CA, whose certificates carry
  SPIFFE identities; as in Kubernetes, the API server's and kubelets' certificates come from the
  cluster CA, not from Istio's;
* the listener's server certificate: SAN IP ``172.30.0.1`` (the fabric bridge's address);
* one client certificate per node, as Kubernetes names a kubelet: ``CN=system:node:<node>``,
  ``O=system:nodes``. The listener lets a node write its own Lease and nothing else.

Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
VALIDITY = datetime.timedelta(days=3650)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class FabricPki:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def ca(self) -> Path:
        return self.directory / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}-key.pem"

    def ensure(self, nodes: list[str], server_ip: str) -> None:
        """Create the CA, the server certificate and any node certificate that is missing."""
        if not self.ca.exists():
            key = _key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ambit fabric CA")])
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(name)
                .issuer_name(name)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + VALIDITY)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .sign(key, hashes.SHA256())
            )
            _write(self.key("ca"), _key_pem(key), private=True)
            _write(self.ca, cert.public_bytes(serialization.Encoding.PEM))
        if not self.cert("server").exists():
            self._issue(
                "server", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ambit-store")]), server_ip
            )
        for node in nodes:
            if not self.cert(node).exists():
                subject = x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODES_GROUP),
                        x509.NameAttribute(NameOID.COMMON_NAME, f"{NODE_PREFIX}{node}"),
                    ]
                )
                self._issue(node, subject, None)

    def _issue(self, name: str, subject: x509.Name, server_ip: str | None) -> None:
        ca_key = serialization.load_pem_private_key(self.key("ca").read_bytes(), None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        ca_cert = x509.load_pem_x509_certificate(self.ca.read_bytes())
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        if server_ip is not None:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(server_ip))]), critical=False
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        else:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        _write(self.key(name), _key_pem(key), private=True)
        _write(self.cert(name), cert.public_bytes(serialization.Encoding.PEM))

    def server_context(self) -> ssl.SSLContext:
        """TLS 1.3, a client certificate from this CA required."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(self.cert("server"), self.key("server"))
        context.load_verify_locations(self.ca)
        context.verify_mode = ssl.CERT_REQUIRED
        return context

    def client_context(self, node: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(self.cert(node), self.key(node))
        context.load_verify_locations(self.ca)
        return context


def node_of_peer(peercert: Any) -> str | None:
    """The node a verified client certificate names (``CN=system:node:<node>``), else None."""
    if not isinstance(peercert, dict):
        return None
    for rdn in peercert.get("subject") or ():
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str) and value.startswith(NODE_PREFIX):
                return value[len(NODE_PREFIX) :]
    return None
