"""Projected pod tokens: the kubelet's part of a pod's identity bootstrap.

As Kubernetes projects a bound ServiceAccount token into every pod, :class:`TokenProjector` writes a
pod-bound token (:mod:`ambit.identity.tokens`) to ``<cluster>/pods/<uid>/token`` (directory 0700, file
0600, replaced atomically), renews it at 80 % of its TTL (the kubelet's rule), and removes it with the
pod. A waypoint reads it (``AMBIT_TOKEN_FILE``) to ask the CA for its first certificate; the CA
accepts it only while the pod with that uid exists. Beside it goes the mesh trust bundle
(``trust-bundle.pem``, ``AMBIT_TRUST_BUNDLE_FILE``; Kubernetes projects ``ca.crt`` the same way, Istio
the ``istio-ca-root-cert`` ConfigMap), which the pod uses to verify the control plane.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ambit.identity.certs import PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, write_pem
from ambit.identity.tokens import DEFAULT_TOKEN_TTL, TokenSigner, refresh_at

TOKEN_FILE_ENV = "AMBIT_TOKEN_FILE"
TRUST_BUNDLE_FILE_ENV = "AMBIT_TRUST_BUNDLE_FILE"
TOKEN_FILE = "token"
BUNDLE_FILE = "trust-bundle.pem"


class TokenProjector:
    def __init__(
        self,
        signer: TokenSigner,
        pods_dir: Path,
        *,
        trust_bundle: bytes = b"",
        ttl: timedelta = DEFAULT_TOKEN_TTL,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.signer = signer
        self.pods_dir = pods_dir
        self.trust_bundle = trust_bundle
        self.ttl = ttl
        self.clock = clock
        self._renew_at: dict[str, datetime] = {}

    def path(self, uid: str) -> Path:
        return self.pods_dir / uid / TOKEN_FILE

    def bundle_path(self, uid: str) -> Path:
        return self.pods_dir / uid / BUNDLE_FILE

    def project(self, *, uid: str, namespace: str, name: str, service_account: str) -> bool:
        """Write the pod's token when it has none or it is due; whether it wrote."""
        now = self.clock()
        due = self._renew_at.get(uid)
        if due is not None and now < due:
            return False
        token = self.signer.issue(
            namespace=namespace,
            service_account=service_account,
            pod_name=name,
            pod_uid=uid,
            now=now,
            ttl=self.ttl,
        )
        path = self.path(uid)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_pem(path, token.encode("ascii"), mode=PRIVATE_FILE_MODE)
        if self.trust_bundle and due is None:
            write_pem(self.bundle_path(uid), self.trust_bundle, mode=PUBLIC_FILE_MODE)
        self._renew_at[uid] = refresh_at(now, now + self.ttl)
        return True

    def remove(self, uid: str) -> None:
        self._renew_at.pop(uid, None)
        shutil.rmtree(self.pods_dir / uid, ignore_errors=True)
