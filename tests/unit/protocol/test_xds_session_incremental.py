"""``ServerSession.next_response`` given the names that changed answers as the full comparison does."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.protocol.xds import WILDCARD, DeltaRequest, DeltaResponse, ErrorDetail, ServerSession

T = "type.googleapis.com/ambit.workload.v1.Address"
NAMES = ["wl/a", "wl/b", "wl/c", "svc/x", "svc/y"]

versions_maps = st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["1", "2", "3"]))
steps = st.one_of(
    st.tuples(st.just("publish"), versions_maps),
    st.tuples(st.just("flush"), st.none()),
    st.tuples(st.just("ack"), st.none()),
    st.tuples(st.just("nack"), st.lists(st.sampled_from(NAMES), max_size=2)),
    st.tuples(st.just("subscribe"), st.lists(st.sampled_from([*NAMES, WILDCARD]), max_size=2)),
    st.tuples(st.just("unsubscribe"), st.lists(st.sampled_from([*NAMES, WILDCARD]), max_size=2)),
)


def state(session: ServerSession) -> tuple[object, ...]:
    return (dict(session.client_versions), dict(session.rejected), session.pending_nonce, session.wildcard)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.sampled_from([*NAMES, WILDCARD]), max_size=3),
    st.dictionaries(st.sampled_from(NAMES), st.sampled_from(["1", "2", "0"])),
    st.lists(steps, max_size=25),
)
def test_incremental_next_response_equals_full_comparison(
    subscribe: list[str], initial: dict[str, str], sequence: list[tuple[str, object]]
) -> None:
    full, incremental = ServerSession(T), ServerSession(T)
    first = DeltaRequest(T, subscribe=tuple(subscribe), initial_versions=initial)
    assert full.on_request(first) == incremental.on_request(first)
    previous: dict[str, str] = {}
    current: dict[str, str] = {}
    changed: frozenset[str] = frozenset()
    outstanding: DeltaResponse | None = None
    for kind, arg in sequence:
        request: DeltaRequest | None = None
        if kind == "publish":
            assert isinstance(arg, dict)
            previous, current = current, dict(arg)
            changed = frozenset(
                n for n in current.keys() | previous.keys() if current.get(n) != previous.get(n)
            )
        elif kind == "flush":
            expected = full.next_response(current, system_version="v")
            got = incremental.next_response(current, system_version="v", previous=previous, changed=changed)
            assert got == expected
            outstanding = expected or outstanding
        elif kind == "ack" and outstanding is not None:
            request = DeltaRequest(T, response_nonce=outstanding.nonce)
            outstanding = None
        elif kind == "nack" and outstanding is not None:
            assert isinstance(arg, list)
            request = DeltaRequest(
                T, response_nonce=outstanding.nonce, error=ErrorDetail(3, "bad", tuple(arg))
            )
            outstanding = None
        elif kind in ("subscribe", "unsubscribe"):
            assert isinstance(arg, list)
            request = DeltaRequest(T, **{kind: tuple(arg)})  # type: ignore[arg-type]
        if request is not None:
            assert full.on_request(request) == incremental.on_request(request)
        assert state(full) == state(incremental)
