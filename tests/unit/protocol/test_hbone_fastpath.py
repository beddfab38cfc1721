"""The HBONE core's DATA/WINDOW_UPDATE fast path: framing across reads, flow control both ways, and
hostile frames answered as RFC 9113 says (a raw h2 peer crafts what our own client never sends)."""

from __future__ import annotations

import random

import h2.config
import h2.connection
import h2.events
import h2.settings
import hyperframe.frame
import pytest
from h2.errors import ErrorCodes
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.protocol import h2frames
from ambit.protocol.hbone import (
    ConnectionAborted,
    DataReceived,
    HboneConnection,
    HboneSettings,
    StreamEnded,
    TunnelRequested,
)
from ambit.testing.hbone_pair import HbonePair


def _frames(data: bytes) -> list[hyperframe.frame.Frame]:
    frames = []
    pos = 0
    while pos + 9 <= len(data):
        frame, length = hyperframe.frame.Frame.parse_frame_header(memoryview(data[pos : pos + 9]))
        frame.parse_body(memoryview(data[pos + 9 : pos + 9 + length]))
        frames.append(frame)
        pos += 9 + length
    return frames


def test_frame_header_round_trip() -> None:
    header = h2frames.data_header(7, 70_000, h2frames.END_STREAM)
    assert h2frames.parse_header(header) == (70_000, h2frames.DATA, h2frames.END_STREAM, 7)
    update = h2frames.window_update(3, 2**31 - 1)
    frame = _frames(update)[0]
    assert isinstance(frame, hyperframe.frame.WindowUpdateFrame)
    assert (frame.stream_id, frame.window_increment) == (3, 2**31 - 1)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), frame_size=st.sampled_from([16_384, 65_536]))
def test_data_survives_any_read_boundaries(seed: int, frame_size: int) -> None:
    """Frames split at arbitrary points (down to single bytes) reassemble exactly, both ways."""
    rng = random.Random(seed)
    pair = HbonePair.create(client_settings=HboneSettings(send_frame_size=frame_size))
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    payload = rng.randbytes(rng.randrange(1, 300_000))
    pair.client.send(sid, payload)
    pair.client.end(sid)
    wire = bytes(pair.client.data_to_send())
    got: list[bytes] = []
    pos = 0
    while pos < len(wire):
        step = rng.choice([1, 2, 9, 10, 100, 4096, 70_000])
        for ev in pair.server.receive(wire[pos : pos + step]):
            if isinstance(ev, DataReceived):
                got.append(ev.data)
                pair.server.acknowledge(ev.stream_id, ev.flow_controlled_length)
            else:
                assert isinstance(ev, StreamEnded)
        pos += step
    assert b"".join(got) == payload


def test_sender_stops_at_the_peer_window_and_resumes_on_window_update() -> None:
    small = HboneSettings(stream_window=100_000, connection_window=1_000_000)
    pair = HbonePair.create(server_settings=small, auto_ack=False)
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    pair.client.send(sid, b"x" * 250_000)
    pair.pump()
    assert len(pair.received("server", sid)) == 100_000, "exactly one stream window, no more"
    assert pair.client.pending(sid) == 150_000
    # Credit comes back only once half the window is consumed: a batched WINDOW_UPDATE.
    pair.server.acknowledge(sid, 49_999)
    assert not pair.server.data_to_send()
    pair.server.acknowledge(sid, 1)
    update = bytes(pair.server.data_to_send())
    assert [(f.stream_id, f.window_increment) for f in _frames(update)] == [(sid, 50_000)]
    for ev in pair.client.receive(update):
        assert not isinstance(ev, ConnectionAborted)
    pair.pump()
    assert len(pair.received("server", sid)) == 150_000


def test_peer_settings_change_moves_open_stream_windows() -> None:
    pair = HbonePair.create(auto_ack=False)
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    before = pair.server.send_window(sid)
    pair.client._h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1_000_000})
    pair.pump()
    assert pair.server.send_window(sid) == min(before - (4 * 1024 * 1024 - 1_000_000), 16 * 1024 * 1024)


# ---------------------------------------------------------------- a raw peer sending what it likes


class RawClient:
    """A plain h2 client talking to our server core, with frames injected by hand."""

    def __init__(self) -> None:
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.server = HboneConnection(client_side=False)
        self.server.initiate()
        self.h2.initiate_connection()
        self.events = self.server.receive(self.h2.data_to_send())
        self.h2.receive_data(bytes(self.server.data_to_send()))
        self.events += self.server.receive(self.h2.data_to_send())

    def open(self) -> int:
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", "CONNECT"), (":authority", "10.0.0.1:80")])
        self.events += self.server.receive(self.h2.data_to_send())
        assert any(isinstance(e, TunnelRequested) for e in self.events)
        self.server.respond(sid, 200)
        return sid

    def inject(self, raw: bytes) -> list[h2.events.Event]:
        self.events += self.server.receive(raw)
        return self.h2.receive_data(bytes(self.server.data_to_send()))


