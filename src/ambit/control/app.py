"""One control-plane replica: objects → translation → snapshot cache → delta xDS + CA; waypoint controller.

Every replica is complete and independent (no leader): it reads the cluster's objects from an
``ObjectSource`` it is handed (``ambit.resources.source``; the embedded store's client is wired in
at the edge, ``ambit.cli.controlplane``) through its own informer, translates the objects (pure, off
the event loop), publishes the result to its snapshot cache (content-hash versions, so every
replica serves identical versions for identical input), serves xDS and the CA on 15012 over mTLS,
runs the waypoint controller and the route status controller (both safe with several replicas:
compare-and-swap writes of deterministic results), and serves
`/healthz/ready`, `/debug/config` and Prometheus metrics on 15014 (`ambit.control.http`).

The CA keys come from the cluster's state directory, shared by all replicas (mode 0600). The
replica issues its own serving credential (`spiffe://<td>/ns/ambit-system/sa/controlplane`) from that
CA and renews it at half-life.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ambit.control.ca_server import CertificateServer, Denial
from ambit.control.cache import SnapshotCache, Versioner
from ambit.control.grpc_server import ControlPlaneServer
from ambit.control.http import ControlPlaneHttp
from ambit.control.metrics import ControlPlaneMetrics
from ambit.control.route_status_writer import RouteStatusController
from ambit.control.translate import TranslationResult, translate
from ambit.control.waypoints import WaypointController
from ambit.control.xds_server import NackRecord, PushRecord, XdsServer
from ambit.identity.authenticators import Authenticator, NodeCertificateAuthenticator, PodTokenAuthenticator
from ambit.identity.ca import CertificateAuthority
from ambit.identity.certs import WorkloadCert, issue
from ambit.identity.tokens import PUBLIC_KEYS_FILE, load_verifier
from ambit.model.identity import DEFAULT_TRUST_DOMAIN
from ambit.model.placement import PodPlacement
from ambit.model.policy import Authorization, L7Authorization
from ambit.model.rate_limit import RateLimitPolicy
from ambit.model.route import HttpRoute
from ambit.model.traffic_policy import TrafficPolicy
from ambit.model.workload import Service, Workload
from ambit.net.tasks import spawn
from ambit.resources.names import CA_SUBDIR, TOKENS_SUBDIR, control_plane_identity
from ambit.resources.objects import pod_placement
from ambit.resources.source import ObjectSource
from ambit.store import Informer

_log = logging.getLogger(__name__)

# The kinds translation and the CA read; everything else in the store is irrelevant to proxies.
WATCHED_KINDS = (
    "Namespace",
    "Node",
    "Pod",
    "Service",
    "Deployment",
    "Gateway",
    "GatewayClass",
    "AuthorizationPolicy",
    "PeerAuthentication",
    "HTTPRoute",
    "GRPCRoute",
    "TCPRoute",
    "ReferenceGrant",
    "VirtualService",
    "DestinationRule",
    "HTTPLocalRateLimitPolicy",
)


@dataclass(frozen=True, slots=True)
class ControlPlaneConfig:
    state_dir: Path
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    root_namespace: str = "istio-system"
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 15012
    token_port: int | None = 15013  # the CA for token callers (server-only TLS); None: not served
    http_host: str = "0.0.0.0"
    http_port: int = 15014
    debounce: float = 0.1
    max_connection_age: float = 30 * 60.0
    credential_ttl: timedelta = timedelta(hours=24)
    run_waypoint_controller: bool = True
    run_route_status_controller: bool = True  # HTTPRoute/GRPCRoute status.parents for Service parents


def ca_authenticators(state_dir: Path) -> list[Authenticator]:
    """Node certificates always; pod-bound tokens when the cluster has token keys (``<state>/tokens``)."""
    authenticators: list[Authenticator] = [NodeCertificateAuthenticator()]
    tokens = state_dir / TOKENS_SUBDIR
    if (tokens / PUBLIC_KEYS_FILE).exists():
        authenticators.append(PodTokenAuthenticator(load_verifier(tokens)))
    return authenticators


def pod_placements(objects: Iterable[Mapping[str, Any]]) -> list[PodPlacement]:
    """Where each scheduled pod runs, for the CA's node authorization."""
    return [p for p in map(pod_placement, objects) if p is not None]


