"""HTTP/2 header blocks ↔ the exchange model: the pure helpers of ``ambit.waypoint.h2_server``."""

from __future__ import annotations

import pytest

from ambit.waypoint.exchange import BodyStream, Request
from ambit.waypoint.h2_link import (
    MalformedRequest,
    as_bytes_fields,
    check_field,
    outbound_fields,
    request_fields,
    request_head,
    response_fields,
    response_head,
    split_pseudo,
    trailer_fields,
)
from ambit.waypoint.upstream_errors import UpstreamError


def test_as_bytes_fields_accepts_str_and_bytes() -> None:
    assert as_bytes_fields([(b":status", b"200"), ("x-a", "b")]) == [(b":status", b"200"), (b"x-a", b"b")]


def test_split_pseudo_keeps_order_and_first_pseudo_value() -> None:
    pseudo, regular = split_pseudo([(b":method", b"GET"), (b"a", b"1"), (b":method", b"PUT"), (b"b", b"2")])
    assert pseudo == {b":method": b"GET"}
    assert regular == [(b"a", b"1"), (b"b", b"2")]


def test_request_head_from_authority() -> None:
    head = request_head(
        [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":authority", b"svc.ns:8080"),
            (b":path", b"/pkg.Svc/Call"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
            (b"host", b"ignored"),
        ]
    )
    assert (head.method, head.scheme, head.authority, head.path) == (
        b"POST",
        b"http",
        b"svc.ns:8080",
        b"/pkg.Svc/Call",
    )
    assert head.headers == [(b"content-type", b"application/grpc"), (b"te", b"trailers")]


def test_request_head_falls_back_to_host() -> None:
    head = request_head([(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h:1")])
    assert head.authority == b"h:1"
    assert head.headers == []


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ([(b":scheme", b"http"), (b":path", b"/"), (b":authority", b"a")], 400),  # no :method
        ([(b":method", b"GET"), (b":authority", b"a")], 400),  # no :path
        ([(b":method", b"GET"), (b":path", b"/")], 400),  # no authority at all
        ([(b":method", b"CONNECT"), (b":authority", b"a:1")], 405),
        (
            [(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":path", b"/"), (b":authority", b"a")],
            405,
        ),
    ],
)
def test_request_head_malformed(fields: list[tuple[bytes, bytes]], status: int) -> None:
    with pytest.raises(MalformedRequest) as caught:
        request_head(fields)
    assert caught.value.status == status


def test_response_head() -> None:
    assert response_head([(b":status", b"404"), (b"grpc-status", b"5")]) == (404, [(b"grpc-status", b"5")])


@pytest.mark.parametrize("status", [b"", b"20", b"2000", b"abc"])
def test_response_head_bad_status(status: bytes) -> None:
    fields = [(b":status", status)] if status else [(b"x", b"y")]
    with pytest.raises(ValueError, match="status"):
        response_head(fields)


def test_outbound_fields_drops_hop_by_hop_and_pseudo_and_lowercases() -> None:
    headers = [
        (b"Content-Type", b"text/plain"),
        (b"connection", b"keep-alive, x-private"),
        (b"keep-alive", b"timeout=5"),
        (b"x-private", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"te", b"trailers"),
        (b":status", b"200"),
        (b"x-padded", b"  v  "),
        (b"host", b"h"),
    ]
    assert outbound_fields(headers, drop=frozenset({b"host"})) == [
        (b"content-type", b"text/plain"),
        (b"te", b"trailers"),
        (b"x-padded", b"v"),
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"", b"v"),
        (b"Upper", b"v"),
        (b"sp ace", b"v"),
        (b"a:b", b"v"),
        (b"ok", b"line\r\nbreak"),
        (b"ok", b"nul\x00"),
    ],
)
def test_check_field_rejects(name: bytes, value: bytes) -> None:
    with pytest.raises(ValueError, match="header"):
        check_field(name, value)


def test_request_fields() -> None:
    request = Request(
        b"POST",
        b"http",
        b"svc:80",
        b"/p?q=1",
        [(b"host", b"other"), (b"te", b"trailers"), (b"connection", b"close"), (b"x-a", b"1")],
        BodyStream.of(b""),
        version="1.1",
    )
    assert request_fields(request) == [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"svc:80"),
        (b":path", b"/p?q=1"),
        (b"te", b"trailers"),
        (b"x-a", b"1"),
    ]


@pytest.mark.parametrize("authority", [b"", b"a b", b"a\r\nb"])
def test_request_fields_rejects_bad_authority(authority: bytes) -> None:
    request = Request(b"GET", b"http", authority, b"/", [], BodyStream.of())
    with pytest.raises(ValueError, match="request line"):
        request_fields(request)


def test_response_fields() -> None:
    assert response_fields(204, [(b"Server", b"x"), (b"upgrade", b"h2c")]) == [
        (b":status", b"204"),
        (b"server", b"x"),
    ]


@pytest.mark.parametrize("status", [100, 101, 199, 1000])
def test_response_fields_refuses_non_final_status(status: int) -> None:
    with pytest.raises(ValueError, match="final"):
        response_fields(status, [])


def test_trailer_fields_keep_grpc_status() -> None:
    trailers = [(b"grpc-status", b"5"), (b"grpc-message", b"not found"), (b"connection", b"x")]
    assert trailer_fields(trailers) == [(b"grpc-status", b"5"), (b"grpc-message", b"not found")]
    assert trailer_fields([]) == []


def test_upstream_error_carries_flags() -> None:
    exc = UpstreamError("UF", "cannot connect")
    assert isinstance(exc, ConnectionError)
    assert exc.flags == "UF"
    assert str(exc) == "cannot connect"
    assert str(UpstreamError("UC")) == "UC"
