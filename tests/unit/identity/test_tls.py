"""mTLS contexts with real handshakes over local sockets: policy, validity, identities, ALPN."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ambit.identity.certs import WorkloadCert
from ambit.identity.tls import (
    PeerIdentityError,
    client_context,
    peer_identity,
    server_context,
    verify_server_identity,
)
from ambit.model.identity import Identity, NodeIdentity
from ambit.testing.pki import Pki

CLIENT = Identity("cluster.local", "default", "sleep")
SERVER = Identity("cluster.local", "default", "httpbin")
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki(intermediate=True)


@dataclass
class Side:
    """What one end of a connection observed."""

    peer: Identity | NodeIdentity | None = None
    alpn: str | None = None
    version: str | None = None
    received: bytes = b""
    error: BaseException | None = None
    events: list[str] = field(default_factory=list)


def _run_server(ctx: ssl.SSLContext, sock: socket.socket, out: Side) -> None:
    try:
        with ctx.wrap_socket(sock, server_side=True) as conn:
            out.events.append("handshake")
            out.alpn, out.version = conn.selected_alpn_protocol(), conn.version()
            out.peer = peer_identity(conn, require_alpn=None)
            out.received = conn.recv(4)
            conn.sendall(b"pong")
    except Exception as exc:
        out.error = exc


def _run_client(ctx: ssl.SSLContext, sock: socket.socket, out: Side) -> None:
    try:
        with ctx.wrap_socket(sock) as conn:
            out.events.append("handshake")
            out.alpn, out.version = conn.selected_alpn_protocol(), conn.version()
            out.peer = peer_identity(conn, require_alpn=None)
            conn.sendall(b"ping")
            out.received = conn.recv(4)
    except Exception as exc:
        out.error = exc


def connect(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Side, Side]:
    """One real TLS connection over a socketpair, each end in its own thread."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(TIMEOUT)
    client_sock.settimeout(TIMEOUT)
    server, client = Side(), Side()
    threads = [
        threading.Thread(target=_run_server, args=(server_ctx, server_sock, server)),
        threading.Thread(target=_run_client, args=(client_ctx, client_sock, client)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive()
    return server, client


def _verify_message(error: BaseException | None) -> str:
    assert isinstance(error, ssl.SSLCertVerificationError), repr(error)
    return str(error.verify_message)


def test_mutual_tls_with_identities_both_ways(pki: Pki) -> None:
    server, client = connect(
        server_context(pki.issue(SERVER), pki.bundle), client_context(pki.issue(CLIENT), pki.bundle)
    )
    assert server.error is None and client.error is None
    assert server.peer == CLIENT and client.peer == SERVER
    assert server.received == b"ping" and client.received == b"pong"
    assert server.version == client.version == "TLSv1.3"
    assert server.alpn == client.alpn == "h2"


def test_node_identity_as_client(pki: Pki) -> None:
    server, client = connect(
        server_context(pki.issue(SERVER), pki.bundle), client_context(pki.node("node-1"), pki.bundle)
    )
    assert server.peer == NodeIdentity("cluster.local", "node-1")
    assert client.error is None


def test_contexts_enforce_the_policy(pki: Pki) -> None:
    cert = pki.issue(SERVER)
    for ctx in (server_context(cert, pki.bundle), client_context(cert, pki.bundle)):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.verify_flags & ssl.VERIFY_X509_STRICT
        assert not ctx.check_hostname
        # Only the mesh roots are trusted, never the system store.
        assert ctx.get_ca_certs(binary_form=True) == [
            c.public_bytes(serialization.Encoding.DER) for c in pki.bundle.certificates()
        ]
    assert server_context(cert, pki.bundle).num_tickets == 0


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (timedelta(hours=-3), "certificate has expired"),
        (timedelta(hours=3), "certificate is not yet valid"),
    ],
)
def test_server_rejects_client_certificate_outside_its_validity(
    pki: Pki, shift: timedelta, message: str
) -> None:
    bad = pki.issue(CLIENT, ttl=timedelta(hours=1), not_before=datetime.now(UTC) + shift)
    server, client = connect(server_context(pki.issue(SERVER), pki.bundle), client_context(bad, pki.bundle))
    assert _verify_message(server.error) == message
    assert server.peer is None and server.received == b""
    # TLS 1.3: the client learns of the rejection after its Finished, on its first read at the latest.
    assert client.error is not None
    assert client.received == b""


