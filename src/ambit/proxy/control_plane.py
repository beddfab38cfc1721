"""A proxy's link to the control plane: node credential, config over xDS, certificates from the CA, cache.

Every proxy joins the mesh the same way, and :class:`ControlPlaneLink` is that way, in order:

1. :meth:`~ControlPlaneLink.open`: read the credential it shows the control plane — a ztunnel's node
   credential (:class:`NodeCredentialFiles`: certificate, key, trust bundle the runtime wrote), or a
   waypoint's pod token and trust bundle (:class:`PodTokenCredential`: no certificate; the CA is asked
   on the token port with ``authorization: Bearer``) — load the on-disk cache (:mod:`ambit.proxy.cache`)
   into the :class:`~ambit.state.store.StateStore` **before** xDS connects, so a restarted proxy
   serves from the last good state while the control plane is away, and make the
   :class:`~ambit.xds.ca_client.CaClient`. Both clients find the control plane through
   :func:`~ambit.xds.discovery.control_plane_addresses` (live endpoints of the ``controlplane`` Service,
   the bootstrap addresses as the fallback);
2. :meth:`~ControlPlaneLink.restore_certificates`: install the cached, unexpired workload certificates
   into the proxy's :class:`~ambit.identity.secrets.SecretManager` (which fetches through the CA client);
3. :meth:`~ControlPlaneLink.connect`: start the :class:`~ambit.xds.client.XdsClient` (it feeds the store)
   over mTLS with the node certificate, or with the certificate it is given (a waypoint's own), and
   the cache writer (the store and the proxy's certificates, written back on every change).

Closing is the reverse: :meth:`~ControlPlaneLink.close_cache` (a last write) while the certificates are
still held, then :meth:`~ControlPlaneLink.close`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ambit.identity.ca import TRUST_BUNDLE_FILE
from ambit.identity.certs import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, TrustBundle, WorkloadCert, write_pem
from ambit.identity.secrets import SecretManager, SystemClock
from ambit.proxy.cache import CertSource, ProxyCache
from ambit.resources.names import control_plane_identity
from ambit.state.store import StateStore
from ambit.xds.ca_client import CaClient
from ambit.xds.channel import TOKEN_PORT
from ambit.xds.client import XdsClient
from ambit.xds.discovery import control_plane_addresses

log = logging.getLogger(__name__)

Address = tuple[str, int]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6; a host name is resolved when connecting)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def bootstrap_addresses(texts: Sequence[str]) -> tuple[Address, ...]:
    return tuple(parse_address(t) for t in texts)


@dataclass(frozen=True, slots=True)
class NodeCredentialFiles:
    """Where the node credential the proxy shows the control plane is (PEM files)."""

    cert: Path
    key: Path
    trust_bundle: Path

    @classmethod
    def in_dir(cls, node_dir: Path) -> NodeCredentialFiles:
        """A node directory's: ``node-cert.pem``, ``node-key.pem`` and ``trust-bundle.pem``."""
        return cls(node_dir / "node-cert.pem", node_dir / "node-key.pem", node_dir / TRUST_BUNDLE_FILE)

    def write(self, cert: WorkloadCert, bundle_pem: bytes) -> None:
        """Write the node credential (the key 0600) and the trust bundle (what :meth:`read` reads)."""
        write_pem(self.key, cert.key_pem, mode=PRIVATE_FILE_MODE)
        write_pem(self.cert, cert.chain_pem, mode=PUBLIC_FILE_MODE)
        write_pem(self.trust_bundle, bundle_pem, mode=PUBLIC_FILE_MODE)

    def read(self) -> tuple[WorkloadCert, TrustBundle]:
        cert = WorkloadCert.from_pem(self.cert.read_bytes(), self.key.read_bytes())
        return cert, TrustBundle.from_file(self.trust_bundle)


