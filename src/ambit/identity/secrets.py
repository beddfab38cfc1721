"""The secret manager: one cached, self-refreshing certificate per workload identity.

Owns the certificate lifecycle inside a proxy (ztunnel's ``SecretManager``):

* ``get`` answers from the cache while the certificate has not expired, else fetches; concurrent
  callers for one identity share a single fetch; an expired certificate is never returned.
* after the first successful fetch a background task per identity refreshes the certificate at its
  half-life. A failed refresh **keeps the still-valid certificate** and retries with jittered
  exponential backoff (initial 1 s, doubling, capped at 150 s), and never later than the old
  certificate's expiry. Once it has expired it is dropped, and ``get`` must fetch or fail.
* jitter is *equal jitter*: attempt ``n`` waits ``c/2 + uniform(0, c/2)`` with
  ``c = min(max, initial * 2**(n-1))``, so waits keep growing (unlike full jitter, which may
  retry at once) while retries of many identities still spread out.

The fetch function and the clock are injected, so tests drive time by hand (``ambit.testing.clock``).
Tasks are created on the running loop and referenced until they finish; ``close`` cancels them all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from ambit.identity.certs import WorkloadCert
from ambit.model.identity import Identity

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL = 1.0
DEFAULT_BACKOFF_MAX = 150.0
_MAX_EXPONENT = 64

T = TypeVar("T")
Fetch = Callable[[Identity], Awaitable[WorkloadCert]]


class Clock(Protocol):
    """Wall-clock time (tz-aware UTC) and sleeping, injectable for tests."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: ``datetime.now(UTC)`` and ``asyncio.sleep``."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class SecretUnavailable(Exception):
    """No valid certificate can be provided for an identity; the message says why."""