@pytest.mark.parametrize(
    ("shift", "message"),
    [
        (timedelta(hours=-3), "certificate has expired"),
        (timedelta(hours=3), "certificate is not yet valid"),
    ],
)
def test_client_rejects_server_certificate_outside_its_validity(
    pki: Pki, shift: timedelta, message: str
) -> None:
    bad = pki.issue(SERVER, ttl=timedelta(hours=1), not_before=datetime.now(UTC) + shift)
    server, client = connect(server_context(bad, pki.bundle), client_context(pki.issue(CLIENT), pki.bundle))
    assert _verify_message(client.error) == message
    assert client.events == [] and client.peer is None
    assert isinstance(server.error, ssl.SSLError)
    assert server.received == b""


def test_certificate_from_a_foreign_ca_is_rejected(pki: Pki) -> None:
    stranger = Pki()
    server, client = connect(
        server_context(pki.issue(SERVER), pki.bundle), client_context(stranger.issue(CLIENT), pki.bundle)
    )
    # The chain carries the foreign root, which is self-signed and not in our bundle.
    assert _verify_message(server.error) == "self-signed certificate in certificate chain"
    assert client.received == b""


def test_client_without_certificate_is_rejected(pki: Pki) -> None:
    anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    anonymous.check_hostname = False
    anonymous.load_verify_locations(cadata=pki.bundle.roots_pem.decode())
    server, client = connect(server_context(pki.issue(SERVER), pki.bundle), anonymous)
    assert isinstance(server.error, ssl.SSLError)
    assert "certificate" in str(server.error).lower()
    assert client.received == b""


def test_tls12_client_is_refused(pki: Pki) -> None:
    old = client_context(pki.issue(CLIENT), pki.bundle)
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_2
    server, client = connect(server_context(pki.issue(SERVER), pki.bundle), old)
    assert isinstance(server.error, ssl.SSLError)
    assert isinstance(client.error, ssl.SSLError)
    assert server.events == [] and client.events == []


def test_rotated_bundle_accepts_both_roots(pki: Pki) -> None:
    new = Pki()
    bundle = pki.bundle.merge(new.bundle)
    server, client = connect(
        server_context(pki.issue(SERVER), bundle), client_context(new.issue(CLIENT), bundle)
    )
    assert server.peer == CLIENT and client.peer == SERVER


def _handshaken_pair(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[ssl.SSLSocket, ssl.SSLSocket, socket.socket]:
    """A completed handshake whose sockets stay open, for calling the identity checks directly."""
    a, b = socket.socketpair()
    a.settimeout(TIMEOUT)
    b.settimeout(TIMEOUT)
    box: dict[str, ssl.SSLSocket] = {}
    thread = threading.Thread(target=lambda: box.update(server=server_ctx.wrap_socket(a, server_side=True)))
    thread.start()
    client = client_ctx.wrap_socket(b)
    thread.join(TIMEOUT)
    return box["server"], client, a


def test_verify_server_identity(pki: Pki) -> None:
    server, client, _ = _handshaken_pair(
        server_context(pki.issue(SERVER), pki.bundle), client_context(pki.issue(CLIENT), pki.bundle)
    )
    with server, client:
        assert verify_server_identity(client, SERVER) == SERVER
        with pytest.raises(
            PeerIdentityError, match=re.escape(f"server presented {SERVER}, expected {CLIENT}")
        ):
            verify_server_identity(client, CLIENT)
        with pytest.raises(PeerIdentityError, match="server presented"):
            verify_server_identity(client, NodeIdentity("cluster.local", "httpbin"))


def test_peer_identity_checks_trust_domain_and_alpn(pki: Pki) -> None:
    server, client, _ = _handshaken_pair(
        server_context(pki.issue(SERVER), pki.bundle, alpn=("http/1.1",)),
        client_context(pki.issue(CLIENT), pki.bundle, alpn=("http/1.1",)),
    )
    with server, client:
        assert peer_identity(server, trust_domain="cluster.local", require_alpn="http/1.1") == CLIENT
        with pytest.raises(PeerIdentityError, match=re.escape("negotiated ALPN 'http/1.1', expected 'h2'")):
            peer_identity(server)
        with pytest.raises(PeerIdentityError, match=re.escape("is not in trust domain 'other.org'")):
            peer_identity(server, trust_domain="other.org", require_alpn=None)


def test_missing_alpn_fails_the_h2_requirement(pki: Pki) -> None:
    server, client, _ = _handshaken_pair(
        server_context(pki.issue(SERVER), pki.bundle, alpn=()),
        client_context(pki.issue(CLIENT), pki.bundle, alpn=()),
    )
    with server, client:
        with pytest.raises(PeerIdentityError, match="negotiated ALPN None"):
            verify_server_identity(client, SERVER)
        assert verify_server_identity(client, SERVER, require_alpn=None) == SERVER


def _forged(pki: Pki, sans: list[x509.GeneralName]) -> WorkloadCert:
    """A leaf signed by the test CA but with SANs our CA would never issue (to test peer checks)."""
    ca = pki.ca
    assert ca.intermediate_key is not None and ca.intermediate_cert is not None
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    signer_ski = ca.intermediate_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.intermediate_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(signer_ski), critical=False
        )
        .sign(ca.intermediate_key, hashes.SHA256())
    )
    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca.intermediate_cert, ca.root_cert)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return WorkloadCert(CLIENT, chain, key_pem, leaf.not_valid_before_utc, leaf.not_valid_after_utc)


