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
    """Let streams that a GOAWAY did not cancel keep exchanging frames (this connection only)."""
    machine = conn.state_machine
    table = dict(machine._transitions)
    for state in _OPEN_STATES:
        for event in _GOAWAY_INPUTS:
            table[(state, event)] = (None, state)
    machine._transitions = table  # an instance attribute shadows h2's class-level table


apply()
