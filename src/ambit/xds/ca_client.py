"""Fetching workload certificates from the control plane's CA (the ``fetch`` of a SecretManager).

For each identity: a fresh EC P-256 key and a CSR naming it (the key never leaves the proxy), then
``CreateCertificate`` on a control-plane replica over mTLS with the proxy's node credential; the CA
decides from that credential (never from the request) whether this node may have the identity. The
answer is checked before use: the leaf must name exactly the requested identity and match our key,
each certificate must be signed by the next, and the chain must end at a root of our trust bundle.

Replicas are tried in random order until one answers; a refusal (``PERMISSION_DENIED`` and other
definite answers) is final and not retried elsewhere, since every replica applies the same rule.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from ambit.identity.certs import CertError, TrustBundle, WorkloadCert, generate_key_and_csr
from ambit.model.identity import Identity, NodeIdentity
from ambit.resources.names import control_plane_identity
from ambit.xds.channel import DEFAULT_CONNECT_TIMEOUT, Address, VerifiedChannel
from ambit.xds.pb.ca.v1 import ca_pb2

log = logging.getLogger(__name__)

CA_PATH = "/ambit.ca.v1.CertificateService/CreateCertificate"
DEFAULT_TTL = timedelta(hours=24)
DEFAULT_TIMEOUT = 10.0
_FINAL_CODES = frozenset(
    {
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)


class CertificateFetchError(Exception):
    """No certificate could be obtained; the message says why."""


class CertificateDenied(CertificateFetchError):
    """The CA refused the request (e.g. node authorization); ``reason`` is its answer."""

    def __init__(self, identity: Identity, reason: str) -> None:
        super().__init__(f"CA refused a certificate for {identity}: {reason}")
        self.identity = identity
        self.reason = reason


class CaClient:
    """``fetch(identity) -> WorkloadCert`` against the control plane's CertificateService."""

    def __init__(
        self,
        *,
        addresses: Callable[[], Sequence[Address]],
        cert: WorkloadCert | None,
        bundle: TrustBundle,
        server_identity: Identity | NodeIdentity | None = None,
        token: Callable[[], str] | None = None,
        ttl: timedelta = DEFAULT_TTL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        rng: random.Random | None = None,
    ) -> None:
        self._addresses = addresses
        self._cert = cert
        self._bundle = bundle
        if server_identity is None:
            if cert is None:
                raise ValueError("a CA client without a certificate must be told the server identity")
            server_identity = control_plane_identity(cert.identity.trust_domain)
        self.server_identity = server_identity
        self._token = token
        self._ttl = ttl
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._channels: dict[Address, VerifiedChannel] = {}

    def update_credentials(self, cert: WorkloadCert, bundle: TrustBundle) -> None:
        """Use a renewed node credential or trust bundle for the next connections."""
        self._cert, self._bundle = cert, bundle

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()

    async def fetch(self, identity: Identity) -> WorkloadCert:
        """A certificate for ``identity`` from the CA, checked; raise CertificateFetchError otherwise."""
        key_pem, csr_pem = generate_key_and_csr(identity)
        request = ca_pb2.CertificateRequest(
            csr=csr_pem.decode("ascii"), validity_duration=int(self._ttl.total_seconds())
        )
        addresses = list(dict.fromkeys(self._addresses()))
        if not addresses:
            raise CertificateFetchError(f"no control-plane address known to fetch {identity}")
        self._rng.shuffle(addresses)
        errors: list[str] = []
        for address in addresses:
            try:
                response = await self._call(address, request)
            except grpc.aio.AioRpcError as exc:
                if exc.code() in _FINAL_CODES:
                    raise CertificateDenied(identity, f"{exc.code().name}: {exc.details()}") from None
                channel = self._channels.pop(address, None)
                detail = channel.last_error if channel is not None and channel.last_error else None
                errors.append(f"{address[0]}:{address[1]}: {detail or exc.details() or exc.code().name}")
                if channel is not None:
                    await channel.close()
                continue
            return self._certificate(identity, key_pem, list(response.cert_chain))
        raise CertificateFetchError(
            f"no control-plane replica issued a certificate for {identity}: " + "; ".join(errors)
        )

    async def _call(self, address: Address, request: ca_pb2.CertificateRequest) -> Any:
        channel = self._channels.get(address)
        if channel is None:
            channel = await VerifiedChannel.open(
                address,
                cert=self._cert,
                bundle=self._bundle,
                expected=self.server_identity,
                connect_timeout=self._connect_timeout,
            )
            self._channels[address] = channel
        method = channel.channel.unary_unary(
            CA_PATH,
            request_serializer=ca_pb2.CertificateRequest.SerializeToString,
            response_deserializer=ca_pb2.CertificateResponse.FromString,
        )
        metadata = None
        if self._token is not None:
            metadata = (("authorization", f"Bearer {self._token()}"),)
        return await method(request, timeout=self._timeout, metadata=metadata)

    def _certificate(self, identity: Identity, key_pem: bytes, chain: list[str]) -> WorkloadCert:
        if not chain:
            raise CertificateFetchError(f"CA returned an empty chain for {identity}")
        chain_pem = "".join(pem if pem.endswith("\n") else pem + "\n" for pem in chain).encode("ascii")
        try:
            cert = WorkloadCert.from_pem(chain_pem, key_pem)
        except CertError as exc:
            raise CertificateFetchError(f"CA returned an unusable certificate for {identity}: {exc}") from exc
        if cert.identity != identity:
            raise CertificateFetchError(
                f"CA returned a certificate for {cert.identity}, requested {identity}"
            )
        self._check_chain(identity, chain_pem)
        return cert

    def _check_chain(self, identity: Identity, chain_pem: bytes) -> None:
        certs = x509.load_pem_x509_certificates(chain_pem)
        roots = {root.public_bytes(serialization.Encoding.DER): root for root in self._bundle.certificates()}
        try:
            for child, parent in itertools.pairwise(certs):
                child.verify_directly_issued_by(parent)
            last = certs[-1]
            anchored = last.public_bytes(serialization.Encoding.DER) in roots or any(
                _issued_by(last, root) for root in roots.values()
            )
            if not anchored:
                raise ValueError("the chain does not end at a root of the trust bundle")
        except (ValueError, TypeError, InvalidSignature) as exc:
            reason = str(exc) or "a signature does not verify"
            raise CertificateFetchError(
                f"certificate chain for {identity} does not verify: {reason}"
            ) from exc


def _issued_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
