"""SecretManager with a fake clock: caching, half-life refresh, backoff, expiry, sharing, forgetting."""

from __future__ import annotations

import asyncio
import random
import re
from datetime import UTC, datetime, timedelta

import pytest

from ambit.identity.certs import WorkloadCert
from ambit.identity.secrets import SecretManager, SecretUnavailable, SystemClock, backoff_delay
from ambit.model.identity import Identity
from ambit.testing.clock import FakeClock
from ambit.testing.pki import Pki

WEB = Identity("cluster.local", "default", "web")
DB = Identity("cluster.local", "default", "db")
DAY = 24 * 3600.0
HALF_DAY = 12 * 3600.0


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0))


class FakeCa:
    """A fetch function backed by the test PKI; can be made to fail or to wait at a gate."""

    def __init__(self, pki: Pki, clock: FakeClock, ttl: timedelta = timedelta(hours=24)) -> None:
        self.pki, self.clock, self.ttl = pki, clock, ttl
        self.calls: list[Identity] = []
        self.failure: Exception | None = None
        self.gate: asyncio.Event | None = None
        self.issued: list[WorkloadCert] = []

    async def __call__(self, identity: Identity) -> WorkloadCert:
        self.calls.append(identity)
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        cert = self.pki.issue(identity, ttl=self.ttl, not_before=self.clock.now())
        self.issued.append(cert)
        return cert


async def test_get_fetches_once_then_serves_from_cache(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock)
    first = await manager.get(WEB)
    assert first.identity == WEB
    clock.advance(3600)
    assert await manager.get(WEB) is first
    assert ca.calls == [WEB]
    assert manager.snapshot() == {WEB: first}
    await manager.close()


async def test_refresh_happens_at_half_life_and_not_before(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock)
    first = await manager.get(WEB)
    await clock.settle()
    assert clock.pending == [HALF_DAY]
    await clock.run_for(HALF_DAY - 1)
    assert ca.calls == [WEB]
    assert await manager.get(WEB) is first
    await clock.run_for(1)
    assert ca.calls == [WEB, WEB]
    second = await manager.get(WEB)
    assert second is ca.issued[1] and second is not first
    # The next refresh is scheduled at the new certificate's half-life.
    assert clock.pending == [HALF_DAY]
    await manager.close()


async def test_failed_refresh_keeps_serving_the_valid_certificate(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock, rng=random.Random(1))
    first = await manager.get(WEB)
    ca.failure = ConnectionError("CA unreachable")
    await clock.run_for(HALF_DAY + 600)
    assert len(ca.calls) > 2  # refresh tried and retried
    assert await manager.get(WEB) is first
    assert manager.snapshot() == {WEB: first}
    assert manager.last_error(WEB) == f"cannot fetch a certificate for {WEB}: CA unreachable"
    # The CA comes back: the next retry replaces the certificate.
    ca.failure = None
    await clock.run_for(150)
    assert await manager.get(WEB) is ca.issued[-1] is not first
    assert manager.last_error(WEB) is None
    await manager.close()


