"""The CA service end to end: a real grpc.aio server, real CaClients over loopback mTLS.

Acceptance: signs for a pod on the caller's node; refuses a pod on another node, a deleted pod's
identity, a caller holding a workload certificate instead of a node certificate, and a caller without
a certificate (whose handshake fails before any handler runs).
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ambit.control.ca_server import CertificateServer, Denial
from ambit.control.grpc_server import ControlPlaneServer
from ambit.identity.authenticators import Authenticator, NodeCertificateAuthenticator, PodTokenAuthenticator
from ambit.identity.certs import generate_key_and_csr
from ambit.identity.secrets import SecretManager
from ambit.identity.tls import client_context
from ambit.identity.tokens import TokenSigner, TokenVerifier
from ambit.model.identity import Identity, NodeIdentity
from ambit.model.placement import PodPlacement
from ambit.resources.names import control_plane_identity
from ambit.testing.pki import Pki
from ambit.xds.ca_client import CA_PATH, CaClient, CertificateDenied, CertificateFetchError
from ambit.xds.channel import VerifiedChannel
from ambit.xds.pb.ca.v1 import ca_pb2

TD = "cluster.local"
WEB = Identity(TD, "default", "web")
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki(intermediate=True)


def placement(name: str, node: str, sa: str = "web", phase: str = "Running") -> PodPlacement:
    return PodPlacement(
        namespace="default", name=name, uid=f"uid-{name}", service_account=sa, node=node, phase=phase
    )


class Env:
    def __init__(self, pki: Pki) -> None:
        self.pki = pki
        self.pods: list[PodPlacement] = [placement("web-1", "n1")]
        self.denials: list[Denial] = []
        self.servers: list[ControlPlaneServer] = []
        self.clients: list[CaClient] = []
        self.channels: list[VerifiedChannel] = []

    async def server(
        self, authenticators: Sequence[Authenticator] = (NodeCertificateAuthenticator(),)
    ) -> tuple[ControlPlaneServer, CertificateServer]:
        service = CertificateServer(
            self.pki.ca, lambda: list(self.pods), on_denied=self.denials.append, authenticators=authenticators
        )
        server = ControlPlaneServer(
            cert=self.pki.workload("ambit-system", "controlplane"),
            bundle=self.pki.bundle,
            ca=service,
            host="127.0.0.1",
            port=0,
        )
        await server.start()
        self.servers.append(server)
        return server, service

    def client(
        self, *addresses: tuple[str, int], node: str = "n1", cert_identity: str | None = None
    ) -> CaClient:
        cert = self.pki.issue(cert_identity) if cert_identity else self.pki.node(node)
        client = CaClient(
            addresses=lambda: list(addresses), cert=cert, bundle=self.pki.bundle, ttl=timedelta(hours=2)
        )
        self.clients.append(client)
        return client

    async def raw_call(self, server: ControlPlaneServer, *, node: str) -> Any:
        """A bare CreateCertificate call over a channel holding ``node``'s certificate (no CaClient)."""
        channel = await VerifiedChannel.open(
            server.address,
            cert=self.pki.node(node),
            bundle=self.pki.bundle,
            expected=control_plane_identity(TD),
        )
        self.channels.append(channel)
        return channel.channel.unary_unary(
            CA_PATH,
            request_serializer=ca_pb2.CertificateRequest.SerializeToString,
            response_deserializer=ca_pb2.CertificateResponse.FromString,
        )

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for channel in self.channels:
            await channel.close()
        for server in self.servers:
            await server.stop(None)


@pytest.fixture
async def env(pki: Pki) -> AsyncIterator[Env]:
    e = Env(pki)
    try:
        yield e
    finally:
        await e.close()


async def test_signs_for_a_pod_on_the_callers_node(env: Env) -> None:
    server, service = await env.server()
    client = env.client(server.address)
    cert = await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    assert cert.identity == WEB
    chain = x509.load_pem_x509_certificates(cert.chain_pem)
    assert len(chain) == 3  # leaf, intermediate, root
    assert chain[-1] == env.pki.ca.root_cert
    assert timedelta(hours=1, minutes=55) < cert.lifetime <= timedelta(hours=2, minutes=1)
    assert cert.valid_at(datetime.now(UTC))
    assert service.stats.issued == 1 and service.stats.denied == 0
    # the same client serves a SecretManager directly
    manager = SecretManager(client.fetch)
    try:
        assert (await asyncio.wait_for(manager.get(WEB), TIMEOUT)).identity == WEB
    finally:
        await manager.close()
    assert service.stats.issued == 2


async def test_refuses_a_pod_on_another_node(env: Env) -> None:
    env.pods = [placement("web-1", "n2")]
    server, service = await env.server()
    client = env.client(server.address, node="n1")
    with pytest.raises(CertificateDenied) as info:
        await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    assert "PERMISSION_DENIED" in info.value.reason
    assert "no pod with service account default/web is scheduled on node n1" in info.value.reason
    assert service.stats.denied == 1 and service.stats.issued == 0
    (denial,) = env.denials
    assert denial.caller == "spiffe://cluster.local/node/n1"
    assert denial.requested == str(WEB)
    assert denial.code == "PERMISSION_DENIED"