@pytest.mark.parametrize(
    ("sans", "reason"),
    [
        (
            [x509.UniformResourceIdentifier(str(CLIENT)), x509.UniformResourceIdentifier(str(SERVER))],
            "has 2 URI subjectAltNames",
        ),
        ([x509.DNSName("sleep.default.svc")], "has 0 URI subjectAltNames"),
        ([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/default/sa/x/y")], "invalid SPIFFE ID"),
        ([x509.UniformResourceIdentifier("spiffe://cluster.local/ns/def\x00ault/sa/x")], "invalid SPIFFE ID"),
    ],
)
def test_peer_with_bad_sans_is_refused_after_a_valid_handshake(
    pki: Pki, sans: list[x509.GeneralName], reason: str
) -> None:
    server, _ = connect(
        server_context(pki.issue(SERVER), pki.bundle), client_context(_forged(pki, sans), pki.bundle)
    )
    assert server.events == ["handshake"]  # the chain itself is fine ...
    assert isinstance(server.error, PeerIdentityError)  # ... but the identity is not
    assert reason in str(server.error)


def test_key_material_is_loaded_from_memory_and_descriptors_are_closed(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = pki.issue(SERVER)
    names: list[str] = []
    real_memfd_create = os.memfd_create

    def spy(name: str, flags: int = os.MFD_CLOEXEC) -> int:
        names.append(name)
        return real_memfd_create(name, flags)

    monkeypatch.setattr(os, "memfd_create", spy)
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(10):
        server_context(cert, pki.bundle)
        client_context(cert, pki.bundle)
    after = set(os.listdir("/proc/self/fd"))
    assert names == ["ambit-chain", "ambit-key"] * 20
    assert after == before


def test_unloadable_key_names_the_identity(pki: Pki) -> None:
    good, other = pki.issue(SERVER), pki.issue(CLIENT)
    mismatched = WorkloadCert(SERVER, good.chain_pem, other.key_pem, good.not_before, good.not_after)
    with pytest.raises(ValueError, match=re.escape(f"cannot load the certificate of {SERVER}")):
        server_context(mismatched, pki.bundle)


async def test_asyncio_streams_with_mtls(pki: Pki) -> None:
    server_ctx = server_context(pki.issue(SERVER), pki.bundle)
    client_ctx = client_context(pki.issue(CLIENT), pki.bundle)
    seen: list[Identity | NodeIdentity] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(peer_identity(writer.get_extra_info("ssl_object"), trust_domain="cluster.local"))
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx)
        assert verify_server_identity(writer.get_extra_info("ssl_object"), SERVER) == SERVER
        writer.write(b"echo")
        assert await asyncio.wait_for(reader.readexactly(4), TIMEOUT) == b"echo"
        writer.close()
        await writer.wait_closed()
    assert seen == [CLIENT]


async def test_asyncio_client_with_expired_certificate_gets_no_data(pki: Pki) -> None:
    expired = pki.issue(CLIENT, ttl=timedelta(hours=1), not_before=datetime.now(UTC) - timedelta(hours=2))
    handled: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handled.append("called")
        writer.close()

    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=server_context(pki.issue(SERVER), pki.bundle)
    )
    async with server:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(expired, pki.bundle)
        )
        writer.write(b"ping")
        # asyncio reports the server's alert either as an SSL error or as a bare EOF.
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)) as info:
            await asyncio.wait_for(reader.readexactly(4), TIMEOUT)
        if isinstance(info.value, asyncio.IncompleteReadError):
            assert info.value.partial == b""
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    assert handled == []


def test_contexts_trust_only_the_given_bundle(pki: Pki) -> None:
    """A server holding another PKI's bundle refuses our client, though our client accepts it."""
    other = Pki()
    server, client = connect(
        server_context(pki.issue(SERVER), other.bundle), client_context(pki.issue(CLIENT), pki.bundle)
    )
    assert _verify_message(server.error) == "self-signed certificate in certificate chain"
    assert client.peer == SERVER
    assert client.received == b""