async def test_backoff_grows_is_capped_and_jittered(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock, rng=random.Random(42))
    await manager.get(WEB)
    ca.failure = RuntimeError("boom")
    await clock.run_for(HALF_DAY + 3600)
    delays = clock.sleeps[1:]  # the first sleep is the wait for the half-life
    assert clock.sleeps[0] == HALF_DAY
    assert len(delays) >= 20
    expected_rng = random.Random(42)
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(150.0, 2.0 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
        assert delay == backoff_delay(attempt, initial=1.0, maximum=150.0, rng=expected_rng)
    assert max(delays) <= 150.0
    assert delays[7] > delays[0] * 8  # grows: attempt 8 waits at least 64 s, attempt 1 at most 1 s
    capped = delays[10:]
    assert all(75.0 <= d <= 150.0 for d in capped)
    assert len(set(capped)) == len(capped)  # jittered, not a fixed interval
    await manager.close()


async def test_retry_is_scheduled_no_later_than_expiry(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock, ttl=timedelta(hours=1))
    manager = SecretManager(ca, clock=clock, backoff_initial=10_000, backoff_max=10_000)
    first = await manager.get(WEB)
    ca.failure = RuntimeError("down")
    await clock.run_for(1800)  # half-life: refresh fails
    await clock.settle()
    remaining = (first.not_after - clock.now()).total_seconds()
    assert clock.sleeps[-1] == remaining == 1800.0
    await manager.close()


async def test_expired_certificate_is_never_returned(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock, ttl=timedelta(hours=1))
    manager = SecretManager(ca, clock=clock)
    first = await manager.get(WEB)
    ca.failure = RuntimeError("CA down")
    await clock.run_for((first.not_after - clock.now()).total_seconds() - 1)
    assert await manager.get(WEB) is first  # one second left: still served
    await clock.run_for(1)
    assert clock.now() == first.not_after
    with pytest.raises(SecretUnavailable, match="CA down"):
        await manager.get(WEB)
    assert manager.snapshot() == {}
    await clock.run_for(3600)
    with pytest.raises(SecretUnavailable):
        await manager.get(WEB)
    await manager.close()


async def test_get_fetches_again_after_expiry_when_the_ca_is_back(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock, ttl=timedelta(hours=1))
    manager = SecretManager(ca, clock=clock, backoff_initial=100_000, backoff_max=100_000)
    first = await manager.get(WEB)
    ca.failure = RuntimeError("CA down")
    await clock.run_for(3600)  # refresh failed at half-life, the retry waits for expiry and fails too
    ca.failure = None
    fresh = await manager.get(WEB)
    assert fresh is not first and fresh.valid_at(clock.now())
    await manager.close()


async def test_fetched_expired_or_wrong_certificate_is_refused(pki: Pki, clock: FakeClock) -> None:
    async def stale(identity: Identity) -> WorkloadCert:
        return pki.issue(identity, ttl=timedelta(hours=1), not_before=clock.now() - timedelta(hours=2))

    async def wrong(identity: Identity) -> WorkloadCert:
        return pki.issue(DB)

    for fetch, reason in ((stale, "expired at"), (wrong, re.escape(f"names {DB}, expected {WEB}"))):
        manager = SecretManager(fetch, clock=clock)
        with pytest.raises(SecretUnavailable, match=reason):
            await manager.get(WEB)
        assert manager.snapshot() == {}
        await manager.close()


async def test_concurrent_gets_share_one_fetch(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    ca.gate = asyncio.Event()
    manager = SecretManager(ca, clock=clock)
    waiters = [asyncio.ensure_future(manager.get(WEB)) for _ in range(5)]
    other = asyncio.ensure_future(manager.get(DB))
    await clock.settle()
    assert sorted(map(str, ca.calls)) == sorted(map(str, [WEB, DB]))
    ca.gate.set()
    results = await asyncio.gather(*waiters)
    assert all(r is results[0] for r in results)
    assert (await other).identity == DB
    assert ca.calls.count(WEB) == 1
    await manager.close()


async def test_concurrent_gets_share_one_failure(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    ca.gate = asyncio.Event()
    ca.failure = TimeoutError()
    manager = SecretManager(ca, clock=clock)
    waiters = [asyncio.ensure_future(manager.get(WEB)) for _ in range(3)]
    await clock.settle()
    ca.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, SecretUnavailable) and "TimeoutError" in str(r) for r in results)
    assert ca.calls == [WEB]
    await manager.close()


async def test_cancelling_one_waiter_does_not_cancel_the_shared_fetch(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    ca.gate = asyncio.Event()
    manager = SecretManager(ca, clock=clock)
    impatient = asyncio.ensure_future(manager.get(WEB))
    patient = asyncio.ensure_future(manager.get(WEB))
    await clock.settle()
    impatient.cancel()
    await clock.settle()
    ca.gate.set()
    assert (await patient).identity == WEB
    assert impatient.cancelled()
    assert ca.calls == [WEB]
    await manager.close()


async def test_forget_stops_refreshing(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock)
    await manager.get(WEB)
    await manager.get(DB)
    await clock.settle()
    assert clock.pending == [HALF_DAY, HALF_DAY]
    manager.forget(WEB)
    manager.forget(Identity("cluster.local", "x", "never-seen"))  # no-op
    await clock.settle()
    assert clock.pending == [HALF_DAY]
    await clock.run_for(2 * DAY)
    assert ca.calls.count(WEB) == 1
    assert ca.calls.count(DB) > 1
    assert set(manager.snapshot()) == {DB}
    await manager.close()


async def test_forget_during_fetch_does_not_start_a_refresher(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    ca.gate = asyncio.Event()
    manager = SecretManager(ca, clock=clock)
    waiter = asyncio.ensure_future(manager.get(WEB))
    await clock.settle()
    manager.forget(WEB)
    ca.gate.set()
    assert (await waiter).identity == WEB  # the caller still gets its answer
    await clock.settle()
    assert clock.pending == []
    assert manager.snapshot() == {}
    await manager.close()


async def test_install_seeds_the_cache_and_is_refreshed(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock)
    kept = pki.issue(WEB, ttl=timedelta(hours=2), not_before=clock.now() - timedelta(minutes=30))
    manager.install(kept)
    assert await manager.get(WEB) is kept
    assert ca.calls == []
    await clock.run_for(1800)  # half-life of the installed certificate
    assert ca.calls == [WEB]
    with pytest.raises(ValueError, match="expired"):
        manager.install(pki.issue(DB, ttl=timedelta(hours=1), not_before=clock.now() - timedelta(hours=3)))
    await manager.close()


async def test_close_cancels_everything(pki: Pki, clock: FakeClock) -> None:
    ca = FakeCa(pki, clock)
    manager = SecretManager(ca, clock=clock)
    await manager.get(WEB)
    ca.gate = asyncio.Event()
    pending = asyncio.ensure_future(manager.get(DB))
    await clock.settle()
    await manager.close()
    with pytest.raises(SecretUnavailable, match="stopped while fetching"):
        await pending
    assert clock.pending == []
    with pytest.raises(SecretUnavailable, match="closed"):
        await manager.get(WEB)
    assert manager.snapshot() == {}


def test_backoff_delay_bounds() -> None:
    rng = random.Random(0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (8, 128.0), (9, 150.0), (10_000, 150.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff_delay(failures, initial=1.0, maximum=150.0, rng=rng) <= ceiling
    with pytest.raises(ValueError, match="at least 1"):
        backoff_delay(0, initial=1.0, maximum=150.0, rng=rng)


def test_invalid_backoff_settings_are_refused() -> None:
    async def fetch(identity: Identity) -> WorkloadCert:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="backoff"):
        SecretManager(fetch, backoff_initial=0)
    with pytest.raises(ValueError, match="backoff"):
        SecretManager(fetch, backoff_initial=10, backoff_max=5)


async def test_system_clock() -> None:
    clock = SystemClock()
    before = datetime.now(UTC)
    await clock.sleep(0.001)
    await clock.sleep(-1)
    assert clock.now() >= before and clock.now().tzinfo is not None


async def test_fake_clock_wakes_only_due_sleepers() -> None:
    clock = FakeClock()
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.ensure_future(sleeper("a", 10)), asyncio.ensure_future(sleeper("b", 20))]
    await clock.settle()
    assert clock.pending == [10.0, 20.0]
    clock.advance(15)
    await clock.settle()
    assert woke == ["a"] and clock.pending == [5.0]
    tasks[1].cancel()
    await clock.settle()
    assert clock.pending == []
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
