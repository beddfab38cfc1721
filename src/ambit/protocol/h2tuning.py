"""Workarounds for measured h2/hyperframe costs and limits; applied once on import of the HBONE core.

1. hyperframe's ``_raw_data_repr`` hex-encodes a frame's *whole* payload before truncating it to 20
   characters, and h2 calls ``repr(frame)`` for a trace log on every received frame even when logging
   is off. For DATA frames that is the largest single receive-side cost (dependencies.md §2, pitfall 1).
   We replace it with a version that encodes only the first bytes it prints.
2. After a GOAWAY is sent *or* received, h2's connection state machine moves to CLOSED and then rejects
   every frame, including DATA and WINDOW_UPDATE of streams the GOAWAY explicitly lets finish
   (RFC 9113 §6.8). Reopening after the event is too late: a GOAWAY and the next DATA frame often
   arrive in one read and h2 processes both inside one ``receive_data`` call. So
   ``keep_open_through_goaway`` gives a connection its own transition table in which GOAWAY leaves
   the state unchanged; the HBONE core itself refuses new streams once a GOAWAY has passed.
3. On *receiving* a GOAWAY, h2 also clears its outbound buffer ("we cannot send further data now"):
   every frame queued and not yet collected by ``data_to_send`` is silently dropped. The I/O edge
   writes once per loop iteration, so a frame queued just before the peer's GOAWAY is read is lost:
   the ``200`` answering a CONNECT, an END_STREAM, a RST_STREAM, a SETTINGS or PING ack. The stream
   it belonged to stays open on both sides with nothing more to come, until a drain deadline (seen in
   ``ambit chaos run ztunnel-restart``: both ends of a pooled connection drained at once and a
   request's 200 vanished). Those frames belong to streams the GOAWAY lets finish (the peer's GOAWAY
   covers every stream it processed; ours that it did not are reported refused by the core, and the
   peer refuses them too when they arrive), so ``keep_open_through_goaway`` keeps the buffer.
"""

from __future__ import annotations

import binascii

import hyperframe.frame
from h2.connection import ConnectionInputs, ConnectionState, H2Connection

_REPR_BYTES = 10


def _short_raw_data_repr(data: bytes | None) -> str:
    if not data:
        return "None"
    head = binascii.hexlify(bytes(data[:_REPR_BYTES])).decode("ascii")
    return "<hex:" + head + ("..." if len(data) > _REPR_BYTES else "") + ">"


def apply() -> None:
    """Install the cheap frame repr (idempotent)."""
    hyperframe.frame._raw_data_repr = _short_raw_data_repr


_GOAWAY_INPUTS = (ConnectionInputs.SEND_GOAWAY, ConnectionInputs.RECV_GOAWAY)
_OPEN_STATES = (ConnectionState.IDLE, ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN)


def keep_open_through_goaway(conn: H2Connection) -> None:
    """Let streams that a GOAWAY did not cancel keep exchanging frames (this connection only): the
    state stays open, and a received GOAWAY no longer discards the frames queued before it."""
    machine = conn.state_machine
    table = dict(machine._transitions)
    for state in _OPEN_STATES:
        for event in _GOAWAY_INPUTS:
            table[(state, event)] = (None, state)
    machine._transitions = table  # an instance attribute shadows h2's class-level table
    # h2 calls this only from its GOAWAY receive path; an instance attribute shadows the method.
    conn.clear_outbound_data_buffer = _keep_outbound_data  # type: ignore[method-assign]


def _keep_outbound_data() -> None:
    """What a received GOAWAY does to the frames we queued: nothing (they are still sent)."""


apply()
