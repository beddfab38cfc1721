"""The CA service: ``CreateCertificate``, after authentication and authorization.

Who asks is decided by the server's authenticators (``ambit.identity.authenticators``), never by a
field of the request: the SPIFFE identity of the client certificate verified in the mTLS handshake
(a ztunnel's node identity), or a pod-bound token in ``authorization: Bearer`` metadata when a
``PodTokenAuthenticator`` is configured. The identity to issue is the CSR's single URI SAN. The rule
that decides follows the caller's kind (DESIGN §2): a node ``spiffe://<td>/node/<N>`` may obtain a
workload identity only while a non-terminated pod with that namespace and service account is
scheduled on ``N`` (``ambit.identity.node_auth``); a pod token only its own service account, and only
while its pod exists with the token's uid (``ambit.identity.pod_auth``). ``pods`` is the replica's
current view of pod placement. The response chain is leaf first, root last. Every replica can sign:
they share the CA keys.

A bad credential is ``UNAUTHENTICATED``, a refusal ``PERMISSION_DENIED``, a malformed request
``INVALID_ARGUMENT``, each carrying the reason; all are logged and counted (and passed to
``on_denied``).

How long a workload certificate lives is the :class:`WorkloadCertPolicy` (``ambit up
--workload-cert-ttl / --outage-tolerance``, passed to every replica): by default what the caller asks
for (a ztunnel asks for 24 h; the CA's default is 24 h, its maximum 90 d). Short certificates are
backdated by a tenth of their lifetime instead of the CA's one minute, so that half-life still falls
half a lifetime after issue (a 60 s certificate is refreshed ~27 s after it was signed, not at once).

**Fault injection (chaos tests only).** :attr:`CertificateServer.refusing` makes the replica refuse
every request with ``UNAVAILABLE`` (:data:`CA_REFUSING`), as a CA that is down while xDS still serves;
it is counted as a denial. Only ``/debug/fault/ca`` sets it, and that route exists only in a replica
started with ``--test-fault-endpoints`` (``ambit.control.http``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ambit.control.xds_server import peer_identity
from ambit.identity.authenticators import (
    AuthenticationError,
    Authenticator,
    Caller,
    Credentials,
    NodeCertificateAuthenticator,
    authenticate,
    authorize,
)
from ambit.identity.ca import CLOCK_SKEW, DEFAULT_MAX_TTL, CaError, CertificateAuthority
from ambit.model.identity import Identity, IdentityError, NodeIdentity, parse_spiffe_id
from ambit.model.placement import PodPlacement
from ambit.xds.pb.ca.v1 import ca_pb2

log = logging.getLogger(__name__)

CA_SERVICE = "ambit.ca.v1.CertificateService"
CA_METHOD = "CreateCertificate"
MAX_CSR_BYTES = 16 * 1024
_HISTORY = 100
CA_REFUSING = "CA refusing: fault injected by /debug/fault/ca"
MIN_WORKLOAD_TTL = timedelta(seconds=10)  # a ztunnel refreshes at half-life: at most every ~5 s
_SHORT_BACKDATE_DIVISOR = 10  # certificates shorter than 10 x CLOCK_SKEW are backdated by 1/10 of their TTL


def _seconds(value: timedelta) -> str:
    return f"{value.total_seconds():g}s"


def backdate(lifetime: timedelta) -> timedelta:
    """How far before "now" a certificate of ``lifetime`` starts: the CA's clock-skew allowance, or a
    tenth of the lifetime when that is shorter (otherwise its half-life would already be past)."""
    return min(CLOCK_SKEW, lifetime / _SHORT_BACKDATE_DIVISOR)


@dataclass(frozen=True, slots=True)
class WorkloadCertPolicy:
    """How long the CA signs workload certificates for (node identities are not affected).

    ``ttl``: every workload certificate lives at most this long, and this long when the caller names
    no lifetime (``--workload-cert-ttl``); None: as the caller asks (the CA's default and maximum).
    ``minimum``: no workload certificate lives less (twice ``--outage-tolerance``): refreshed at
    half-life, a certificate then outlives a CA outage of the tolerance.
    """

    ttl: timedelta | None = None
    minimum: timedelta = timedelta(0)

    @classmethod
    def resolve(
        cls, ttl: timedelta | None = None, outage_tolerance: timedelta | None = None
    ) -> WorkloadCertPolicy:
        """The policy of ``--workload-cert-ttl`` and ``--outage-tolerance``; ValueError, saying which
        flag to change, when they contradict each other or leave the CA's bounds.

        A TTL shorter than twice the tolerance is refused rather than silently raised: the operator
        asked for both, and only one can hold (SPIRE refuses such an ``availability_target`` too)."""
        if ttl is not None:
            if ttl < MIN_WORKLOAD_TTL:
                raise ValueError(
                    f"--workload-cert-ttl {_seconds(ttl)} is too short: at least "
                    f"{_seconds(MIN_WORKLOAD_TTL)} (certificates are refreshed at half-life)"
                )
            if ttl > DEFAULT_MAX_TTL:
                raise ValueError(
                    f"--workload-cert-ttl {_seconds(ttl)} exceeds the CA's maximum of "
                    f"{DEFAULT_MAX_TTL.days} days"
                )
        minimum = timedelta(0)
        if outage_tolerance is not None:
            if outage_tolerance <= timedelta(0):
                raise ValueError(f"--outage-tolerance {_seconds(outage_tolerance)} must be positive")
            minimum = 2 * outage_tolerance
            if minimum > DEFAULT_MAX_TTL:
                raise ValueError(
                    f"--outage-tolerance {_seconds(outage_tolerance)} needs certificates of "
                    f"{_seconds(minimum)}, more than the CA's maximum of {DEFAULT_MAX_TTL.days} days"
                )
            if ttl is not None and ttl < minimum:
                raise ValueError(
                    f"--workload-cert-ttl {_seconds(ttl)} is shorter than twice --outage-tolerance "
                    f"{_seconds(outage_tolerance)}: a certificate refreshed at half-life could expire "
                    f"during such an outage. Give --workload-cert-ttl {_seconds(minimum)} or more, "
                    "or a shorter --outage-tolerance"
                )
        return cls(ttl=ttl, minimum=minimum)

    def lifetime(self, requested: timedelta | None, default: timedelta) -> timedelta:
        """The lifetime of a workload certificate whose caller asked for ``requested`` (None: nothing);
        ``default`` is the CA's own default."""
        lifetime = requested if requested is not None else (self.ttl if self.ttl is not None else default)
        if self.ttl is not None:
            lifetime = min(lifetime, self.ttl)
        return max(lifetime, self.minimum)


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
    denied: int = 0  # including the requests refused while the fault switch is on
    invalid: int = 0
    fault_refused: int = 0  # requests refused by the fault switch (/debug/fault/ca)
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


def _authorization(context: Any) -> str | None:
    """The request's ``authorization`` metadata (gRPC keys are lower case), or None."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value if isinstance(value, str) else None
    return None


class CertificateServer:
    """The CertificateService servicer; see the module docstring."""

    def __init__(
        self,
        ca: CertificateAuthority,
        pods: Callable[[], Iterable[PodPlacement]],
        *,
        on_denied: Callable[[Denial], None] | None = None,
        authenticators: Sequence[Authenticator] = (NodeCertificateAuthenticator(),),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        policy: WorkloadCertPolicy | None = None,
    ) -> None:
        self._ca = ca
        self._pods = pods
        self._on_denied = on_denied
        self._authenticators = tuple(authenticators)
        self._clock = clock
        self.stats = CaServerStats()
        self.policy = policy if policy is not None else WorkloadCertPolicy()
        self.refusing = False  # the fault switch: see the module docstring

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
        credentials = Credentials(peer=peer_identity(context), authorization=_authorization(context))
        if self.refusing:
            self.stats.denied += 1
            self.stats.fault_refused += 1
            await self._refuse(context, credentials.peer, None, grpc.StatusCode.UNAVAILABLE, CA_REFUSING)
        try:
            caller = authenticate(self._authenticators, credentials, now=self._clock())
        except AuthenticationError as exc:
            self.stats.denied += 1
            await self._refuse(context, credentials.peer, None, grpc.StatusCode.UNAUTHENTICATED, str(exc))
        try:
            csr_pem, requested = _parse(request)
        except _BadRequest as exc:
            self.stats.invalid += 1
            await self._refuse(context, caller, None, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        decision = authorize(caller, requested, self._pods(), trust_domain=self._ca.trust_domain)
        if not decision.allowed:
            self.stats.denied += 1
            await self._refuse(context, caller, requested, grpc.StatusCode.PERMISSION_DENIED, decision.reason)
        ttl = timedelta(seconds=request.validity_duration) if request.validity_duration else None
        not_before: datetime | None = None
        if isinstance(requested, Identity):
            ttl = self.policy.lifetime(ttl, self._ca.default_ttl)
            early = backdate(ttl)
            if early < CLOCK_SKEW:  # short-lived: start it closer to now than the CA would
                not_before, ttl = self._clock() - early, ttl + early
        try:
            issued = self._ca.sign_csr(csr_pem, requested, ttl=ttl, not_before=not_before)
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
        caller: Caller | None,
        requested: Identity | NodeIdentity | None,
        code: grpc.StatusCode,
        reason: str,
    ) -> NoReturn:
        denial = Denial(
            caller=str(caller) if caller is not None else "<no verified credential>",
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