def test_data_beyond_the_stream_window_is_a_flow_control_error() -> None:
    peer = RawClient()
    sid = peer.open()
    window = HboneSettings.server().stream_window
    chunk = 200_000
    raw = b"".join(h2frames.data_header(sid, chunk) + b"a" * chunk for _ in range(window // chunk + 1))
    answers = peer.inject(raw)
    assert any(isinstance(e, ConnectionAborted) for e in peer.events)
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR
    delivered = sum(len(e.data) for e in peer.events if isinstance(e, DataReceived))
    assert delivered <= window, "nothing beyond the window reached the edge"


def test_data_on_a_closed_stream_is_reset_not_delivered() -> None:
    peer = RawClient()
    sid = peer.open()
    peer.inject(h2frames.data_header(sid, 3, h2frames.END_STREAM) + b"end")
    answers = peer.inject(h2frames.data_header(sid, 5) + b"after")
    assert [e for e in peer.events if isinstance(e, DataReceived)] == [DataReceived(sid, b"end", 3)]
    resets = [e for e in answers if isinstance(e, h2.events.StreamReset)]
    assert resets and resets[0].error_code == ErrorCodes.STREAM_CLOSED
    assert not any(isinstance(e, ConnectionAborted) for e in peer.events)


@pytest.mark.parametrize("stream_id", [0, 99])
def test_data_on_stream_zero_or_an_idle_stream_is_a_connection_error(stream_id: int) -> None:
    peer = RawClient()
    answers = peer.inject(h2frames.data_header(stream_id, 4) + b"data")
    assert any(isinstance(e, ConnectionAborted) for e in peer.events)
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_padded_data_delivers_only_the_body_and_counts_the_padding() -> None:
    peer = RawClient()
    sid = peer.open()
    body, pad = b"hello", 10
    peer.inject(
        h2frames.data_header(sid, 1 + len(body) + pad, h2frames.PADDED) + bytes([pad]) + body + bytes(pad)
    )
    [ev] = [e for e in peer.events if isinstance(e, DataReceived)]
    assert (ev.data, ev.flow_controlled_length) == (body, 1 + len(body) + pad)


def test_bad_padding_is_a_protocol_error() -> None:
    peer = RawClient()
    sid = peer.open()
    answers = peer.inject(h2frames.data_header(sid, 3, h2frames.PADDED) + bytes([5]) + b"ab")
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_window_update_overflow_is_a_flow_control_error() -> None:
    peer = RawClient()
    peer.open()
    answers = peer.inject(h2frames.window_update(0, 2**31 - 1))
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.FLOW_CONTROL_ERROR


def test_zero_window_increment_still_reaches_h2_and_errors() -> None:
    peer = RawClient()
    peer.open()
    answers = peer.inject(b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x00\x00")
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.PROTOCOL_ERROR


def test_oversized_frame_header_is_a_frame_size_error() -> None:
    peer = RawClient()
    sid = peer.open()
    too_big = HboneSettings.server().max_inbound_frame_size + 1
    answers = peer.inject(h2frames.data_header(sid, too_big))
    [goaway] = [e for e in answers if isinstance(e, h2.events.ConnectionTerminated)]
    assert goaway.error_code == ErrorCodes.FRAME_SIZE_ERROR


def test_many_small_requests_send_no_window_updates() -> None:
    """The request/response pattern the benchmark drives: credit is batched, not per request."""
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    for _ in range(500):
        pair.client.send(sid, b"q" * 1024)
        wire = bytes(pair.client.data_to_send())
        assert len(wire) == 9 + 1024, "one DATA frame, nothing else"
        for ev in pair.server.receive(wire):
            assert isinstance(ev, DataReceived)
            pair.server.acknowledge(sid, ev.flow_controlled_length)
        assert not pair.server.data_to_send()


def test_a_large_frame_is_delivered_as_it_arrives_not_stored_first() -> None:
    peer = RawClient()
    sid = peer.open()
    payload = bytes(range(256)) * 256  # 64 KiB in one DATA frame
    wire = h2frames.data_header(sid, len(payload), h2frames.END_STREAM) + payload
    peer.inject(wire[: 9 + 1000])
    first = [e for e in peer.events if isinstance(e, DataReceived)]
    assert [e.data for e in first] == [payload[:1000]], "the first kilobyte is out before the frame is whole"
    assert not any(isinstance(e, StreamEnded) for e in peer.events)
    peer.inject(wire[9 + 1000 :])
    got = b"".join(e.data for e in peer.events if isinstance(e, DataReceived))
    assert got == payload
    assert sum(e.flow_controlled_length for e in peer.events if isinstance(e, DataReceived)) == len(payload)
    assert any(isinstance(e, StreamEnded) for e in peer.events), "END_STREAM once the payload is complete"


def test_reset_while_a_frame_arrives_drops_the_rest_and_returns_its_credit() -> None:
    peer = RawClient()
    sid = peer.open()
    size = 200_000
    peer.inject(h2frames.data_header(sid, size) + b"a" * 1000)
    peer.server.reset(sid)
    peer.server.acknowledge(sid, 1000)
    peer.inject(b"b" * (size - 1000))
    assert sum(len(e.data) for e in peer.events if isinstance(e, DataReceived)) == 1000
    # All 200,000 bytes are credited back to the connection: what the peer may send, plus the credit
    # not yet announced, is the whole window again.
    core = peer.server
    assert core._fast.rx_conn_window + core._fast.rx_conn_unacked == HboneSettings.server().connection_window
    assert not any(isinstance(e, ConnectionAborted) for e in peer.events)


def test_end_stream_on_an_empty_data_frame_split_across_reads_is_not_lost() -> None:
    """How nghttp2 and h2 end a stream (an empty DATA frame with END_STREAM), its header cut in two."""
    peer = RawClient()
    sid = peer.open()
    frame = h2frames.data_header(sid, 0, h2frames.END_STREAM)
    peer.inject(frame[:4])
    assert not any(isinstance(e, StreamEnded) for e in peer.events)
    peer.inject(frame[4:])
    assert [e for e in peer.events if isinstance(e, StreamEnded)] == [StreamEnded(sid)]
