"""The control plane's gRPC endpoint: delta xDS and the CA service on 15012 (mTLS) and, for callers
that have no certificate yet, on 15013 (server-only TLS, the caller shows a pod-bound token).

The server presents the control plane's own credential (``spiffe://<td>/ns/ambit-system/sa/controlplane``)
on both ports. On 15012 it requires a client certificate that chains to the mesh trust bundle: a caller
without one fails the handshake and never reaches a handler; the servicers read the caller's identity
from the verified certificate (``context.auth_context()``). On 15013 (``token_port``) nobody shows a
certificate: the CA authenticates the ``authorization: Bearer`` token, and xDS refuses every stream
(it has no verified identity). Why two ports where Istio has one: grpcio's server either requires a
client certificate or never asks for one (``require_client_authentication=False`` sends no
CertificateRequest, checked with grpcio 1.85), so one port cannot serve both kinds of caller.

Connections are closed after ``max_connection_age`` (default 30 min, as Istio's
``keepaliveMaxServerConnectionAge``) with ``max_connection_age_grace`` (default 10 s) for streams to
finish, so proxies reconnect through the Service and spread over replicas. The credential can be
replaced at run time (:meth:`ControlPlaneServer.update_credentials`); new handshakes use it.

PINGs. Proxies send a keepalive PING after 2 s without a byte (``ambit.xds.channel``, "Liveness": a
replica on a node cut off the fabric must be found dead within ~4 s), and the server must take that
without answering ``GOAWAY too_many_pings`` (grpc/grpc ``doc/keepalive.md``), which gRPC's defaults
would send at the 3rd strike:

* ``grpc.http2.min_ping_interval_without_data_ms`` (:data:`MIN_RECV_PING_INTERVAL`, 1 s, was 10 s;
  this name is GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, the *receive* side, default
  5 min; the sent side, ``grpc.http2.min_time_between_pings_ms``, no longer does anything): a PING
  sooner than 1 s after the previous one, while the server sent no data, is a strike. Half the
  proxies' interval, so they never earn one (and a gRPC client never PINGs more than once a second);
* ``grpc.http2.max_ping_strikes`` = 0: strikes never close a connection anyway;
* ``grpc.keepalive_permit_without_calls`` = 1: PINGs on a connection with no open call are fine too
  (without it gRPC allows one per 2 h there).

``tests/integration/xds/test_xds_failover.py`` keeps a client PINGing once a second on a replica for
~7 s without a GOAWAY (with gRPC's default policy it gets one at the 4th PING). The server's own
keepalive (``keepalive``, default 60 s) only finds dead *proxies*, whose streams cost little
meanwhile. Cost of the proxies' PINGs: 0.5/s per proxy, ~40 bytes each way, answered in gRPC's C core
without reaching Python (500/s for 1,000 proxies).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc

from ambit.control.ca_server import CertificateServer
from ambit.control.xds_server import XdsServer
from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.xds.channel import CONTROL_PLANE_PORT, MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

DEFAULT_MAX_CONNECTION_AGE = 30 * 60.0
DEFAULT_MAX_CONNECTION_AGE_GRACE = 10.0
DEFAULT_KEEPALIVE = 60.0
# the shortest gap between two PINGs from a client that is not a strike (module docstring)
MIN_RECV_PING_INTERVAL = 1.0


class ControlPlaneServer:
    """A ``grpc.aio`` server serving xDS and/or the CA over mTLS on one port."""

    def __init__(
        self,
        *,
        cert: WorkloadCert,
        bundle: TrustBundle,
        xds: XdsServer | None = None,
        ca: CertificateServer | None = None,
        host: str = "0.0.0.0",
        port: int = CONTROL_PLANE_PORT,
        token_port: int | None = None,
        max_connection_age: float = DEFAULT_MAX_CONNECTION_AGE,
        max_connection_age_grace: float = DEFAULT_MAX_CONNECTION_AGE_GRACE,
        keepalive: float = DEFAULT_KEEPALIVE,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if max_connection_age <= 0 or max_connection_age_grace < 0:
            raise ValueError("need max_connection_age > 0 and max_connection_age_grace >= 0")
        self.xds = xds
        self.ca = ca
        self._host = host
        self._requested_port = port
        self._requested_token_port = token_port
        self._credential = (cert, bundle)
        self._credential_changed = False
        self._options: list[tuple[str, Any]] = [
            ("grpc.max_connection_age_ms", int(max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(max_connection_age_grace * 1000)),
            ("grpc.keepalive_time_ms", int(keepalive * 1000)),
            ("grpc.keepalive_timeout_ms", 20_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", int(MIN_RECV_PING_INTERVAL * 1000)),
            ("grpc.http2.max_ping_strikes", 0),
            ("grpc.so_reuseport", 0),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            *options,
        ]
        self._server: Any = None
        self.port: int | None = None
        self.token_port: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self.port is None:
            raise RuntimeError("server not started")
        return (self._host, self.port)

    def update_credentials(self, cert: WorkloadCert, bundle: TrustBundle) -> None:
        """Present ``cert`` and trust ``bundle`` from the next handshake on (certificate rotation)."""
        self._credential = (cert, bundle)
        self._credential_changed = True

    def _config(self) -> Any:
        cert, bundle = self._credential
        return grpc.ssl_server_certificate_configuration(
            [(cert.key_pem, cert.chain_pem)], root_certificates=bundle.roots_pem
        )

    def _fetch_config(self) -> Any:
        # called by gRPC (on one of its threads) before handshakes; None means "unchanged"
        if not self._credential_changed:
            return None
        self._credential_changed = False
        return self._config()

    async def start(self) -> int:
        """Bind, start serving and return the port (useful with ``port=0``)."""
        if self._server is not None:
            raise RuntimeError("server already started")
        server = grpc.aio.server(options=self._options)
        if self.xds is not None:
            self.xds.register(server)
        if self.ca is not None:
            self.ca.register(server)
        credentials = grpc.dynamic_ssl_server_credentials(
            self._config(), self._fetch_config, require_client_authentication=True
        )
        port = server.add_secure_port(f"{self._host}:{self._requested_port}", credentials)
        if port == 0:
            raise OSError(f"cannot bind {self._host}:{self._requested_port}")
        if self._requested_token_port is not None:
            server_only = grpc.dynamic_ssl_server_credentials(
                self._config(), self._fetch_config, require_client_authentication=False
            )
            token_port = server.add_secure_port(f"{self._host}:{self._requested_token_port}", server_only)
            if token_port == 0:
                raise OSError(f"cannot bind {self._host}:{self._requested_token_port}")
            self.token_port = int(token_port)
        if self.xds is not None:
            self.xds.start()
        await server.start()
        self._server = server
        self.port = port
        log.info("control plane gRPC serving on %s:%d", self._host, port)
        return int(port)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give open calls ``grace`` seconds (None: cancel them now), then close."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.xds is not None:
            self.xds.close()
        await server.stop(grace)
        # let cancelled handlers run their cleanup before the loop moves on
        await asyncio.sleep(0)