class ControlPlane:
    """One replica; `start()` returns once it serves, `close()` stops everything it started."""

    def __init__(self, config: ControlPlaneConfig, source: ObjectSource) -> None:
        """``source`` is where the objects come from; the caller opens it and closes it after ``close``."""
        self.config = config
        self.ca = CertificateAuthority.load(config.state_dir / CA_SUBDIR)
        self.metrics = ControlPlaneMetrics()
        self.cache = SnapshotCache()
        self.versioner = Versioner()
        self.source = source
        self.informer = Informer(source, WATCHED_KINDS, name="controlplane")
        self.xds = XdsServer(
            self.cache,
            debounce=config.debounce,
            trust_domain=config.trust_domain,
            on_nack=self._on_nack,
            on_push=self._on_push,
        )
        self.ca_service = CertificateServer(
            self.ca, self._pods, on_denied=self._on_denied, authenticators=ca_authenticators(config.state_dir)
        )
        self.metrics.follow(self.xds.stats, self.ca_service.stats)
        self.credential = self._issue_credential()
        self.grpc = ControlPlaneServer(
            cert=self.credential,
            bundle=self.ca.trust_bundle,
            xds=self.xds,
            ca=self.ca_service,
            host=config.grpc_host,
            port=config.grpc_port,
            token_port=config.token_port,
            max_connection_age=config.max_connection_age,
        )
        self.waypoints = WaypointController(source) if config.run_waypoint_controller else None
        self.route_status = RouteStatusController(source) if config.run_route_status_controller else None
        self.http = ControlPlaneHttp(self, host=config.http_host, port=config.http_port)
        self.last_translation: TranslationResult | None = None
        self._dirty = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._set_at: float | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.informer.subscribe(lambda _type, _obj: self._dirty.set())
        self.informer.start()
        await self.informer.wait_synced()
        await self._translate_once()
        self.xds.start()
        await self.grpc.start()
        if self.waypoints is not None:
            await self.waypoints.start()
        if self.route_status is not None:
            await self.route_status.start()
        await self.http.start()
        self._tasks.append(spawn(self._translate_loop(), name="controlplane-translate"))
        self._tasks.append(spawn(self._renew_credential_loop(), name="controlplane-credential"))
        _log.info("control plane serving xDS/CA on %s, HTTP on %s", self.grpc.address, self.http.address)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.http.close()
        if self.waypoints is not None:
            await self.waypoints.close()
        if self.route_status is not None:
            await self.route_status.close()
        await self.grpc.stop(grace=0.2)
        self.xds.close()
        await self.informer.close()

    @property
    def ready(self) -> bool:
        return self.informer.synced and self.cache.ready

    # ------------------------------------------------------------------ translation

    async def _translate_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await self._translate_once()

    async def _translate_once(self) -> None:
        self._dirty.clear()
        objects = list(self.informer.cache.values())
        started = time.monotonic()
        result = await asyncio.to_thread(
            translate,
            objects,
            root_namespace=self.config.root_namespace,
            trust_domain=self.config.trust_domain,
        )
        values: list[
            Workload | Service | Authorization | L7Authorization | HttpRoute | TrafficPolicy | RateLimitPolicy
        ] = [
            *result.workloads.values(),
            *result.services.values(),
            *result.policies.values(),
            *result.l7_policies.values(),
            *result.routes.values(),
            *result.traffic_policies.values(),
            *result.rate_limits.values(),
        ]
        self.cache.set(self.versioner(values))
        self._set_at = time.monotonic()
        self.last_translation = result
        self.metrics.translations.inc()
        self.metrics.translation_seconds.observe(self._set_at - started)
        for warning in result.warnings:
            _log.info("translation: %s", warning)

    def _pods(self) -> list[PodPlacement]:
        return pod_placements(self.informer.cache.values())

    # ------------------------------------------------------------------ credential

    def _issue_credential(self) -> WorkloadCert:
        return issue(
            self.ca, control_plane_identity(self.config.trust_domain), ttl=self.config.credential_ttl
        )

    async def _renew_credential_loop(self) -> None:
        while True:
            wait = (self.credential.refresh_at - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(1.0, wait))
            self.credential = self._issue_credential()
            self.grpc.update_credentials(self.credential, self.ca.trust_bundle)
            _log.info("renewed the control plane credential (expires %s)", self.credential.not_after)

    # ------------------------------------------------------------------ observability hooks

    def _on_push(self, push: PushRecord) -> None:
        self.metrics.pushes.labels(type=push.type_url.rsplit("/", 1)[-1]).inc()
        self.metrics.push_bytes.inc(push.size)
        if self._set_at is not None:
            self.metrics.convergence_seconds.observe(time.monotonic() - self._set_at)

    def _on_nack(self, nack: NackRecord) -> None:
        self.metrics.rejects.labels(type=nack.type_url.rsplit("/", 1)[-1]).inc()
        _log.warning("proxy %s NACKed %s: %s", nack.proxy, ", ".join(nack.resource_names), nack.message)

    def _on_denied(self, denial: Denial) -> None:
        _log.warning("CA refused %s for %s: %s", denial.requested, denial.caller, denial.reason)
