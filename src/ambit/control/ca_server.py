"""The CA service: ``CreateCertificate`` for ztunnels, after node authorization.

The rule (DESIGN §2, ``ambit.identity.node_auth``): the caller is the SPIFFE identity of its client
certificate as verified in the mTLS handshake, never a request field; it must be a node identity
``spiffe://<td>/node/<N>``; the identity to issue is the CSR's single URI SAN, and it is signed only
while a non-terminated pod with that namespace and service account is scheduled on node ``N``
(``pods`` is the replica's current view of pod placement). The response chain is leaf first, root
last. Every replica can sign: they share the CA keys.

A refusal is ``PERMISSION_DENIED`` carrying the reason; a malformed request ``INVALID_ARGUMENT``.
Both are logged and counted (and passed to ``on_denied``). A caller without a client certificate never
gets here: the server requires one in the handshake.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ambit.control.xds_server import peer_identity
from ambit.identity.ca import CaError, CertificateAuthority
from ambit.identity.node_auth import authorize_certificate_request
from ambit.model.identity import Identity, IdentityError, NodeIdentity, parse_spiffe_id
from ambit.model.placement import PodPlacement
from ambit.xds.pb.ca.v1 import ca_pb2

log = logging.getLogger(__name__)

CA_SERVICE = "ambit.ca.v1.CertificateService"
CA_METHOD = "CreateCertificate"
MAX_CSR_BYTES = 16 * 1024
_HISTORY = 100


class _BadRequest(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Denial:
    """One refused request: who asked, for what, and why."""

    caller: str
    requested: str
    code: str
    reason: str


@dataclass
class CaServerStats:
    issued: int = 0
    denied: int = 0
    invalid: int = 0
    recent_denials: deque[Denial] = field(default_factory=lambda: deque(maxlen=_HISTORY))


def requested_identity(csr_pem: bytes) -> Identity | NodeIdentity:
    """The identity a CSR asks for: its single URI SAN. Raise _BadRequest with the reason otherwise."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as exc:
        raise _BadRequest(f"CSR is not a valid PEM PKCS#10 request: {exc}") from None
    if not csr.is_signature_valid:
        raise _BadRequest("CSR signature does not verify")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise _BadRequest("CSR has no subjectAltName naming the identity to issue") from None
    except ValueError as exc:
        raise _BadRequest(f"CSR extensions cannot be parsed: {exc}") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        raise _BadRequest(f"CSR has {len(uris)} URI subjectAltNames; exactly one is required")
    try:
        return parse_spiffe_id(uris[0])
    except IdentityError as exc:
        raise _BadRequest(f"CSR names an invalid SPIFFE ID: {exc}") from None


def _parse(request: ca_pb2.CertificateRequest) -> tuple[bytes, Identity | NodeIdentity]:
    csr_pem = request.csr.encode("utf-8")
    if len(csr_pem) > MAX_CSR_BYTES:
        raise _BadRequest(f"CSR is {len(csr_pem)} bytes; at most {MAX_CSR_BYTES} are accepted")
    if request.validity_duration < 0:
        raise _BadRequest(f"validity_duration {request.validity_duration} is negative")
    return csr_pem, requested_identity(csr_pem)


class CertificateServer:
    """The CertificateService servicer; see the module docstring."""

    def __init__(
        self,
        ca: CertificateAuthority,
        pods: Callable[[], Iterable[PodPlacement]],
        *,
        on_denied: Callable[[Denial], None] | None = None,
    ) -> None:
        self._ca = ca
        self._pods = pods
        self._on_denied = on_denied
        self.stats = CaServerStats()

    def register(self, server: Any) -> None:
        """Add CreateCertificate to a ``grpc.aio`` server."""
        handler = grpc.unary_unary_rpc_method_handler(
            self.create_certificate,
            request_deserializer=ca_pb2.CertificateRequest.FromString,
            response_serializer=ca_pb2.CertificateResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(CA_SERVICE, {CA_METHOD: handler}),)
        )

    async def create_certificate(
        self, request: ca_pb2.CertificateRequest, context: Any
    ) -> ca_pb2.CertificateResponse:
        caller = peer_identity(context)
        try:
            csr_pem, requested = _parse(request)
        except _BadRequest as exc:
            self.stats.invalid += 1
            await self._refuse(context, caller, None, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        decision = authorize_certificate_request(
            caller, requested, self._pods(), trust_domain=self._ca.trust_domain
        )
        if not decision.allowed:
            self.stats.denied += 1
            await self._refuse(context, caller, requested, grpc.StatusCode.PERMISSION_DENIED, decision.reason)
        ttl = timedelta(seconds=request.validity_duration) if request.validity_duration else None
        try:
            issued = self._ca.sign_csr(csr_pem, requested, ttl=ttl)
        except CaError as exc:
            self.stats.invalid += 1
            await self._refuse(context, caller, requested, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.stats.issued += 1
        log.info("issued %s to %s until %s (%s)", requested, caller, issued.not_after, decision.reason)
        chain = [
            cert.public_bytes(Encoding.PEM).decode("ascii")
            for cert in x509.load_pem_x509_certificates(issued.chain_pem)
        ]
        return ca_pb2.CertificateResponse(cert_chain=chain)

    async def _refuse(
        self,
        context: Any,
        caller: Identity | NodeIdentity | None,
        requested: Identity | NodeIdentity | None,
        code: grpc.StatusCode,
        reason: str,
    ) -> NoReturn:
        denial = Denial(
            caller=str(caller) if caller is not None else "<no verified certificate>",
            requested=str(requested) if requested is not None else "<unknown>",
            code=code.name,
            reason=reason,
        )
        self.stats.recent_denials.append(denial)
        log.warning(
            "refused a certificate for %s to %s (%s): %s", denial.requested, denial.caller, code.name, reason
        )
        if self._on_denied is not None:
            self._on_denied(denial)
        await context.abort(code, reason)
        raise RuntimeError("context.abort returned")  # grpc.aio's abort always raises
