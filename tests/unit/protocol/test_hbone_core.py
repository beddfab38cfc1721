"""Transcript tests of the HBONE sans-IO core: frames in, events out, no sockets."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import hpack
import hyperframe.frame
import pytest
from h2.errors import ErrorCodes
from hypothesis import given
from hypothesis import strategies as st

from ambit.protocol.hbone import (
    ConnectionAborted,
    DataReceived,
    GoAwayReceived,
    HboneConnection,
    HboneProtocolError,
    HboneSettings,
    StreamEnded,
    StreamReset,
    StreamWritable,
    TunnelRefused,
    TunnelRequested,
    TunnelResponse,
    parse_authority,
    request_headers,
)
from ambit.testing.hbone_pair import HbonePair


def test_connect_carries_authority_and_only_passthrough_headers() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel(
        "10.244.1.5:9080",
        [("forwarded", 'for="10.244.0.3"'), ("baggage", "k8s.namespace.name=default"), ("x-secret", "no")],
    )
    pair.pump()
    [req] = pair.of_type("server", TunnelRequested)
    assert (req.stream_id, req.authority, req.host, req.port) == (sid, "10.244.1.5:9080", "10.244.1.5", 9080)
    assert dict(req.headers) == {"forwarded": 'for="10.244.0.3"', "baggage": "k8s.namespace.name=default"}


@pytest.mark.parametrize("status", [200, 401, 503])
def test_response_status_reaches_client(status: int) -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, status)
    pair.pump()
    [resp] = pair.of_type("client", TunnelResponse)
    assert resp.status == status
    ended = pair.of_type("client", StreamEnded)
    assert bool(ended) == (status != 200), "a refusal ends the stream, a 200 keeps it open"


def test_bytes_both_ways_with_half_close() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.client.send(sid, b"ping")
    pair.client.end(sid)
    pair.pump()
    assert pair.received("server", sid) == b"ping"
    assert StreamEnded(sid) in pair.server_events
    # Server may still write after the client's half-close.
    pair.server.send(sid, b"pong")
    pair.server.end(sid)
    pair.pump()
    assert pair.received("client", sid) == b"pong"
    assert StreamEnded(sid) in pair.client_events
    assert pair.client.open_streams == 0 and pair.server.open_streams == 0


def test_non_connect_is_answered_400_by_the_core() -> None:
    pair = HbonePair.create()
    raw: h2.connection.H2Connection = pair.client._h2
    raw.send_headers(
        1, [(":method", "GET"), (":scheme", "https"), (":path", "/"), (":authority", "x")], end_stream=True
    )
    pair.pump()
    [refused] = pair.of_type("server", TunnelRefused)
    assert refused.status == 400 and "CONNECT" in refused.reason
    assert not pair.of_type("server", TunnelRequested)
    assert pair.of_type("client", TunnelResponse)[0].status == 400


@pytest.mark.parametrize(
    "authority", ["foo:80", "10.0.0.1", "10.0.0.1:0", "10.0.0.1:70000", "[::1]80", "1.2.3:80"]
)
def test_bad_authority_is_answered_400(authority: str) -> None:
    pair = HbonePair.create()
    raw: h2.connection.H2Connection = pair.client._h2
    raw.send_headers(1, [(":method", "CONNECT"), (":authority", authority)])
    pair.pump()
    [refused] = pair.of_type("server", TunnelRefused)
    assert refused.status == 400
    assert pair.of_type("client", TunnelResponse)[0].status == 400


def test_flow_control_buffers_and_signals_writable() -> None:
    settings = HboneSettings(stream_window=64 * 1024, send_high_watermark=128 * 1024, send_low_watermark=1024)
    pair = HbonePair.create(client_settings=settings, server_settings=settings, auto_ack=False)
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    assert pair.server.send(sid, b"a" * (300 * 1024)) is False, "above the high watermark"
    pair.pump()
    assert len(pair.received("client", sid)) == 64 * 1024, "only one stream window without acknowledgements"
    assert pair.server.pending(sid) == 300 * 1024 - 64 * 1024
    pair.auto_ack = True
    pair.client.acknowledge(sid, 64 * 1024)
    pair.pump()
    assert len(pair.received("client", sid)) == 300 * 1024
    assert StreamWritable(sid) in pair.server_events


def test_connection_window_is_opened_beyond_the_h2_default() -> None:
    pair = HbonePair.create()
    assert pair.server.send_window() == HboneSettings().connection_window


def test_graceful_goaway_lets_inflight_streams_finish_and_refuses_new_ones() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.server.goaway()
    pair.pump()
    assert pair.of_type("client", GoAwayReceived)[0].last_stream_id == sid
    assert pair.client.stream_capacity() == 0
    with pytest.raises(HboneProtocolError):
        pair.client.open_tunnel("10.0.0.1:80")
    pair.server.send(sid, b"after goaway")
    pair.server.end(sid)
    pair.client.send(sid, b"client after goaway")
    pair.client.end(sid)
    pair.pump()
    assert pair.received("client", sid) == b"after goaway"
    assert pair.received("server", sid) == b"client after goaway"


def test_stream_above_goaway_is_reported_refused_to_client() -> None:
    pair = HbonePair.create()
    first = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    second = pair.client.open_tunnel("10.0.0.1:81")  # in flight when the server sends GOAWAY(last=first)
    pair.server.goaway()
    pair.server._h2.highest_inbound_stream_id = first
    pair.pump()
    resets = [e for e in pair.client_events if isinstance(e, StreamReset)]
    assert any(e.stream_id == second and e.error_code == ErrorCodes.REFUSED_STREAM for e in resets)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rapid_reset_exhausts_budget_and_gets_goaway() -> None:
    clock = FakeClock()
    server_settings = HboneSettings(reset_burst=20, reset_refill_per_second=1.0, max_concurrent_streams=200)
    pair = HbonePair.create(server_settings=server_settings, clock=clock)
    raw: h2.connection.H2Connection = pair.client._h2
    for _ in range(25):
        sid = raw.get_next_available_stream_id()
        raw.send_headers(sid, [(":method", "CONNECT"), (":authority", "10.0.0.1:80")])
        raw.reset_stream(sid, ErrorCodes.CANCEL)
        pair.pump()
        if pair.server.aborted:
            break
    assert pair.of_type("server", ConnectionAborted), "the abusive peer is cut off"
    goaway = pair.of_type("client", GoAwayReceived)
    assert goaway and goaway[0].error_code == ErrorCodes.ENHANCE_YOUR_CALM


def test_resets_within_budget_refill_over_time() -> None:
    clock = FakeClock()
    pair = HbonePair.create(
        server_settings=HboneSettings(reset_burst=5, reset_refill_per_second=1.0), clock=clock
    )
    raw: h2.connection.H2Connection = pair.client._h2
    for _ in range(20):
        sid = raw.get_next_available_stream_id()
        raw.send_headers(sid, [(":method", "CONNECT"), (":authority", "10.0.0.1:80")])
        raw.reset_stream(sid, ErrorCodes.CANCEL)
        pair.pump()
        clock.now += 1.5  # slower than the refill rate: never cut off
    assert not pair.of_type("server", ConnectionAborted)


def raw_headers(stream_id: int, headers: list[tuple[str, str]], encoder: hpack.Encoder) -> bytes:
    """A HEADERS frame built by hand, bypassing every client-side check."""
    frame = hyperframe.frame.HeadersFrame(stream_id)
    frame.data = encoder.encode(headers)
    frame.flags.add("END_HEADERS")
    return bytes(frame.serialize())


def test_too_many_streams_is_a_connection_error_not_a_crash() -> None:
    pair = HbonePair.create(server_settings=HboneSettings(max_concurrent_streams=2))
    encoder = hpack.Encoder()
    connect = [(":method", "CONNECT"), (":authority", "1.1.1.1:1")]
    wire = b"".join(raw_headers(sid, connect, encoder) for sid in (1, 3, 5))
    events = pair.server.receive(wire)  # a client ignoring the server's limit
    assert isinstance(events[-1], ConnectionAborted)
    assert pair.server.data_to_send()[3] == 0x07, "a GOAWAY frame is queued"


def test_oversized_headers_abort_the_connection() -> None:
    pair = HbonePair.create(server_settings=HboneSettings(max_header_list_size=1024))
    big = [(":method", "CONNECT"), (":authority", "1.1.1.1:1"), ("x-big", "a" * 4096)]
    events = pair.server.receive(raw_headers(1, big, hpack.Encoder()))
    assert [type(e) for e in events] == [ConnectionAborted]


def test_client_refuses_to_open_beyond_its_stream_limit() -> None:
    pair = HbonePair.create(client_settings=HboneSettings(max_concurrent_streams=3))
    for _ in range(3):
        pair.client.open_tunnel("10.0.0.1:80")
    assert pair.client.stream_capacity() == 0
    with pytest.raises(HboneProtocolError):
        pair.client.open_tunnel("10.0.0.1:80")


@given(st.text(max_size=60))
def test_parse_authority_never_crashes(text: str) -> None:
    try:
        host, port = parse_authority(text)
    except ValueError:
        return
    assert 0 < port < 65536 and host


@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_parse_authority_round_trips_addresses(addr: object, port: int) -> None:
    text = f"[{addr}]:{port}" if ":" in str(addr) else f"{addr}:{port}"
    assert parse_authority(text) == (str(addr), port)


@given(st.binary(max_size=400))
def test_server_survives_arbitrary_bytes(data: bytes) -> None:
    server = HboneConnection(client_side=False)
    server.initiate()
    server.receive(data)  # must never raise
    server.data_to_send()


def test_events_are_h2_independent() -> None:
    # The core never leaks h2 event objects to the edge.
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    assert not any(isinstance(e, h2.events.Event) for e in pair.client_events + pair.server_events)


def test_request_headers_match_ztunnel_forms() -> None:
    assert request_headers("10.244.0.3") == (("forwarded", 'for="10.244.0.3"'),)
    assert request_headers("fd00::3", source_port=4711, host="reviews.default.svc.cluster.local") == (
        ("forwarded", 'for="[fd00::3]:4711";host=reviews.default.svc.cluster.local'),
    )
    assert dict(request_headers(None, baggage="k8s.namespace.name=default", traceparent="00-ab-cd-01")) == {
        "baggage": "k8s.namespace.name=default",
        "traceparent": "00-ab-cd-01",
    }


def test_request_headers_reach_the_server_intact() -> None:
    pair = HbonePair.create()
    sent = request_headers(
        "10.244.0.3", baggage="k8s.pod.name=curl", traceparent="00-0af7651916cd43dd-b7ad6b71-01"
    )
    pair.client.open_tunnel("10.244.1.5:9080", sent)
    pair.pump()
    [req] = pair.of_type("server", TunnelRequested)
    assert req.headers == sent


def test_goaway_and_data_in_one_read_keep_the_stream_alive() -> None:
    """A GOAWAY and the next DATA frame often arrive together: the DATA must still be delivered."""
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    pair.client.goaway()
    pair.client.send(sid, b"same read")
    events = pair.server.receive(pair.client.data_to_send())  # both frames in one call
    assert [type(e) for e in events] == [GoAwayReceived, DataReceived]
    assert not pair.server.is_aborted()


# ---------------------------------------------------------------- GOAWAY crossing queued frames
#
# h2 clears its outbound buffer when it *receives* a GOAWAY ("we cannot send further data now").
# The edge writes what the core queued once per loop iteration, so a frame queued before the peer's
# GOAWAY was read -- the 200 answering a CONNECT, an END_STREAM, a RST_STREAM -- was silently lost
# while the stream it belonged to stayed open on both sides: the tunnel hung until the drain deadline.


def test_a_200_queued_when_the_clients_goaway_arrives_is_still_sent() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)  # queued, not yet written (the edge flushes once per iteration)
    pair.client.goaway()  # the client pool drains at the same moment
    pair.server_events.extend(pair.server.receive(pair.client.data_to_send()))
    assert pair.of_type("server", GoAwayReceived)
    pair.pump()
    [resp] = pair.of_type("client", TunnelResponse)
    assert (resp.stream_id, resp.status) == (sid, 200)
    pair.client.send(sid, b"request")
    pair.client.end(sid)
    pair.pump()
    assert pair.received("server", sid) == b"request"
    pair.server.send(sid, b"response")
    pair.server.end(sid)
    pair.pump()
    assert pair.received("client", sid) == b"response"
    assert pair.client.open_streams == 0 and pair.server.open_streams == 0


def test_an_end_stream_queued_when_the_servers_goaway_arrives_is_still_sent() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    pair.client.send(sid, b"request")
    pair.client.end(sid)  # DATA and END_STREAM queued
    pair.server.goaway()  # the server drains at the same moment
    pair.client_events.extend(pair.client.receive(pair.server.data_to_send()))
    assert pair.of_type("client", GoAwayReceived)[0].last_stream_id == sid
    pair.pump()
    assert pair.received("server", sid) == b"request"
    assert StreamEnded(sid) in pair.server_events, "the client's half-close was lost"


def test_a_reset_queued_when_a_goaway_arrives_is_still_sent() -> None:
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.pump()
    pair.server.respond(sid, 200)
    pair.pump()
    pair.client.reset(sid)
    pair.server.goaway()
    pair.client.receive(pair.server.data_to_send())
    pair.pump()
    resets = pair.of_type("server", StreamReset)
    assert [(e.stream_id, e.error_code) for e in resets] == [(sid, ErrorCodes.CANCEL)]
    assert pair.server.open_streams == 0


def test_goaway_both_ways_crossing_a_connect_in_flight_refuses_it_on_the_client() -> None:
    """The CONNECT is queued when the server's GOAWAY (which cannot cover it) arrives: the client
    reports it refused (safe to retry), and the server, which still receives it, refuses it too."""
    pair = HbonePair.create()
    sid = pair.client.open_tunnel("10.0.0.1:80")
    pair.client.goaway()
    pair.server.goaway()
    pair.client_events.extend(pair.client.receive(pair.server.data_to_send()))
    resets = pair.of_type("client", StreamReset)
    assert [(e.stream_id, e.error_code) for e in resets] == [(sid, ErrorCodes.REFUSED_STREAM)]
    pair.pump()
    assert [e.stream_id for e in pair.of_type("server", TunnelRefused)] == [sid]
    assert not pair.of_type("server", TunnelRequested)
    assert pair.client.open_streams == 0 and pair.server.open_streams == 0
