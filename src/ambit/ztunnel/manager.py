"""The ztunnel of one node: shared state, credentials, pool, metrics, and a proxy per enrolled pod.

:class:`Ztunnel` owns the parts every pod shares (:class:`~ambit.ztunnel.inputs.ProxyInputs`) and a
:class:`~ambit.ztunnel.proxy.PodProxy` per pod uid. What feeds it, and what is still to be wired
(the seams):

* **config**: anything that writes the :class:`~ambit.state.store.StateStore` — next, the
  :class:`~ambit.xds.client.XdsClient`; call :meth:`Ztunnel.mark_synced` once its ``synced`` event is
  set (until then in-cluster traffic is held, DESIGN §5);
* **certificates**: the injected ``fetch`` (``CaClient.fetch`` in production, ``Pki.issue`` in tests)
  and the trust bundle provider;
* **pods**: :meth:`Ztunnel.add_pod` / :meth:`Ztunnel.remove_pod` with the pod's listening sockets
  and its :class:`~ambit.proxy.sockets.SocketFactory` — next, the node-agent (ZDS) client hands
  over each pod's netns fd and a ``NetnsSocketFactory`` makes the sockets inside it;
* **admin/metrics/readiness**: :attr:`Ztunnel.metrics` (``exposition_async`` for ``/metrics``),
  :meth:`Ztunnel.ready` for ``/healthz/ready``, :meth:`Ztunnel.config_dump` for ``/config_dump``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from ambit.identity.certs import TrustBundle
from ambit.identity.secrets import Clock, Fetch, SecretManager
from ambit.model.identity import Identity
from ambit.net.pool import HbonePool
from ambit.proxy.certs import WorkloadCredentials
from ambit.proxy.config_dump import CertificateView, ConfigDump, Counts, PodView, ejection_views
from ambit.proxy.sockets import SocketFactory, SystemSocketFactory
from ambit.proxy.state_waiter import StateWaiter
from ambit.state.store import StateStore
from ambit.ztunnel.config import ZtunnelConfig
from ambit.ztunnel.connections import ConnectionRegistry
from ambit.ztunnel.inputs import PodInfo, PodListeners, ProxyInputs
from ambit.ztunnel.metrics import Metrics
from ambit.ztunnel.outbound import hbone_connector, socket_dialer
from ambit.ztunnel.proxy import PodProxy, PodStartError

log = logging.getLogger(__name__)

__all__ = ["PodStartError", "Ztunnel"]


class Ztunnel:
    """One node's L4 proxy; see the module docstring."""

    def __init__(
        self,
        config: ZtunnelConfig,
        *,
        fetch: Fetch,
        bundle: TrustBundle | Callable[[], TrustBundle],
        store: StateStore | None = None,
        sockets: SocketFactory | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.store = store if store is not None else StateStore()
        self.default_sockets: SocketFactory = sockets if sockets is not None else SystemSocketFactory()
        bundle_fn: Callable[[], TrustBundle] = bundle if callable(bundle) else (lambda: bundle)
        self.credentials = WorkloadCredentials(SecretManager(fetch, clock=clock), bundle_fn, clock=clock)
        self.connections = ConnectionRegistry()
        self.state = StateWaiter(self.store)
        # Each stream's request carries its pod's dialer; the node's own sockets are the fallback.
        self.pool = HbonePool(
            hbone_connector(config, self.credentials, socket_dialer(self.default_sockets, config))
        )
        self.inputs = ProxyInputs(
            config=config,
            store=self.store,
            state=self.state,
            credentials=self.credentials,
            pool=self.pool,
            connections=self.connections,
            metrics=metrics if metrics is not None else Metrics(),
            rng=rng if rng is not None else random.Random(),
        )
        self.pods: dict[str, PodProxy] = {}
        self._unfollow = self.connections.follow(self.store) if config.policy_recheck else (lambda: None)
        self._closed = False

    @property
    def metrics(self) -> Metrics:
        return self.inputs.metrics

    # -- config ---------------------------------------------------------------------------------

    def mark_synced(self) -> None:
        """The first config is in the store: stop holding in-cluster traffic."""
        self.state.mark_synced()

    def ready(self) -> bool:
        """Readiness (``/healthz/ready``): the config has synced. (Next: and the node agent is connected.)"""
        return self.state.synced and not self._closed

    # -- pods -----------------------------------------------------------------------------------

    async def add_pod(
        self, pod: PodInfo, listeners: PodListeners, *, sockets: SocketFactory | None = None
    ) -> PodProxy:
        """Start serving ``pod`` on ``listeners``; raises PodStartError (listeners closed) if it cannot.

        A pod already served under the same uid is replaced (the node agent replays pods after a
        reconnect): the old proxy is closed first.
        """
        if self._closed:
            listeners.close()
            raise PodStartError("ztunnel is shut down")
        old = self.pods.pop(pod.uid, None)
        if old is not None:
            await self._stop(old, drain=False)
        proxy = PodProxy(
            self.inputs, pod, listeners, sockets if sockets is not None else self.default_sockets
        )
        await proxy.start()
        self.pods[pod.uid] = proxy
        return proxy

    async def remove_pod(self, uid: str) -> bool:
        """Stop serving pod ``uid`` at once (it is gone); False if it was not served."""
        proxy = self.pods.pop(uid, None)
        if proxy is None:
            return False
        await self._stop(proxy, drain=False)
        return True

    async def _stop(self, proxy: PodProxy, *, drain: bool, deadline: float | None = None) -> None:
        if drain:
            await proxy.drain(deadline)
        else:
            await proxy.close()
        if not any(p.pod.identity == proxy.pod.identity for p in self.pods.values()):
            self.credentials.forget(proxy.pod.identity)

    # -- lifecycle ------------------------------------------------------------------------------

    async def drain(self, deadline: float | None = None) -> None:
        """Graceful stop: every pod stops accepting and finishes within ``deadline`` s, then close."""
        deadline = self.config.drain_deadline if deadline is None else deadline
        proxies = list(self.pods.values())
        for proxy in proxies:  # first, and all at once: a replacement's listeners take the traffic
            proxy.stop_accepting()
        log.info("listeners closed (%d pods); draining", len(proxies))
        self.pool.drain()
        self.pods.clear()
        await asyncio.gather(*(self._stop(p, drain=True, deadline=deadline) for p in proxies))
        await self.close()

    async def close(self) -> None:
        """Stop everything at once."""
        if self._closed:
            return
        self._closed = True
        proxies = list(self.pods.values())
        self.pods.clear()
        await asyncio.gather(*(p.close() for p in proxies))
        self._unfollow()
        self.connections.close()
        self.state.close()
        await self.pool.close()
        await self.credentials.close()

    # -- introspection --------------------------------------------------------------------------

    def config_dump(self) -> ConfigDump:
        """What this ztunnel believes (``/config_dump``; the app adds its own sections)."""
        snapshot = self.store.current
        return ConfigDump(
            node=self.config.node,
            synced=self.state.synced,
            config_version=snapshot.version,
            counts=Counts(len(snapshot.workloads), len(snapshot.services), len(snapshot.policies)),
            workloads=dict(snapshot.workloads),
            services=dict(snapshot.services),
            policies=dict(snapshot.policies),
            pods={
                uid: PodView(f"{p.pod.namespace}/{p.pod.name}", str(p.pod.identity), p.state)
                for uid, p in self.pods.items()
            },
            certificates={
                str(identity): CertificateView(cert.not_after)
                for identity, cert in self.credentials.secrets.snapshot().items()
                if isinstance(identity, Identity)
            },
            connections=self.connections.describe(),
            ejections=ejection_views(
                self.inputs.ejections, snapshot.workloads, asyncio.get_running_loop().time()
            ),
            inbound_connections=len(self.connections),
            pool_connections=self.pool.connection_count,
        )
