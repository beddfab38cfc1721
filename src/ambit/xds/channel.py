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

Liveness. A control-plane replica can vanish without a FIN or RST (its node cut off the fabric:
packets silently dropped), and the stream must then be found dead well inside the node-liveness grace
(8 s), so the proxy moves to another replica before the cut node's endpoints are withdrawn. TCP alone
would take minutes, so gRPC's HTTP/2 keepalive does it (``doc/keepalive.md`` in grpc/grpc):

* ``grpc.keepalive_time_ms`` = ``keepalive`` (:data:`DEFAULT_KEEPALIVE`, 2 s): gRPC sends a PING once
  nothing has been read for 2 s (every read restarts that timer);
* the PING must be answered within ``min(keepalive, 10 s)`` (2 s), else gRPC closes the transport and
  the call fails with ``UNAVAILABLE: ... (ping timeout)``. That wait is set twice: as
  ``grpc.keepalive_timeout_ms``, and as ``grpc.http2.ping_timeout_ms``, which is what bounds it in
  grpcio 1.85: chttp2 never arms the keepalive watchdog, and a keepalive PING gets the generic ping
  timeout, 1 min by default (``GRPC_TRACE=http_keepalive,http2_ping`` shows "Set ping timeout timer of
  60000ms" and no "Set keepalive ping timeout timer"). So the former 30 s + "10 s" was really 30 s +
  60 s;
* so a blackholed stream is given up at most 2 + 2 = 4 s after the last byte it delivered: measured
  2.2-4.2 s after the blackhole (teardown of the dead channel included), the other replica's config
  applied 20 ms later, while a client with the old 30 s was still on the dead stream at 6 s
  (``tests/integration/xds/test_xds_failover.py``);
* ``grpc.http2.max_pings_without_data`` = 0: a quiet xDS stream (no push for hours) keeps pinging
  (gRPC's default stops after 2 PINGs without data). gRPC never lets a client PING more often than
  once a second, whatever ``keepalive`` says;
* no ``grpc.keepalive_permit_without_calls``: an xDS channel carries its one stream for its whole
  life, and a CA channel (``ambit.xds.ca_client``) that is idle between certificate requests has no
  reason to ping;
* the server must accept that rate: ``ambit.control.grpc_server`` takes a PING every 1 s and never
  acts on strikes, so no ``GOAWAY too_many_pings``;
* the PING and its ACK cross the bridge, so a stall of the proxy's event loop longer than ~2 s looks
  like a dead server. The one such stall we know of is the first sync of a big mesh (decoding and
  applying the first response): 18,000 workloads block the loop ~0.75 s and 30,000 ~1.5 s, which pass;
  60,000 block it ~2.5 s, so the stream is given up just *after* that response was applied (its ACK
  cannot be written), and the next stream, sent only what changed, syncs at once: measured 3.0 s to
  synced instead of 2.8 s. Nothing is lost, and a ping timeout cannot interrupt an apply.

Cost: 0.5 PING/s per proxy, each a 17-byte HTTP/2 frame in its own TLS record (~40 bytes, the same
back for the ACK), under 100 B/s each way per proxy with TCP/IP headers; the server answers in gRPC's
C core without reaching Python: 500 PINGs/s for 1,000 proxies.

:data:`DEFAULT_CONNECT_TIMEOUT` (2 s, was 5 s) bounds one connection attempt, TCP connect and TLS
handshake together: a SYN to a cut node is never answered, and 2 s still rides out one lost SYN (the
kernel resends it after 1 s). A proxy that picks the dead replica (starting, or moving between
replicas) loses 2 s there, then tries another (``ambit.xds.client``); measured: a client starting at
the blackhole synced from the other replica after 2.03 s. Keep it below keepalive + timeout (4 s):
gRPC's keepalive already runs on the local side of the bridge while the bridge is still connecting.
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
# one connection attempt (TCP + TLS), and the keepalive PING interval; see "Liveness" above
DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_KEEPALIVE = 2.0
_MAX_KEEPALIVE_TIMEOUT = 10.0
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
        timeout_ms = int(min(keepalive, _MAX_KEEPALIVE_TIMEOUT) * 1000)
        grpc_options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", timeout_ms),
            ("grpc.http2.ping_timeout_ms", timeout_ms),  # what actually bounds the wait (docstring)
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
                self.last_error = f"cannot connect to {host}:{port}: {str(exc) or type(exc).__name__}"
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