def backoff_delay(failures: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Seconds to wait after ``failures`` consecutive failures (>= 1), with equal jitter.

    The result lies in ``[c/2, c]`` where ``c = min(maximum, initial * 2**(failures-1))``.
    """
    if failures < 1:
        raise ValueError(f"failures must be at least 1, got {failures}")
    ceiling = min(maximum, initial * 2.0 ** min(failures - 1, _MAX_EXPONENT))
    return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


@dataclass
class _Entry:
    """Mutable per-identity state, owned by the manager and touched only on its event loop."""

    cert: WorkloadCert | None = None
    fetching: asyncio.Task[WorkloadCert] | None = None
    refresher: asyncio.Task[None] | None = None
    last_error: str | None = None
    forgotten: bool = False


class SecretManager:
    """Caches and refreshes one certificate per identity; see the module docstring for the rules."""

    def __init__(
        self,
        fetch: Fetch,
        *,
        clock: Clock | None = None,
        backoff_initial: float = DEFAULT_BACKOFF_INITIAL,
        backoff_max: float = DEFAULT_BACKOFF_MAX,
        rng: random.Random | None = None,
    ) -> None:
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._fetch = fetch
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._rng = rng if rng is not None else random.Random()
        self._entries: dict[Identity, _Entry] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # -- public API ---------------------------------------------------------------------------

    async def get(self, identity: Identity) -> WorkloadCert:
        """A certificate for ``identity`` that has not expired; raises SecretUnavailable otherwise."""
        if self._closed:
            raise SecretUnavailable(f"secret manager is closed; no certificate for {identity}")
        entry = self._entries.setdefault(identity, _Entry())
        cert = self._current(entry)
        if cert is not None:
            return cert
        return await self._fetch_shared(identity, entry)

    def install(self, cert: WorkloadCert) -> None:
        """Seed the cache with a certificate kept from before (e.g. read back from tmpfs after a restart).

        It is used until it expires and refreshed at its half-life like a fetched one. A newer
        certificate already in the cache is kept. Must be called on the running event loop.
        """
        if self._closed:
            raise SecretUnavailable("secret manager is closed")
        if not isinstance(cert.identity, Identity):
            raise ValueError(f"{cert.identity} is not a workload identity")
        if cert.expired(self._clock.now()):
            raise ValueError(f"certificate for {cert.identity} expired at {cert.not_after}")
        entry = self._entries.setdefault(cert.identity, _Entry())
        current = self._current(entry)
        if current is None or cert.not_after > current.not_after:
            entry.cert = cert
        self._ensure_refresher(cert.identity, entry)

    def forget(self, identity: Identity) -> None:
        """Drop the identity's certificate and stop refreshing it (its last pod left the node)."""
        entry = self._entries.pop(identity, None)
        if entry is None:
            return
        entry.forgotten = True
        entry.cert = None
        if entry.refresher is not None:
            entry.refresher.cancel()

    def snapshot(self) -> dict[Identity, WorkloadCert]:
        """Every identity's current unexpired certificate (for config dumps)."""
        result: dict[Identity, WorkloadCert] = {}
        for identity, entry in self._entries.items():
            cert = self._current(entry)
            if cert is not None:
                result[identity] = cert
        return result

    def last_error(self, identity: Identity) -> str | None:
        """Why the most recent fetch for ``identity`` failed, or None if it succeeded (or never ran)."""
        entry = self._entries.get(identity)
        return entry.last_error if entry is not None else None

    async def close(self) -> None:
        """Cancel every refresher and fetch, and wait for them to finish."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._entries.clear()

    # -- internals ----------------------------------------------------------------------------

    def _current(self, entry: _Entry) -> WorkloadCert | None:
        """The entry's certificate unless it has expired, in which case it is dropped."""
        if entry.cert is not None and entry.cert.expired(self._clock.now()):
            log.info("certificate for %s expired at %s; dropped", entry.cert.identity, entry.cert.not_after)
            entry.cert = None
        return entry.cert

    def _spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # marks it retrieved even when no caller awaited the shared fetch
        if exc is not None and not isinstance(exc, SecretUnavailable):
            log.error("secret manager task %s failed", task.get_name(), exc_info=exc)

    async def _fetch_shared(self, identity: Identity, entry: _Entry) -> WorkloadCert:
        if entry.fetching is None:
            entry.fetching = self._spawn(self._fetch_once(identity, entry), f"fetch-cert {identity}")
        task = entry.fetching
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and (current is None or not current.cancelling()):
                raise SecretUnavailable(f"secret manager stopped while fetching {identity}") from None
            raise

    async def _fetch_once(self, identity: Identity, entry: _Entry) -> WorkloadCert:
        try:
            try:
                cert = await self._fetch(identity)
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                raise self._failed(entry, f"cannot fetch a certificate for {identity}: {reason}") from exc
            if cert.identity != identity:
                raise self._failed(entry, f"fetched certificate names {cert.identity}, expected {identity}")
            if cert.expired(self._clock.now()):
                raise self._failed(
                    entry, f"fetched certificate for {identity} already expired at {cert.not_after}"
                )
            entry.cert = cert
            entry.last_error = None
            if not entry.forgotten and not self._closed:
                self._ensure_refresher(identity, entry)
            return cert
        finally:
            entry.fetching = None

    @staticmethod
    def _failed(entry: _Entry, reason: str) -> SecretUnavailable:
        entry.last_error = reason
        return SecretUnavailable(reason)

    def _ensure_refresher(self, identity: Identity, entry: _Entry) -> None:
        if entry.refresher is None or entry.refresher.done():
            entry.refresher = self._spawn(self._refresh_loop(identity, entry), f"refresh-cert {identity}")

    async def _refresh_loop(self, identity: Identity, entry: _Entry) -> None:
        failures = 0
        while not entry.forgotten:
            now = self._clock.now()
            cert = self._current(entry)
            if cert is not None and now < cert.refresh_at:
                failures = 0
                await self._clock.sleep((cert.refresh_at - now).total_seconds())
                continue
            try:
                await self._fetch_shared(identity, entry)
            except SecretUnavailable as exc:
                failures += 1
                delay = backoff_delay(
                    failures, initial=self._backoff_initial, maximum=self._backoff_max, rng=self._rng
                )
                cert = self._current(entry)
                if cert is not None:
                    delay = min(delay, max((cert.not_after - self._clock.now()).total_seconds(), 0.0))
                log.warning(
                    "refreshing the certificate for %s failed (attempt %d): %s; retrying in %.1f s; %s",
                    identity,
                    failures,
                    exc,
                    delay,
                    f"keeping the current one until {cert.not_after}" if cert else "no valid certificate",
                )
                await self._clock.sleep(delay)
            else:
                failures = 0
