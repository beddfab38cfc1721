"""gRPC channels to the control plane whose TLS is done by Python's ``ssl``, so the server's exact
SPIFFE identity is verified.

Why not ``grpc.ssl_channel_credentials``: gRPC's client checks the server certificate against the
target *host name* (DNS and IP SANs, or the CN when there is no DNS SAN) and never looks at URI SANs;
``grpc.ssl_target_name_override`` cannot name a URI either, and gRPC Python exposes no custom
verifier. An X.509-SVID has exactly one URI SAN and no DNS SAN, so a stock gRPC Python client cannot
even connect to an SVID-holding server, let alone check which SPIFFE ID it holds (checked with
grpcio 1.85.1: "Hostname Verification Check failed"; see also wool-labs/wool#251).

So each channel gets a private bridge: gRPC speaks plaintext HTTP/2 to a Unix socket in a fresh
0700 directory; every connection accepted there (only from this very process, checked with
``SO_PEERCRED``) is carried over a TLS 1.3 connection that *we* open with
:func:`ambit.identity.tls.client_context` (our certificate — none for a token caller on the token
port —, the mesh trust bundle only, ALPN h2) and
is used only after :func:`ambit.identity.tls.verify_server_identity` confirmed the server presented
exactly the expected identity (normally ``spiffe://<td>/ns/ambit-system/sa/controlplane``). A server
with any other identity, even one from our own CA, gets no bytes: the local connection is closed and
gRPC sees the channel as unavailable. The price is one extra in-process copy of the (small) config
and certificate traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import ssl
import struct
import tempfile
from collections.abc import Sequence
from typing import Any

import grpc

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.tls import PeerIdentityError, client_context, verify_server_identity
from ambit.model.identity import Identity, NodeIdentity
from ambit.resources.names import CONTROL_PLANE_NAMESPACE, CONTROL_PLANE_SERVICE

log = logging.getLogger(__name__)

CONTROL_PLANE_PORT = 15012
# The control plane's second port: server-only TLS for callers with no certificate yet, who show a
# pod-bound token to the CA (see ambit.control.grpc_server).
TOKEN_PORT = 15013
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_KEEPALIVE = 30.0
_CHUNK = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_CLOSE_GRACE = 0.1

Address = tuple[str, int]


def _peer_pid(conn: socket.socket) -> int | None:
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, _uid, _gid = struct.unpack("3i", raw)
    return int(pid)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        dst.close()


async def _finish_tls(writer: asyncio.StreamWriter) -> None:
    """Wait a moment for a closed TLS connection to finish (close_notify), then abort it: gRPC's TLS
    does not always answer close_notify, and every byte that matters was sent already."""
    waiter = asyncio.ensure_future(writer.wait_closed())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=_CLOSE_GRACE)
        if not done:
            writer.transport.abort()
            done, _ = await asyncio.wait({waiter}, timeout=_CLOSE_GRACE)
    except asyncio.CancelledError:
        writer.transport.abort()
        raise
    finally:
        if waiter.done():
            waiter.exception()  # retrieved; an error while closing changes nothing
        else:
            waiter.cancel()


class VerifiedChannel:
    """A ``grpc.aio`` channel to one control-plane address over identity-checked TLS (module docstring).

    Create with :meth:`open`; always :meth:`close`. ``peer`` is the identity verified on the latest
    connection, ``last_error`` why the latest connection attempt failed (if it did).
    """

    def __init__(
        self,
        address: Address,
        *,
        cert: WorkloadCert | None,
        bundle: TrustBundle,
        expected: Identity | NodeIdentity,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.expected = expected
        self.peer: Identity | NodeIdentity | None = None
        self.last_error: str | None = None
        self.connections = 0
        self._cert = cert
        self._bundle = bundle
        self._connect_timeout = connect_timeout
        self._options = list(options)
        self._context: ssl.SSLContext | None = None
        self._dir: str | None = None
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[socket.socket] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._channel: grpc.aio.Channel | None = None
        self._closing = False

    @classmethod
    async def open(
        cls,
        address: Address,
        *,
        cert: WorkloadCert | None,
        bundle: TrustBundle,
        expected: Identity | NodeIdentity,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        keepalive: float = DEFAULT_KEEPALIVE,
        options: Sequence[tuple[str, Any]] = (),
    ) -> VerifiedChannel:
        """Start the bridge and the gRPC channel (no connection is made until the first call)."""
        grpc_options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", int(min(keepalive, 10.0) * 1000)),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.enable_retries", 0),
            ("grpc.default_authority", f"{CONTROL_PLANE_SERVICE}.{CONTROL_PLANE_NAMESPACE}.svc"),
            # gRPC's default 4 MiB cap made a mesh of ~18,000 resources unable to ever sync: the first
            # (full) response is larger. The state is ours and bounded by the cluster, not by a peer.
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            *options,
        ]
        self = cls(
            address,
            cert=cert,
            bundle=bundle,
            expected=expected,
            connect_timeout=connect_timeout,
            options=grpc_options,
        )
        await self._start()
        return self

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._channel is None:
            raise RuntimeError("channel is not open")
        return self._channel

    async def _start(self) -> None:
        self._context = client_context(self._cert, self._bundle)
        self._dir = tempfile.mkdtemp(prefix="ambit-grpc-")  # mode 0700
        path = os.path.join(self._dir, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(path)
            listener.listen(16)
            listener.setblocking(False)
        except BaseException:
            listener.close()
            shutil.rmtree(self._dir, ignore_errors=True)
            raise
        self._listener = listener
        self._loop = asyncio.get_running_loop()
        # accept in a reader callback, not a task: an accepted socket is owned the moment it exists
        # (a task cancelled just after sock_accept completed would lose the socket)
        self._loop.add_reader(listener.fileno(), self._accept)
        self._channel = grpc.aio.insecure_channel(f"unix:{path}", options=self._options)

    async def close(self) -> None:
        """Close the gRPC channel, every bridged connection and the bridge."""
        self._closing = True
        if self._channel is not None:
            await self._channel.close()
        if self._listener is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            _done, pending = await asyncio.wait(handlers, timeout=3 * _CLOSE_GRACE)
            if pending:  # a cancellation got lost somewhere: cut the connections under them
                for writer in list(self._writers):
                    writer.transport.abort()
            await asyncio.gather(*handlers, return_exceptions=True)
        for conn in list(self._conns):  # accepted, but its handler never got to run
            conn.close()
        self._conns.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _accept(self) -> None:
        listener, loop = self._listener, self._loop
        if listener is None or loop is None:
            return
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("gRPC bridge for %s:%d cannot accept: %s", *self.address, exc)
                return
            conn.setblocking(False)
            self._conns.add(conn)  # closed by the handler, or by close() if the handler never runs
            task = loop.create_task(self._serve(conn), name=f"grpc-bridge-conn {self.address}")
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)

    async def _serve(self, conn: socket.socket) -> None:
        local_writer: asyncio.StreamWriter | None = None
        remote_writer: asyncio.StreamWriter | None = None
        try:
            if self._closing:
                return
            pid = _peer_pid(conn)
            if pid != os.getpid():
                log.error("refusing a bridge connection from pid %s (only this process may connect)", pid)
                return
            local_reader, local_writer = await asyncio.open_unix_connection(sock=conn)
            self._writers.add(local_writer)
            host, port = self.address
            try:
                # asyncio.timeout, not wait_for: in 3.11 wait_for can swallow a cancellation that
                # arrives as the connection completes, and close() relies on cancelling us
                async with asyncio.timeout(self._connect_timeout):
                    remote_reader, remote = await asyncio.open_connection(
                        host, port, ssl=self._context, ssl_handshake_timeout=self._connect_timeout
                    )
            except (OSError, TimeoutError) as exc:
                self.last_error = f"cannot connect to {host}:{port}: {exc or type(exc).__name__}"
                log.info("%s", self.last_error)
                return
            remote_writer = remote
            self._writers.add(remote)
            try:
                self.peer = verify_server_identity(
                    remote.get_extra_info("ssl_object"), self.expected, require_alpn="h2"
                )
            except PeerIdentityError as exc:
                self.last_error = f"{host}:{port} is not the control plane: {exc}"
                log.warning("%s; closing the connection", self.last_error)
                return
            self.last_error = None
            self.connections += 1
            # HTTP/2 has no use for half-close: when either direction ends, the connection is over
            pumps = [
                asyncio.ensure_future(_pump(local_reader, remote)),
                asyncio.ensure_future(_pump(remote_reader, local_writer)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            # close everything at once (no await in between, so a cancellation cannot leave one open)
            if local_writer is not None:
                local_writer.close()
                self._writers.discard(local_writer)
            else:
                conn.close()
            self._conns.discard(conn)
            if remote_writer is not None:
                remote_writer.close()
                self._writers.discard(remote_writer)
                with contextlib.suppress(asyncio.CancelledError):
                    await _finish_tls(remote_writer)