@dataclass(frozen=True, slots=True)
class PodTokenCredential:
    """A pod with no certificate yet (a waypoint): its projected token and the mesh trust bundle."""

    token_file: Path
    trust_bundle: Path
    trust_domain: str

    def token(self) -> str:
        """The current token (re-read each time: the kubelet rotates it)."""
        return self.token_file.read_text().strip()

    def read(self) -> tuple[None, TrustBundle]:
        return None, TrustBundle.from_file(self.trust_bundle)


class ControlPlaneLink:
    """The xDS client, the CA client and the cache of one proxy; see the module docstring."""

    def __init__(
        self,
        *,
        credential: NodeCredentialFiles | PodTokenCredential,
        cache: ProxyCache,
        bootstrap: Sequence[Address],
        node_id: str,
        ca_bootstrap: Sequence[Address] = (),
    ) -> None:
        """``bootstrap``: xDS (and, for a node credential, CA) addresses to try before the state knows
        the control plane's endpoints; ``ca_bootstrap``: the token port's, for a pod token."""
        self.credential = credential
        self.cache = cache
        self.bootstrap = tuple(bootstrap)
        self.node_id = node_id
        self.store = StateStore()
        self.synced_from_cache = False
        self.xds: XdsClient | None = None
        self.ca: CaClient | None = None
        # live endpoints of the control plane first, the bootstrap addresses as the fallback
        self.addresses = control_plane_addresses(self.store, self.bootstrap)
        self.ca_addresses = (
            control_plane_addresses(self.store, tuple(ca_bootstrap), port=TOKEN_PORT)
            if isinstance(credential, PodTokenCredential)
            else self.addresses
        )
        self._node_cert: WorkloadCert | None = None
        self._bundle: TrustBundle | None = None

    @property
    def bundle(self) -> TrustBundle:
        """The trust bundle read by :meth:`open`."""
        assert self._bundle is not None, "open() first"
        return self._bundle

    async def open(self) -> CaClient:
        """Read the credential, restore the cached state, make the CA client (returned)."""
        node_cert, bundle = await asyncio.to_thread(self.credential.read)
        self._node_cert, self._bundle = node_cert, bundle
        await asyncio.to_thread(self.cache.ensure_directory)
        entries = await asyncio.to_thread(self.cache.load_state)
        if entries:
            self.store.replace(entries)
            self.synced_from_cache = True
        if isinstance(self.credential, PodTokenCredential):
            self.ca = CaClient(
                addresses=self.ca_addresses,
                cert=None,
                bundle=bundle,
                server_identity=control_plane_identity(self.credential.trust_domain),
                token=self.credential.token,
            )
        else:
            self.ca = CaClient(addresses=self.addresses, cert=node_cert, bundle=bundle)
        return self.ca

    async def restore_certificates(self, secrets: SecretManager) -> None:
        """Install the cached, unexpired workload certificates into ``secrets``."""
        clock = SystemClock()
        for cert in await asyncio.to_thread(self.cache.load_certs, clock.now()):
            try:
                secrets.install(cert)
            except ValueError as exc:
                log.info("cached certificate not used: %s", exc)

    def connect(self, certificates: CertSource, *, cert: WorkloadCert | None = None) -> XdsClient:
        """Start the xDS client (returned) and the cache writer of the store and ``certificates()``.

        ``cert`` is the certificate xDS presents (default: the node credential's; a waypoint's own).
        """
        assert self._bundle is not None, "open() first"
        shown = cert if cert is not None else self._node_cert
        assert shown is not None, "a pod-token link connects with the proxy's own certificate"
        self.xds = XdsClient(
            addresses=self.addresses,
            cert=shown,
            bundle=self._bundle,
            store=self.store,
            node_id=self.node_id,
        )
        self.xds.start()
        self.cache.start(self.store, certificates)
        return self.xds

    async def close_cache(self) -> None:
        """Stop the cache writer after a last write (while the proxy still holds its certificates)."""
        await self.cache.close()

    async def close(self) -> None:
        if self.xds is not None:
            await self.xds.close()
        if self.ca is not None:
            await self.ca.close()
