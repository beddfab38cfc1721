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
   15020 (:mod:`ambit.waypoint.metrics`), ``/config_dump`` on 127.0.0.1:15000: the typed
   :class:`~ambit.proxy.config_dump.ConfigDump` — its Gateway and identity, the services and workloads
   bound to it, the Gateway API routes it applies, every endpoint (``workloads``), the L4 and L7
   policies, its certificate, and the endpoints it currently ejects.
4. **Drain** (SIGTERM): readiness goes false, the listener stops accepting, every HBONE connection
   gets GOAWAY, HTTP/1.1 responses carry ``Connection: close`` and HTTP/2 clients a GOAWAY; in-flight
   requests finish until ``drain_deadline``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.secrets import SecretManager
from ambit.model.identity import Identity
from ambit.model.workload import WaypointRef, service_hostname
from ambit.net.drain import Drain
from ambit.net.hbone import HboneClientConnection, connect_hbone
from ambit.net.hbone_server import HboneServer
from ambit.net.pool import Dial, HbonePool, OnClosed, PoolKey
from ambit.net.tasks import spawn
from ambit.proxy.admin import AdminServers
from ambit.proxy.cache import ProxyCache
from ambit.proxy.certs import WorkloadCredentials
from ambit.proxy.config_dump import CertificateView, ConfigDump, Counts, WaypointView, XdsView
from ambit.proxy.control_plane import ControlPlaneLink, PodTokenCredential
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
    cache_dir: Path = Path()  # default: ``cache/`` beside the token (the pod's own directory)

    def __post_init__(self) -> None:
        if self.cache_dir == Path():
            object.__setattr__(self, "cache_dir", self.token_file.parent / "cache")

    @property
    def identity(self) -> Identity:
        return Identity(self.trust_domain, self.namespace, self.service_account)


class WaypointApp:
    """One waypoint replica; ``start()`` returns once it serves, ``drain()``/``close()`` stop it."""

    def __init__(self, config: WaypointConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self.identity = config.identity
        self.link: ControlPlaneLink | None = None
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

    async def start(self) -> None:
        config = self.config
        self.link = link = ControlPlaneLink(
            credential=PodTokenCredential(config.token_file, config.trust_bundle_file, config.trust_domain),
            cache=ProxyCache(config.cache_dir),
            bootstrap=config.xds_addresses,
            ca_bootstrap=config.ca_addresses,
            node_id=f"waypoint~{config.pod_ip}~{config.pod_name}.{config.namespace}",
        )
        self.ca = await link.open()  # the cached state (if any) is in the store now
        self.bundle = bundle = link.bundle
        self.secrets = SecretManager(self.ca.fetch)
        self.credentials = WorkloadCredentials(self.secrets, lambda: bundle)
        await link.restore_certificates(self.secrets)  # a cached, unexpired certificate needs no CA
        cert = await self._first_certificate()
        log.info(
            "waypoint %s/%s has its certificate for %s until %s",
            config.namespace,
            config.gateway,
            cert.identity,
            cert.not_after,
        )
        self.admin = AdminServers(
            config_dump=self.config_dump_json,
            metrics=self.metrics.exposition_async,
            ready=self.ready,
            admin=config.admin,
            metrics_address=config.metrics,
            readiness=config.readiness,
        )
        await self.admin.start()
        self.xds = link.connect(self.secrets.snapshot, cert=cert)
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
        # Serve only with a config — the cached one or the first sync: a replica that listened with
        # none would answer 404/503 to traffic its peers could carry (a client moves on from a refusal).
        if not link.synced_from_cache:
            await self.xds.synced.wait()
        log.info(
            "config %s: %d resources",
            "from the cache" if link.synced_from_cache else "synced",
            len(self.store.current),
        )
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

    @property
    def store(self) -> StateStore:
        assert self.link is not None, "start() first"
        return self.link.store

    def ready(self) -> bool:
        return (
            not self._closed
            and not self.drain_signal.draining
            and self.hbone is not None
            and self.xds is not None
            and (self.xds.synced.is_set() or (self.link is not None and self.link.synced_from_cache))
        )

    def config_dump(self) -> ConfigDump:
        """What this replica believes (``/config_dump``): typed, as the ztunnel's."""
        snapshot = self.store.current
        mine = service_hostname(self.config.gateway, self.config.namespace)

        def bound(ref: WaypointRef | None) -> bool:
            return ref is not None and ref.namespace == self.config.namespace and ref.hostname == mine

        certs = self.secrets.snapshot() if self.secrets is not None else {}
        xds = self.xds
        return ConfigDump(
            node=self.config.pod_name,
            synced=self.xds is not None and self.xds.synced.is_set(),
            synced_from_cache=self.link is not None and self.link.synced_from_cache,
            config_version=snapshot.version,
            counts=Counts(len(snapshot.workloads), len(snapshot.services), len(snapshot.policies)),
            workloads=dict(snapshot.workloads),
            services=dict(snapshot.services),
            policies=dict(snapshot.policies),
            l7_policies=dict(snapshot.l7_policies),
            routes=dict(snapshot.routes),
            traffic_policies=dict(snapshot.traffic_policies),
            rate_limits=dict(snapshot.rate_limits),
            certificates={
                str(identity): CertificateView(cert.not_after)
                for identity, cert in certs.items()
                if isinstance(identity, Identity)
            },
            ejections=self.router.ejection_views(snapshot) if self.router is not None else (),
            outliers=self.router.outlier_views(snapshot) if self.router is not None else (),
            xds=None if xds is None else XdsView(xds.address, xds.synced.is_set(), xds.last_error),
            waypoint=WaypointView(
                gateway=f"{self.config.namespace}/{self.config.gateway}",
                identity=str(self.identity),
                services=tuple(sorted(key for key, svc in snapshot.services.items() if bound(svc.waypoint))),
                workloads=tuple(sorted(uid for uid, w in snapshot.workloads.items() if bound(w.waypoint))),
            ),
        )

    def config_dump_json(self) -> dict[str, Any]:
        return self.config_dump().to_json()

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
        if self.link is not None:
            await self.link.close_cache()  # a last write while the certificate is still held
            await self.link.close()
        if self.secrets is not None:
            await self.secrets.close()
        if self.admin is not None:
            await self.admin.close()
