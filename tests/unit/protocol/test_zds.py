"""The node agent <-> ztunnel protocol: round trips, fd accounting, hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ambit.protocol.zds import (
    MAX_MESSAGE,
    Ack,
    AddWorkload,
    DelWorkload,
    Hello,
    SnapshotSent,
    WorkloadInfo,
    ZdsError,
    decode,
    encode,
)

MESSAGES = [
    Hello(),
    AddWorkload("uid-1", WorkloadInfo("curl-1", "default", "curl", ("10.244.1.5",), "node1")),
    DelWorkload("uid-1"),
    SnapshotSent(),
    Ack("uid-1"),
    Ack("uid-2", "netns gone"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_round_trip(message: object) -> None:
    frame = encode(message)  # type: ignore[arg-type]
    assert decode(frame.data, fds=1 if frame.needs_fd else 0) == message


def test_add_must_carry_exactly_one_fd_and_others_none() -> None:
    add = encode(MESSAGES[1])
    assert add.needs_fd
    with pytest.raises(ZdsError, match="expected 1"):
        decode(add.data, fds=0)
    with pytest.raises(ZdsError, match="expected 0"):
        decode(encode(DelWorkload("x")).data, fds=1)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"nope", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"type":"hello","version":2}', "version"),
        (b'{"type":"del","uid":""}', "uid"),
        (
            b'{"type":"add","uid":"u","workload":{"name":"n","namespace":"d","service_account":"s","ips":[1]}}',
            "ips",
        ),
        (b'{"type":"bogus"}', "unknown"),
        (b"x" * (MAX_MESSAGE + 1), "exceeds"),
    ],
)
def test_hostile_input_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    fds = 1 if b'"add"' in data else 0
    with pytest.raises(ZdsError, match=reason):
        decode(data, fds=fds)


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=3))
def test_decode_never_raises_anything_but_zds_error(data: bytes, fds: int) -> None:
    with contextlib.suppress(ZdsError):
        decode(data, fds=fds)
