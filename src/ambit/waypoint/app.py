"""One waypoint replica (``ambit waypoint run``): bootstrap its identity, follow the config, serve.

In order (:meth:`WaypointApp.start`):

1. **Identity.** The pod has no certificate, only what the kubelet projected: a pod-bound token
   (``AMBIT_TOKEN_FILE``) and the mesh trust bundle (``AMBIT_TRUST_BUNDLE_FILE``). The waypoint makes a
   key and CSR for ``spiffe://<td>/ns/<ns>/sa/<service account>`` and asks the CA on the control
   plane's token port (15013: server-only TLS, the control plane's identity verified, the token in
   ``authorization: Bearer``); the CA signs only while this pod exists with the token's uid. The
   :class:`~ambit.identity.secrets.SecretManager` renews it at half-life the same way (the token file
   is re-read each time: the kubelet rotates it).
2. **Config.** With that certificate, delta xDS over mTLS on 15012, like a ztunnel (workloads,
   services, L4 and L7 policies). The certificate given to the xDS client is replaced when renewed.
   The HBONE listener opens only once xDS has synced (until then a connection is refused, and the
   client ztunnel moves on to another replica); it is ready (15021) from then on. With no control
   plane a (re)starting replica therefore never serves: it has no on-disk cache yet (the running
   replicas keep serving from memory).
3. **Serve.** HBONE on 15008 presenting its own certificate (:mod:`ambit.waypoint.server`), metrics on
   15020 (:mod:`ambit.waypoint.metrics`), ``/config_dump`` on 127.0.0.1:15000: its identity,
   certificate expiry, the workloads, services and policies it routes on, and the L7 policies.
4. **Drain** (SIGTERM): readiness goes false, the listener stops accepting, every HBONE connection
   gets GOAWAY, HTTP/1.1 responses carry ``Connection: close`` and HTTP/2 clients a GOAWAY; in-flight
   requests finish until ``drain_deadline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.secrets import SecretManager
from ambit.model.identity import Identity
from ambit.model.jsonable import jsonable
from ambit.net.drain import Drain
from ambit.net.hbone import HboneClientConnection, connect_hbone
from ambit.net.hbone_server import HboneServer
from ambit.net.pool import Dial, HbonePool, OnClosed, PoolKey
from ambit.net.tasks import spawn
from ambit.proxy.admin import AdminServers
from ambit.proxy.certs import WorkloadCredentials
from ambit.resources.names import control_plane_identity
from ambit.state.store import StateStore
from ambit.waypoint.metrics import RequestMetrics
from ambit.waypoint.router import WaypointRouter, WaypointSelf
from ambit.waypoint.server import DEFAULT_SNIFF_TIMEOUT, TunnelHandler
from ambit.xds.ca_client import CaClient
from ambit.xds.client import XdsClient

log = logging.getLogger(__name__)

Address = tuple[str, int]
DEFAULT_CLUSTER_CIDRS = ("10.244.0.0/16", "10.96.0.0/16")


@dataclass(frozen=True, slots=True)
class WaypointConfig:
    gateway: str
    namespace: str
    service_account: str
    pod_ip: str
    token_file: Path
    trust_bundle_file: Path
    xds_addresses: tuple[Address, ...]
    ca_addresses: tuple[Address, ...]
    trust_domain: str = "cluster.local"
    pod_name: str = ""
    hbone: Address = ("0.0.0.0", 15008)
    admin: Address = ("127.0.0.1", 15000)
    metrics: Address = ("0.0.0.0", 15020)
    readiness: Address = ("0.0.0.0", 15021)
    cluster_cidrs: tuple[str, ...] = DEFAULT_CLUSTER_CIDRS
    drain_deadline: float = 10.0
    sniff_timeout: float = DEFAULT_SNIFF_TIMEOUT

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)


class WaypointApp:
    """One waypoint replica; ``start()`` returns once it serves, ``drain()``/``close()`` stop it."""

    def __init__(self, config: WaypointConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.identity = config.identity
        self.store = StateStore()
        self.metrics = RequestMetrics()
        self.drain_signal = Drain()
        self.rng = rng or random.Random()
        self.bundle: TrustBundle | None = None
        self.ca: CaClient | None = None
        self.secrets: SecretManager | None = None
        self.credentials: WorkloadCredentials | None = None
        self.xds: XdsClient | None = None
        self.pool: HbonePool | None = None
        self.router: WaypointRouter | None = None
        self.hbone: HboneServer | None = None
        self.admin: AdminServers | None = None
        self._cert_task: asyncio.Task[None] | None = None
        self._closed = False

    def _token(self) -> str:
        return self.config.token_file.read_text().strip()

    async def start(self) -> None:
        config = self.config
        self.bundle = bundle = await asyncio.to_thread(TrustBundle.from_file, config.trust_bundle_file)
        self.ca = CaClient(
            addresses=lambda: list(config.ca_addresses),
            cert=None,
            bundle=bundle,
            server_identity=control_plane_identity(config.trust_domain),
            token=self._token,
        )
        self.secrets = SecretManager(self.ca.fetch)
        self.credentials = WorkloadCredentials(self.secrets, lambda: bundle)
        cert = await self._first_certificate()
        log.info(
            "waypoint %s/%s has its certificate for %s until %s",
            config.namespace,
            config.gateway,
            cert.identity,
            cert.not_after,
        )
        self.admin = AdminServers(
            config_dump=self.config_dump,
            metrics=self.metrics.exposition_async,
            ready=self.ready,
            admin=config.admin,
            metrics_address=config.metrics,
            readiness=config.readiness,
        )
        await self.admin.start()
        self.xds = XdsClient(
            addresses=lambda: list(config.xds_addresses),
            cert=cert,
            bundle=bundle,
            store=self.store,
            node_id=f"waypoint~{config.pod_ip}~{config.pod_name}.{config.namespace}",
        )
        self.xds.start()
        self._cert_task = spawn(self._follow_certificate(cert), name="waypoint-cert")
        self.pool = HbonePool(self._connector)
        self.router = WaypointRouter(
            me=WaypointSelf(config.namespace, config.gateway, self.identity, config.pod_ip),
            store=self.store,
            pool=self.pool,
            metrics=self.metrics,
            cluster_cidrs=config.cluster_cidrs,
            rng=self.rng,
        )
        # Serve only with a config: a replica that listened before its first sync would answer 404/503
        # to traffic its peers could carry (a client ztunnel moves on from a refused connection).
        await self.xds.synced.wait()
        log.info("xDS synced: %d resources", len(self.store.current))
        context = await self.credentials.listener_context(self.identity)
        self.hbone = HboneServer(
            context,
            TunnelHandler(self.router, self.drain_signal, sniff_timeout=config.sniff_timeout),
            trust_domain=config.trust_domain,
        )
        await self.hbone.start(config.hbone[0], config.hbone[1], reuse_port=True)
        log.info("waypoint %s/%s serving HBONE on %s:%d", config.namespace, config.gateway, *config.hbone)

    async def _first_certificate(self) -> WorkloadCert:
        """The first certificate, retried with backoff: the control plane may not be up yet."""
        assert self.credentials is not None
        delay = 0.2
        while True:
            try:
                return await self.credentials.cert(self.identity)
            except Exception as exc:  # SecretUnavailable and fetch errors: wait and try again
                log.warning("no certificate for %s yet: %s; retrying in %.1f s", self.identity, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _follow_certificate(self, current: WorkloadCert) -> None:
        """Give the xDS client each renewed certificate (the SecretManager renews at half-life)."""
        assert self.credentials is not None and self.bundle is not None
        while True:
            await asyncio.sleep(30)
            with contextlib.suppress(Exception):
                cert = await self.credentials.cert(self.identity)
                if cert is not current and self.xds is not None:
                    self.xds.update_credentials(cert, self.bundle)
                    current = cert

    async def _connector(self, key: PoolKey, on_closed: OnClosed, dial: Dial | None) -> HboneClientConnection:
        """Upstream HBONE with the waypoint's own certificate; the endpoint's identity is required."""
        assert self.credentials is not None
        context = await self.credentials.client_context(key.source)
        return await connect_hbone(
            key.address[0], key.address[1], context, key.destination, on_closed=on_closed
        )

    # -- readiness and introspection ------------------------------------------------------------

    def ready(self) -> bool:
        return (
            not self._closed
            and not self.drain_signal.draining
            and self.hbone is not None
            and self.xds is not None
            and self.xds.synced.is_set()
        )

    def config_dump(self) -> dict[str, Any]:
        snapshot = self.store.current
        certs = self.secrets.snapshot() if self.secrets is not None else {}
        return {
            "gateway": f"{self.config.namespace}/{self.config.gateway}",
            "identity": str(self.identity),
            "synced": self.xds is not None and self.xds.synced.is_set(),
            "config_version": snapshot.version,
            "certificates": {str(i): c.not_after.isoformat() for i, c in certs.items()},
            "workloads": jsonable(dict(snapshot.workloads)),
            "services": jsonable(dict(snapshot.services)),
            "policies": jsonable(dict(snapshot.policies)),
            "l7_policies": jsonable(dict(snapshot.l7_policies)),
            "requests_in_flight": None,
        }

    # -- stopping -------------------------------------------------------------------------------

    async def drain(self, deadline: float | None = None) -> None:
        """Graceful stop: see the module docstring."""
        if self._closed:
            return
        wait = self.config.drain_deadline if deadline is None else deadline
        self.drain_signal.start(wait)
        if self.hbone is not None:
            await self.hbone.drain(wait)
        await self.close()

    async def close(self) -> None:
        if self._closed and self.hbone is None:
            return
        self._closed = True
        if self._cert_task is not None:
            self._cert_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cert_task
        if self.hbone is not None:
            await self.hbone.close()
            self.hbone = None
        if self.router is not None:
            await self.router.close()
        if self.xds is not None:
            await self.xds.close()
        if self.ca is not None:
            await self.ca.close()
        if self.secrets is not None:
            await self.secrets.close()
        if self.admin is not None:
            await self.admin.close()


def parse_addresses(texts: Sequence[str], default_port: int) -> tuple[Address, ...]:
    """``host[:port]`` → (host, port); a host name is kept (resolved when connecting)."""
    out: list[Address] = []
    for text in texts:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            host, port = text, str(default_port)
        out.append((host.strip("[]"), int(port)))
    return tuple(out)
