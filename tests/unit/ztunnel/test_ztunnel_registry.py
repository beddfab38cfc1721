"""The live-connection registry: re-authorization on config changes; the sync gate."""

from __future__ import annotations

import asyncio

from ambit.model.identity import Identity
from ambit.model.policy import Action, Authorization, Clause, Match, Rule, Scope, StringMatch
from ambit.model.workload import TunnelProtocol, Workload
from ambit.state.snapshot import Snapshot, resource_name
from ambit.state.store import StateStore
from ambit.ztunnel.connections import ConnectionRegistry, PolicyRevoked

SLEEP = Identity("cluster.local", "default", "sleep")
OTHER = Identity("cluster.local", "default", "other")
B = Workload("b", "b", "default", "web", "n2", ("10.244.2.3",), TunnelProtocol.HBONE)
DENY_SLEEP = Authorization(
    "deny-sleep",
    "default",
    Scope.NAMESPACE,
    Action.DENY,
    (Rule((Clause((Match(principals=(StringMatch.parse("cluster.local/ns/default/sa/sleep"),)),)),)),),
)


class FakeEnd:
    """Stands in for a Duplex: records aborts."""

    def __init__(self) -> None:
        self.aborted: list[BaseException | None] = []

    def abort(self, reason: BaseException | None = None) -> None:
        self.aborted.append(reason)


def snap(*values: Workload | Authorization) -> Snapshot:
    return Snapshot.build({resource_name(v): (str(hash(v)), v) for v in values})


def register(
    registry: ConnectionRegistry, snapshot: Snapshot, peer: Identity | None
) -> tuple[FakeEnd, FakeEnd]:
    ends = (FakeEnd(), FakeEnd())
    registry.register(
        B,
        peer,
        "10.244.1.2",
        ("10.244.2.3", 8080),
        ends,
        policies=snapshot.policies_for(B),  # type: ignore[arg-type]
    )
    return ends


def test_recheck_aborts_only_the_connections_now_denied() -> None:
    registry = ConnectionRegistry()
    before = snap(B)
    sleep_ends = register(registry, before, SLEEP)
    other_ends = register(registry, before, OTHER)
    assert registry.recheck(before) == 0

    after = snap(B, DENY_SLEEP)
    assert registry.recheck(after) == 1
    assert all(isinstance(r, PolicyRevoked) for end in sleep_ends for r in end.aborted)
    assert [len(end.aborted) for end in sleep_ends] == [1, 1]
    assert other_ends[0].aborted == []
    assert len(registry) == 1 and registry.revoked_total == 1
    revoked = [c for c in registry if c.peer == SLEEP]
    assert revoked == []


def test_a_workload_gone_from_the_config_closes_its_connections() -> None:
    registry = ConnectionRegistry()
    ends = register(registry, snap(B), SLEEP)
    assert registry.recheck(snap()) == 1
    assert ends[0].aborted


def test_plaintext_connections_are_rechecked_too() -> None:
    registry = ConnectionRegistry()
    ends = register(registry, snap(B), None)
    strict = Authorization(
        "strict",
        "default",
        Scope.NAMESPACE,
        Action.DENY,
        (Rule((Clause((Match(not_principals=(StringMatch.parse("*"),)),)),)),),
    )
    assert registry.recheck(snap(B, strict)) == 1
    assert ends[0].aborted


async def test_follow_coalesces_changes_into_one_recheck_on_the_next_iteration() -> None:
    store = StateStore()
    store.apply({resource_name(B): ("1", B)})
    registry = ConnectionRegistry()
    registry.follow(store)
    ends = register(registry, store.current, SLEEP)
    calls = 0
    original = registry.recheck

    def counting(snapshot: Snapshot) -> int:
        nonlocal calls
        calls += 1
        return original(snapshot)

    registry.recheck = counting  # type: ignore[method-assign]
    store.apply({resource_name(DENY_SLEEP): ("1", DENY_SLEEP)})
    store.apply({resource_name(DENY_SLEEP): ("2", DENY_SLEEP)})
    assert not ends[0].aborted  # not inside the writer's call
    await asyncio.sleep(0)
    assert calls == 1
    assert ends[0].aborted
    registry.close()
