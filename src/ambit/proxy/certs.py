"""Workload credentials (any proxy's): each pod's certificate and the TLS contexts built from it.

ztunnel holds one certificate per service account on its node (facts §1.4), fetched and refreshed by
:class:`~ambit.identity.secrets.SecretManager` (the fetch is injected: ``CaClient.fetch`` in
production, ``Pki.issue`` in tests). :class:`WorkloadCredentials` adds the ``ssl.SSLContext`` s:

* client and server contexts are cached per identity and rebuilt when the certificate (or the trust
  bundle) changes; building one costs a few milliseconds, so it happens once per certificate;
* a listener's context (:meth:`WorkloadCredentials.listener_context`) is fixed when the listener
  starts, so it carries an ``sni_callback`` that, on every handshake, swaps in the context of the
  identity's *current* certificate (OpenSSL calls it for every ClientHello, SNI or not). A rotated
  certificate is therefore served from the next handshake on. When no unexpired certificate is
  known, the handshake is refused (fail closed).

Never serves an expired certificate: the SecretManager drops expired ones and raises
:class:`~ambit.identity.secrets.SecretUnavailable` instead; callers refuse the connection.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from ambit.identity.certs import TrustBundle, WorkloadCert
from ambit.identity.secrets import Clock, SecretManager, SecretUnavailable, SystemClock
from ambit.identity.tls import client_context, server_context
from ambit.model.identity import Identity
from ambit.net.tasks import spawn

log = logging.getLogger(__name__)

__all__ = ["SecretUnavailable", "WorkloadCredentials"]


@dataclass(slots=True)
class _Contexts:
    cert: WorkloadCert
    bundle: TrustBundle
    server: ssl.SSLContext | None = None
    client: ssl.SSLContext | None = None


class WorkloadCredentials:
    """identity → current certificate, and cached server/client TLS contexts for it."""

    def __init__(
        self,
        secrets: SecretManager,
        bundle: Callable[[], TrustBundle],
        *,
        clock: Clock | None = None,
    ) -> None:
        self.secrets = secrets
        self._bundle = bundle
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._contexts: dict[Identity, _Contexts] = {}
        self._prefetching: set[Identity] = set()
        self.contexts_built = 0

    async def cert(self, identity: Identity) -> WorkloadCert:
        """The identity's unexpired certificate; raises SecretUnavailable (fail closed)."""
        return await self.secrets.get(identity)

    async def server_context(self, identity: Identity) -> ssl.SSLContext:
        """A server context presenting the identity's current certificate."""
        return self._server(self._entry(await self.cert(identity)))

    async def client_context(self, identity: Identity) -> ssl.SSLContext:
        """A client context presenting the identity's current certificate."""
        entry = self._entry(await self.cert(identity))
        if entry.client is None:
            entry.client = client_context(entry.cert, entry.bundle)
            self.contexts_built += 1
        return entry.client

    async def listener_context(self, identity: Identity) -> ssl.SSLContext:
        """A server context for a long-lived listener: every handshake uses the current certificate.

        Raises SecretUnavailable when there is no certificate now (do not start the listener).
        """
        await self.server_context(identity)
        # A context of its own (the cached one may be replaced), configured exactly like the others.
        entry = self._contexts[identity]
        front = server_context(entry.cert, entry.bundle)
        self.contexts_built += 1

        def choose(sslobj: ssl.SSLObject, _server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
            current = self.current_server_context(identity)
            if current is None:
                log.warning("refusing a TLS handshake for %s: no valid certificate", identity)
                return ssl.ALERT_DESCRIPTION_INTERNAL_ERROR
            if sslobj.context is not current:
                sslobj.context = current
            return None

        front.sni_callback = choose
        return front

    def current_server_context(self, identity: Identity) -> ssl.SSLContext | None:
        """The server context of the identity's current certificate, without waiting (None: none valid).

        Past the cached certificate's half-life the SecretManager has (or is fetching) a newer one:
        look there, and start a fetch in the background when it has none yet.
        """
        entry = self._contexts.get(identity)
        now = self._clock.now()
        if entry is not None and now < entry.cert.refresh_at:
            return self._server(entry)
        newest = self.secrets.snapshot().get(identity)
        if newest is None:
            if identity not in self._prefetching:
                self._prefetching.add(identity)
                spawn(self._prefetch(identity), name=f"cert-prefetch {identity}")
            if entry is None or entry.cert.expired(now):
                return None
            return self._server(entry)
        return self._server(self._entry(newest))

    def forget(self, identity: Identity) -> None:
        """Drop the identity's contexts and certificate (its last pod left the node)."""
        self._contexts.pop(identity, None)
        self.secrets.forget(identity)

    async def close(self) -> None:
        self._contexts.clear()
        await self.secrets.close()

    # -- internals ------------------------------------------------------------------------------

    def _entry(self, cert: WorkloadCert) -> _Contexts:
        identity = cert.identity
        assert isinstance(identity, Identity)  # SecretManager only holds workload identities
        bundle = self._bundle()
        entry = self._contexts.get(identity)
        if entry is None or entry.cert is not cert or entry.bundle is not bundle:
            if entry is not None and entry.cert != cert:
                log.info("certificate for %s changed (valid until %s)", identity, cert.not_after)
            entry = _Contexts(cert, bundle)
            self._contexts[identity] = entry
        return entry

    def _server(self, entry: _Contexts) -> ssl.SSLContext:
        if entry.server is None:
            entry.server = server_context(entry.cert, entry.bundle)
            self.contexts_built += 1
        return entry.server

    async def _prefetch(self, identity: Identity) -> None:
        try:
            await self.secrets.get(identity)
        except SecretUnavailable as exc:
            log.warning("no certificate for %s: %s", identity, exc)
        finally:
            self._prefetching.discard(identity)