async def test_refuses_a_deleted_pods_identity(env: Env) -> None:
    server, service = await env.server()
    client = env.client(server.address)
    await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    env.pods = []  # the pod was deleted
    with pytest.raises(CertificateDenied, match="no pod with service account default/web"):
        await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    env.pods = [placement("web-1", "n1", phase="Succeeded")]  # finished pods hold no claim either
    with pytest.raises(CertificateDenied, match="only terminated ones"):
        await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    assert service.stats.issued == 1 and service.stats.denied == 2


async def test_refuses_a_caller_with_a_workload_certificate(env: Env) -> None:
    server, service = await env.server()
    client = env.client(server.address, cert_identity="spiffe://cluster.local/ns/default/sa/web")
    with pytest.raises(CertificateDenied, match="is a workload identity; only node identities"):
        await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    assert service.stats.denied == 1 and service.stats.issued == 0


async def test_caller_without_a_certificate_cannot_even_connect(env: Env) -> None:
    server, service = await env.server()
    host, port = server.address
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(cadata=env.pki.bundle.roots_pem.decode("ascii"))
    context.set_alpn_protocols(["h2"])
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    try:
        # TLS 1.3: the server checks the (missing) client certificate after the client's Finished
        # and answers with an alert instead of HTTP/2
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        with pytest.raises((ssl.SSLError, ConnectionError)) as info:
            while await asyncio.wait_for(reader.read(65536), TIMEOUT):
                pass
            raise ConnectionError("closed without an alert")
        assert "CERTIFICATE_REQUIRED" in str(info.value).upper() or isinstance(info.value, ConnectionError)
    finally:
        writer.transport.abort()
    assert service.stats.issued == 0 and service.stats.denied == 0 and service.stats.invalid == 0


async def test_csr_for_a_node_identity_is_refused(env: Env) -> None:
    server, service = await env.server()
    call = await env.raw_call(server, node="n1")
    _key, csr = generate_key_and_csr(NodeIdentity(TD, "n1"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(ca_pb2.CertificateRequest(csr=csr.decode()), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "never issues node identities" in (info.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(ca_pb2.CertificateRequest(csr="not a csr"), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert service.stats.denied == 1 and service.stats.invalid == 1


async def test_any_replica_signs(env: Env) -> None:
    a, _ = await env.server()
    b, service_b = await env.server()
    client = env.client(a.address, b.address)
    await a.stop(None)
    for _ in range(3):
        assert (await asyncio.wait_for(client.fetch(WEB), TIMEOUT)).identity == WEB
    assert service_b.stats.issued == 3


async def test_client_rejects_a_certificate_for_another_identity(env: Env) -> None:
    """A (misbehaving) CA that signs the CSR's key for a different identity is not believed."""

    async def wrong_identity(
        request: ca_pb2.CertificateRequest, context: object
    ) -> ca_pb2.CertificateResponse:
        issued = env.pki.ca.sign_csr(request.csr.encode(), Identity(TD, "default", "admin"))
        return ca_pb2.CertificateResponse(cert_chain=[c.decode() + "\n" for c in _split(issued.chain_pem)])

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "ambit.ca.v1.CertificateService",
                {
                    "CreateCertificate": grpc.unary_unary_rpc_method_handler(
                        wrong_identity,
                        request_deserializer=ca_pb2.CertificateRequest.FromString,
                        response_serializer=ca_pb2.CertificateResponse.SerializeToString,
                    )
                },
            ),
        )
    )
    cp = env.pki.workload("ambit-system", "controlplane")
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(cp.key_pem, cp.chain_pem)], root_certificates=env.pki.bundle.roots_pem, require_client_auth=True
        ),
    )
    await server.start()
    try:
        client = env.client(("127.0.0.1", port))
        with pytest.raises(
            CertificateFetchError,
            match=re.escape("certificate for spiffe://cluster.local/ns/default/sa/admin"),
        ):
            await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    finally:
        await server.stop(None)


async def test_client_refuses_a_ca_that_is_not_the_control_plane(env: Env, pki: Pki) -> None:
    service = CertificateServer(pki.ca, lambda: list(env.pods))
    impostor = ControlPlaneServer(
        cert=pki.workload("default", "evil"), bundle=pki.bundle, ca=service, host="127.0.0.1", port=0
    )
    await impostor.start()
    env.servers.append(impostor)
    client = env.client(impostor.address)
    with pytest.raises(CertificateFetchError, match="is not the control plane"):
        await asyncio.wait_for(client.fetch(WEB), TIMEOUT)
    assert service.stats.issued == 0


def _split(chain_pem: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part.strip() + b"\n" + marker for part in chain_pem.split(marker) if part.strip()]


