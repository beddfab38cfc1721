"""`H2FastPath` on its own, against the invariants stated at the top of `protocol/h2fastpath.py`.

No h2 here: a stub owner records what would go to h2 (`feed`), connection and stream errors, and
windows that opened. Hypothesis drives (1) arbitrary read boundaries over one byte stream and (2)
arbitrary interleavings of received DATA, consumed bytes, WINDOW_UPDATEs, SETTINGS initial-window
changes and sends, checking the two flow-control ledgers after every step.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field

from h2.errors import ErrorCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.protocol import h2frames
from ambit.protocol.h2fastpath import H2_DEFAULT_WINDOW, H2FastPath
from ambit.protocol.hbone_events import DataReceived, Event, StreamReset

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PING, PRIORITY, UNKNOWN = 0x6, 0x2, 0xA


@dataclass
class StubH2:
    max_outbound_frame_size: int = 16_384

    def data_to_send(self, amount: int | None = None) -> bytes:
        return b""


Trace = list[tuple[str, object]]


@dataclass
class Owner:
    """Plays `HboneConnection` for the fast path: records everything in order in `trace`."""

    stream_window: int = 1 << 20
    connection_window: int = 1 << 22
    client_side: bool = True
    trace: Trace = field(default_factory=list)
    failed: list[ErrorCodes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fast = H2FastPath(
            StubH2(),
            client_side=self.client_side,
            stream_window=self.stream_window,
            connection_window=self.connection_window,
            max_inbound_frame_size=1 << 20,
            send_frame_size=16_384,
            feed=self.feed,
            fail=self.fail,
            reset=self.reset,
            window_opened=self.window_opened,
        )

    def _events_so_far(self, out: list[Event]) -> None:
        self.trace += [("event", ev) for ev in out]
        out.clear()

    def feed(self, data: bytes, out: list[Event]) -> None:
        self._events_so_far(out)
        self.trace.append(("h2", bytes(data)))

    def fail(self, code: ErrorCodes, reason: str, out: list[Event]) -> None:
        self._events_so_far(out)
        self.failed.append(code)
        self.trace.append(("fail", int(code)))
        self.fast.stop(reason)

    def reset(self, stream_id: int, code: int) -> None:
        self.fast.forget(stream_id)
        self.trace.append(("reset", (stream_id, int(code))))

    def window_opened(self, stream_id: int, out: list[Event]) -> None:
        self._events_so_far(out)
        self.trace.append(("opened", stream_id))

    def receive(self, data: bytes) -> None:
        self.trace += [("event", ev) for ev in self.fast.receive(data)]


def _frame(ftype: int, flags: int, sid: int, payload: bytes) -> bytes:
    n = len(payload)
    return struct.pack(">BHBBL", n >> 16, n & 0xFFFF, ftype, flags, sid) + payload


def _normalised(trace: Trace) -> Trace:
    """Merge what read boundaries may split: adjacent bytes for h2, adjacent DATA of one stream."""
    merged: Trace = []
    for kind, value in trace:
        if merged and kind == "h2" and merged[-1][0] == "h2":
            prev = merged[-1][1]
            assert isinstance(prev, bytes) and isinstance(value, bytes)
            merged[-1] = ("h2", prev + value)
            continue
        if merged and isinstance(value, DataReceived) and merged[-1][0] == "event":
            prev_ev = merged[-1][1]
            if isinstance(prev_ev, DataReceived) and prev_ev.stream_id == value.stream_id:
                total = prev_ev.flow_controlled_length + value.flow_controlled_length
                merged[-1] = ("event", DataReceived(value.stream_id, prev_ev.data + value.data, total))
                continue
        merged.append((kind, value))
    return merged


# ---------------------------------------------------------------- 1. read boundaries

OPEN = (1, 3)  # tunnels that receive and send; 5 is not a tunnel (h2 judges its frames)

payloads = st.binary(max_size=3000)
frames = st.one_of(
    st.builds(lambda sid, body: _frame(h2frames.DATA, 0, sid, body), st.sampled_from((1, 3, 5)), payloads),
    st.builds(
        lambda sid, body, end: _frame(h2frames.DATA, h2frames.END_STREAM if end else 0, sid, body),
        st.sampled_from((1, 3)),
        payloads,
        st.booleans(),
    ),
    st.builds(
        lambda sid, body, pad: _frame(h2frames.DATA, h2frames.PADDED, sid, bytes([pad]) + body + bytes(pad)),
        st.sampled_from((1, 3)),
        st.binary(max_size=200),
        st.integers(0, 40),
    ),
    st.builds(h2frames.window_update, st.sampled_from((0, 1, 3, 7)), st.integers(0, 5000)),
    st.builds(lambda body: _frame(PING, 0, 0, body), st.binary(min_size=8, max_size=8)),
    st.builds(lambda body: _frame(PRIORITY, 0, 3, body), st.binary(min_size=5, max_size=5)),
    st.builds(lambda body: _frame(UNKNOWN, 0, 0, body), st.binary(max_size=100)),
)


def _run(wire: bytes, cuts: list[int], client_side: bool) -> Owner:
    owner = Owner(client_side=client_side)
    for sid in OPEN:
        owner.fast.open_receive(sid)
        owner.fast.open_send(sid, H2_DEFAULT_WINDOW)
    bounds = [0, *sorted(c % (len(wire) + 1) for c in cuts), len(wire)]
    for start, stop in itertools.pairwise(bounds):
        owner.receive(wire[start:stop])
    return owner


@settings(max_examples=150, deadline=None)
@given(
    body=st.lists(frames, max_size=25),
    cuts=st.lists(st.integers(0, 200_000), max_size=30),
    client_side=st.booleans(),
)
def test_any_read_boundaries_give_the_same_frames_and_events(
    body: list[bytes], cuts: list[int], client_side: bool
) -> None:
    wire = (b"" if client_side else PREFACE) + b"".join(body)
    whole = _run(wire, [], client_side)
    chopped = _run(wire, cuts, client_side)
    assert _normalised(chopped.trace) == _normalised(whole.trace)
    single_bytes = _run(wire, list(range(len(wire))) if len(wire) < 3000 else [], client_side)
    assert _normalised(single_bytes.trace) == _normalised(whole.trace)
    assert not whole.failed
    _h2_windows_never_move(whole.trace, client_side)


def _h2_windows_never_move(trace: Trace, client_side: bool) -> None:
    """h2 sees DATA only as empty copies, and WINDOW_UPDATE only when the fast path did not apply it."""
    fed = b"".join(v for k, v in trace if k == "h2" and isinstance(v, bytes))
    pos = 0 if client_side else len(PREFACE)
    while pos < len(fed):
        length, ftype, _flags, sid = h2frames.parse_header(fed, pos)
        if ftype == h2frames.DATA:
            assert length == 0
        elif ftype == h2frames.WINDOW_UPDATE:
            assert h2frames.window_increment(fed, pos + 9) == 0 or sid not in (0, *OPEN)
        pos += 9 + length


def test_payload_of_a_whole_stream_survives_one_byte_reads() -> None:
    body = bytes(range(256)) * 40
    wire = _frame(h2frames.DATA, 0, 1, body[:5000]) + _frame(
        h2frames.DATA, h2frames.END_STREAM, 1, body[5000:]
    )
    owner = _run(wire, list(range(len(wire))), client_side=True)
    got = b"".join(v.data for k, v in owner.trace if isinstance(v, DataReceived))
    assert got == body
    assert ("h2", h2frames.data_header(1, 0, h2frames.END_STREAM)) in owner.trace, (
        "END_STREAM reaches h2 empty"
    )


# ---------------------------------------------------------------- 2. window sequences


@dataclass
class Ledger:
    """What each side has been told, kept from the wire alone."""

    received: dict[int, int] = field(default_factory=dict)  # admitted DATA bytes (0: the connection)
    acked: dict[int, int] = field(default_factory=dict)
    credited: dict[int, int] = field(default_factory=dict)  # WINDOW_UPDATE increments we sent
    sent: dict[int, int] = field(default_factory=dict)  # DATA bytes we framed
    allowed: dict[int, int] = field(default_factory=dict)  # what the peer let us send in total


ops = st.lists(
    st.one_of(
        st.tuples(st.just("recv"), st.sampled_from((1, 3)), st.integers(0, 70_000)),
        st.tuples(st.just("consume"), st.sampled_from((1, 3)), st.integers(0, 70_000)),
        st.tuples(st.just("update"), st.sampled_from((0, 1, 3)), st.integers(1, 100_000)),
        st.tuples(st.just("settings"), st.just(0), st.integers(-60_000, 60_000)),
        st.tuples(st.just("send"), st.sampled_from((1, 3)), st.integers(0, 120_000)),
    ),
    max_size=60,
)


def _wire_out(owner: Owner, ledger: Ledger) -> None:
    out = bytes(owner.fast.data_to_send())
    pos = 0
    while pos < len(out):
        length, ftype, _flags, sid = h2frames.parse_header(out, pos)
        if ftype == h2frames.WINDOW_UPDATE:
            inc = h2frames.window_increment(out, pos + 9)
            assert inc > 0
            ledger.credited[sid] = ledger.credited.get(sid, 0) + inc
        else:
            assert ftype == h2frames.DATA
            ledger.sent[sid] = ledger.sent.get(sid, 0) + length
            ledger.sent[0] = ledger.sent.get(0, 0) + length
        pos += 9 + length


@settings(max_examples=200, deadline=None)
@given(
    stream_window=st.integers(1, 80_000),
    connection_window=st.integers(1, 200_000),
    initial_send=st.integers(0, 80_000),
    steps=ops,
    overflow_last=st.booleans(),
)
def test_any_window_sequence_keeps_both_ledgers_honest(
    stream_window: int,
    connection_window: int,
    initial_send: int,
    steps: list[tuple[str, int, int]],
    overflow_last: bool,
) -> None:
    owner = Owner(stream_window=stream_window, connection_window=connection_window)
    fast = owner.fast
    ledger = Ledger(allowed={0: H2_DEFAULT_WINDOW, 1: initial_send, 3: initial_send})
    windows = {0: connection_window, 1: stream_window, 3: stream_window}
    for sid in (1, 3):
        fast.open_receive(sid)
        fast.open_send(sid, initial_send)

    def peer_may_send(sid: int) -> int:
        return min(
            windows[key] - ledger.received.get(key, 0) + ledger.credited.get(key, 0) for key in (0, sid)
        )

    for op, sid, n in steps + ([("overflow", 3, 0)] if overflow_last else []):
        before = len(owner.trace)
        if op in ("recv", "overflow"):
            size = min(n, peer_may_send(sid)) if op == "recv" else peer_may_send(sid) + 1
            owner.receive(_frame(h2frames.DATA, 0, sid, b"d" * size))
            delivered = sum(
                v.flow_controlled_length for _k, v in owner.trace[before:] if isinstance(v, DataReceived)
            )
            if op == "overflow":
                assert owner.failed == [ErrorCodes.FLOW_CONTROL_ERROR] and delivered == 0
                return  # the connection is dead: the peer broke the window, nothing of it was delivered
            assert delivered == size
            for key in (0, sid):
                ledger.received[key] = ledger.received.get(key, 0) + size
        elif op == "consume":
            consumed = min(n, ledger.received.get(sid, 0) - ledger.acked.get(sid, 0))
            fast.acknowledge(sid, consumed)
            for key in (0, sid):
                ledger.acked[key] = ledger.acked.get(key, 0) + consumed
        elif op == "update":
            if ledger.allowed[sid] - ledger.sent.get(sid, 0) + n > h2frames.MAX_WINDOW:
                continue  # an overflowing increment is a different test
            owner.receive(h2frames.window_update(sid, n))
            assert owner.trace[before:] == [("opened", sid)]
            ledger.allowed[sid] += n
        elif op == "settings":
            if any(ledger.allowed[s] - ledger.sent.get(s, 0) + n > h2frames.MAX_WINDOW for s in (1, 3)):
                continue
            fast.shift_send_windows(n)
            for s in (1, 3):
                ledger.allowed[s] += n
        else:
            ob = fast.outbound[sid]
            may = max(0, min(ob.window, fast.tx_conn_window))
            sent_before = ledger.sent.get(sid, 0)
            assert fast.push(sid, memoryview(b"s" * n), ob) == min(n, may)
            _wire_out(owner, ledger)
            # Sent DATA never exceeds the peer's windows (and fills them when there is enough to send).
            assert ledger.sent.get(sid, 0) - sent_before == min(n, may)
        _wire_out(owner, ledger)

        assert not owner.failed
        for key in (0, 1, 3):
            received, acked, credited = (
                ledger.received.get(key, 0),
                ledger.acked.get(key, 0),
                ledger.credited.get(key, 0),
            )
            # Bytes credited never exceed bytes consumed, which never exceed bytes received.
            assert credited <= acked <= received
            window, unacked = (
                (fast.rx_conn_window, fast.rx_conn_unacked)
                if key == 0
                else (fast.inbound[key].window, fast.inbound[key].unacked)
            )
            # Our ledger agrees with what the peer was told, and holds back only unreturned credit.
            assert window == windows[key] - received + credited
            assert unacked == acked - credited
            # The send ledger knows exactly what the peer still allows.
            left = ledger.allowed[key] - ledger.sent.get(key, 0)
            assert (fast.tx_conn_window if key == 0 else fast.outbound[key].window) == left
        # h2's own windows never move: nothing went to h2 on this path.
        assert not [t for t in owner.trace if t[0] == "h2"]


def test_credit_goes_out_once_half_a_window_is_consumed() -> None:
    owner = Owner(stream_window=1000, connection_window=10_000)
    fast = owner.fast
    fast.open_receive(1)
    owner.receive(_frame(h2frames.DATA, 0, 1, b"x" * 800))
    fast.acknowledge(1, 499)
    assert not fast.data_to_send()
    fast.acknowledge(1, 1)
    assert bytes(fast.data_to_send()) == h2frames.window_update(1, 500)


def test_stream_window_overflow_resets_only_that_stream() -> None:
    owner = Owner()
    owner.fast.open_send(1, h2frames.MAX_WINDOW)
    owner.receive(h2frames.window_update(1, 1))
    assert owner.trace == [
        ("reset", (1, int(ErrorCodes.FLOW_CONTROL_ERROR))),
        ("event", StreamReset(1, int(ErrorCodes.FLOW_CONTROL_ERROR), remote=False)),
    ]
    assert not owner.failed
