"""A proxy's on-disk cache: the last good xDS state and the workload certificates (survive the control plane).

Files, in a 0700 directory (ztunnel's: ``<cluster dir>/nodes/<node>/ztunnel-cache/``), each 0600 and replaced
atomically (temp file + fsync + rename, :func:`ambit.identity.certs.write_pem`):

* ``state.pb``: every :class:`~ambit.state.store.StateStore` entry as xDS wire bytes, a
  ``DeltaDiscoveryResponse`` whose ``resources`` are exactly what :func:`ambit.xds.codec.encode_resource`
  makes (so :mod:`ambit.xds.codec` stays the only wire ↔ model conversion);
* ``certs.json``: ``{identity: {"chain": PEM, "key": PEM}}`` of the workload certificates held.

:class:`ProxyCache` writes on change, at most once per ``interval`` (a cheap comparison of the
snapshot version and the certificates' expiry times, then the write in a thread), and once more on
:meth:`ProxyCache.close`. On start, :meth:`load_state` / :meth:`load_certs` read them back: an
unreadable file is logged and ignored (the proxy then waits for xDS as if there were no cache), a
resource that no longer decodes is skipped, and an expired certificate is not loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from ambit.identity.certs import CertError, WorkloadCert, write_pem
from ambit.model.identity import Identity
from ambit.state.snapshot import Entry
from ambit.state.store import StateStore
from ambit.xds import codec
from ambit.xds.pb.discovery.v1 import discovery_pb2

log = logging.getLogger(__name__)

STATE_FILE = "state.pb"
CERTS_FILE = "certs.json"
DIR_MODE = 0o700
FILE_MODE = 0o600
DEFAULT_INTERVAL = 0.5

CertSource = Callable[[], Mapping[Identity, WorkloadCert]]


def encode_state(entries: Mapping[str, Entry]) -> bytes:
    response = discovery_pb2.DeltaDiscoveryResponse(
        resources=[
            codec.encode_resource(name, version, value) for name, (version, value) in sorted(entries.items())
        ]
    )
    data: bytes = response.SerializeToString(deterministic=True)
    return data


def decode_state(data: bytes) -> dict[str, Entry]:
    response = discovery_pb2.DeltaDiscoveryResponse()
    response.ParseFromString(data)
    entries: dict[str, Entry] = {}
    for resource in response.resources:
        try:
            entries[resource.name] = (
                resource.version,
                codec.resource_from_any(resource.name, resource.resource),
            )
        except codec.CodecError as exc:
            log.warning("cached resource %s no longer decodes, skipped: %s", resource.name, exc)
    return entries


def encode_certs(certs: Mapping[Identity, WorkloadCert]) -> bytes:
    body = {
        str(identity): {"chain": cert.chain_pem.decode("ascii"), "key": cert.key_pem.decode("ascii")}
        for identity, cert in sorted(certs.items(), key=lambda item: str(item[0]))
    }
    return json.dumps(body, indent=1).encode()


def decode_certs(data: bytes, now: datetime) -> list[WorkloadCert]:
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("certs.json must hold an object")
    certs = []
    for name, item in body.items():
        try:
            cert = WorkloadCert.from_pem(item["chain"].encode("ascii"), item["key"].encode("ascii"))
        except (CertError, KeyError, TypeError, AttributeError, ValueError) as exc:
            log.warning("cached certificate of %s is unusable, skipped: %s", name, exc)
            continue
        if not isinstance(cert.identity, Identity) or str(cert.identity) != name:
            log.warning("cached certificate under %s names %s, skipped", name, cert.identity)
            continue
        if cert.expired(now):
            log.info("cached certificate of %s expired at %s, not loaded", name, cert.not_after)
            continue
        certs.append(cert)
    return certs


class ProxyCache:
    """Reads and (debounced) writes the cache directory; see the module docstring."""

    def __init__(self, directory: Path, *, interval: float = DEFAULT_INTERVAL) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self.writes = 0
        self._task: asyncio.Task[None] | None = None
        self._written_state: str | None = None
        self._written_certs: tuple[tuple[str, str], ...] | None = None

    def ensure_directory(self) -> None:
        self.directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.directory, DIR_MODE)

    # -- reading --------------------------------------------------------------------------------

    def load_state(self) -> dict[str, Entry]:
        path = self.directory / STATE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            entries = decode_state(data)
        except Exception as exc:  # a corrupt cache must never stop the proxy
            log.warning("ignoring unreadable state cache %s: %s", path, exc)
            return {}
        log.info("loaded %d cached resources from %s", len(entries), path)
        return entries

    def load_certs(self, now: datetime) -> list[WorkloadCert]:
        path = self.directory / CERTS_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return []
        try:
            return decode_certs(data, now)
        except Exception as exc:
            log.warning("ignoring unreadable certificate cache %s: %s", path, exc)
            return []

    # -- writing --------------------------------------------------------------------------------

    def start(self, store: StateStore, certs: CertSource) -> None:
        """Write whenever the state or the certificates change (checked every ``interval``)."""
        self._store, self._certs = store, certs
        # what was just loaded needs no rewrite
        self._written_state = store.current.version if len(store.current) else None
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="ztunnel-cache")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self.flush()

    async def flush(self) -> None:
        """Write now what changed since the last write."""
        snapshot = self._store.current
        certs = self._certs()
        cert_key = tuple(sorted((str(i), c.not_after.isoformat()) for i, c in certs.items()))
        state_changed = snapshot.version != self._written_state and len(snapshot) > 0
        certs_changed = cert_key != self._written_certs and (certs or self._written_certs is not None)
        if not state_changed and not certs_changed:
            return
        state_bytes = encode_state(snapshot.entries) if state_changed else None
        cert_bytes = encode_certs(certs) if certs_changed else None
        await asyncio.to_thread(self._write, state_bytes, cert_bytes)
        if state_changed:
            self._written_state = snapshot.version
        if certs_changed:
            self._written_certs = cert_key
        self.writes += 1

    def _write(self, state: bytes | None, certs: bytes | None) -> None:
        self.ensure_directory()
        if state is not None:
            write_pem(self.directory / STATE_FILE, state, mode=FILE_MODE)
        if certs is not None:
            write_pem(self.directory / CERTS_FILE, certs, mode=FILE_MODE)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing the ztunnel cache to %s failed", self.directory)