async def test_server_credential_can_be_rotated(env: Env) -> None:
    server, _service = await env.server()
    host, port = server.address
    node = env.pki.node("n1")

    async def presented_serial() -> int:
        _reader, writer = await asyncio.open_connection(host, port, ssl=client_context(node, env.pki.bundle))
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            return x509.load_der_x509_certificate(der).serial_number
        finally:
            writer.transport.abort()

    first = await presented_serial()
    renewed = env.pki.workload("ambit-system", "controlplane")
    server.update_credentials(renewed, env.pki.bundle)
    assert await presented_serial() == renewed.leaf().serial_number != first
    # and clients keep working across the rotation
    assert (await asyncio.wait_for(env.client(server.address).fetch(WEB), TIMEOUT)).identity == WEB


# -- pod-bound tokens (a waypoint's way to its first certificate) -------------------------------------

TOKEN_KEY = ec.generate_private_key(ec.SECP256R1())
WAYPOINT = Identity(TD, "default", "waypoint")


def pod_token(
    name: str = "waypoint-1", uid: str = "uid-waypoint-1", key: ec.EllipticCurvePrivateKey = TOKEN_KEY
) -> str:
    return TokenSigner(key).issue(
        namespace="default", service_account="waypoint", pod_name=name, pod_uid=uid, now=datetime.now(UTC)
    )


async def test_a_pod_token_gets_its_pods_identity_only_while_that_pod_lives(env: Env) -> None:
    env.pods = [placement("waypoint-1", "n2", sa="waypoint")]
    token_auth = PodTokenAuthenticator(TokenVerifier([TOKEN_KEY.public_key()]))
    server, service = await env.server((NodeCertificateAuthenticator(), token_auth))
    # The channel's certificate is node n1's, where no waypoint pod runs: only the token can explain
    # an issued certificate.
    call = await env.raw_call(server, node="n1")
    _key, csr = generate_key_and_csr(WAYPOINT)
    request = ca_pb2.CertificateRequest(csr=csr.decode())

    async def ask(token: str | None) -> ca_pb2.CertificateResponse:
        metadata = None if token is None else (("authorization", f"Bearer {token}"),)
        response: ca_pb2.CertificateResponse = await call(request, timeout=TIMEOUT, metadata=metadata)
        return response

    async def refused(token: str | None) -> tuple[grpc.StatusCode, str]:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await ask(token)
        return info.value.code(), info.value.details() or ""

    issued = await ask(pod_token())
    leaf = x509.load_pem_x509_certificate(issued.cert_chain[0].encode())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [str(WAYPOINT)]

    code, details = await refused(None)  # control: the node certificate alone may not
    assert code == grpc.StatusCode.PERMISSION_DENIED and "scheduled on node n1" in details

    env.pods = [PodPlacement("default", "waypoint-1", "uid-new", "waypoint", "n2", "Running")]  # replaced
    code, details = await refused(pod_token())
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "now has uid uid-new; the token was issued for uid uid-waypoint-1" in details

    env.pods = []  # gone
    code, details = await refused(pod_token())
    assert code == grpc.StatusCode.PERMISSION_DENIED and "no longer exists" in details

    code, details = await refused(pod_token(key=ec.generate_private_key(ec.SECP256R1())))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "not a known token key" in details
    assert service.stats.issued == 1 and service.stats.denied == 4


async def test_a_caller_without_a_certificate_gets_one_on_the_token_port(env: Env) -> None:
    """The token port (server-only TLS): a certificate-less CaClient with the pod's token is issued its
    identity; the same client on the mTLS port cannot connect (control), and a token for a gone pod is
    refused on the token port too."""
    env.pods = [placement("waypoint-1", "n2", sa="waypoint")]
    token_auth = PodTokenAuthenticator(TokenVerifier([TOKEN_KEY.public_key()]))
    service = CertificateServer(
        env.pki.ca, lambda: list(env.pods), on_denied=env.denials.append, authenticators=(token_auth,)
    )
    server = ControlPlaneServer(
        cert=env.pki.workload("ambit-system", "controlplane"),
        bundle=env.pki.bundle,
        ca=service,
        host="127.0.0.1",
        port=0,
        token_port=0,
    )
    await server.start()
    env.servers.append(server)
    assert server.token_port is not None and server.token_port != server.port

    def token_client(port: int) -> CaClient:
        client = CaClient(
            addresses=lambda: [("127.0.0.1", port)],
            cert=None,
            bundle=env.pki.bundle,
            server_identity=control_plane_identity(TD),
            token=pod_token,
        )
        env.clients.append(client)
        return client

    cert = await asyncio.wait_for(token_client(server.token_port).fetch(WAYPOINT), TIMEOUT)
    assert cert.identity == WAYPOINT

    with pytest.raises(CertificateFetchError):  # control: the mTLS port wants a client certificate
        await asyncio.wait_for(token_client(server.port).fetch(WAYPOINT), TIMEOUT)

    env.pods = []
    with pytest.raises(CertificateDenied, match="no longer exists"):
        await asyncio.wait_for(token_client(server.token_port).fetch(WAYPOINT), TIMEOUT)
