"""HTTP/1.1 sans-IO: events, limits at their production defaults, smuggling refused, any read boundary."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ambit.protocol.http1 import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    Body,
    Event,
    Http1Error,
    MessageEnd,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Upgraded,
    chunk,
    last_chunk,
    request_head,
    response_head,
)

PIPELINE = (
    b"POST /upload?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    b"PUT /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n"
    b"GET /end HTTP/1.0\r\n\r\n"
)


def merged(events: list[Event]) -> list[Event]:
    """Adjacent Body events joined: read boundaries may split a body anywhere."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Body) and out and isinstance(out[-1], Body):
            out[-1] = Body(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def test_pipelined_requests_in_order_with_bodies_and_trailers() -> None:
    events = merged(RequestParser().feed(PIPELINE))
    heads = [e for e in events if isinstance(e, RequestHead)]
    assert [(h.method, h.target, h.version, h.keep_alive) for h in heads] == [
        (b"POST", b"/upload?x=1", "1.1", True),
        (b"PUT", b"/c", "1.1", True),
        (b"GET", b"/end", "1.0", False),
    ]
    assert [e for e in events if isinstance(e, Body)] == [Body(b"hello"), Body(b"abcde")]
    assert [e for e in events if isinstance(e, MessageEnd)] == [
        MessageEnd(),
        MessageEnd(((b"X-Sum", b"5"),)),
        MessageEnd(),
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(PIPELINE)), max_size=12))
def test_any_read_boundaries_give_the_same_events(cuts: list[int]) -> None:
    parser = RequestParser()
    bounds = [0, *sorted(cuts), len(PIPELINE)]
    events: list[Event] = []
    for start, end in itertools.pairwise(bounds):
        events += parser.feed(PIPELINE[start:end])
    assert merged(events) == merged(RequestParser().feed(PIPELINE))


def test_an_upgrade_hands_over_the_rest_of_the_stream() -> None:
    parser = RequestParser()
    events = parser.feed(
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
    )
    assert isinstance(events[0], RequestHead) and events[0].upgrade
    assert events[1:] == [MessageEnd(), Upgraded(b"\x81\x02hi")]
    assert parser.feed(b"GET / HTTP/1.1\r\n\r\n") == [Upgraded(b"GET / HTTP/1.1\r\n\r\n")], "no longer HTTP"


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            400,
            "Duplicate Content-Length",
        ),
        (
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            400,
            "Content-Length",
        ),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400, "malformed"),  # bare LF
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400, "malformed"),  # space before the colon
        (b"GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400, "malformed"),  # obsolete line folding
        (b"G@T / HTTP/1.1\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/2.0 is not supported"),
        (b"GET / HTTP/0.9\r\n\r\n", 505, "not supported"),
    ],
)
def test_malformed_and_smuggling_shapes_are_refused(raw: bytes, status: int, reason: str) -> None:
    with pytest.raises(Http1Error) as info:
        RequestParser().feed(raw)
    assert info.value.status == status and reason in info.value.reason


def headers(count: int) -> bytes:
    return b"".join(b"X-%03d: v\r\n" % i for i in range(count))


def test_the_header_count_limit_at_its_default() -> None:
    ok = RequestParser().feed(b"GET / HTTP/1.1\r\n" + headers(MAX_HEADERS) + b"\r\n")
    assert isinstance(ok[0], RequestHead) and len(ok[0].headers) == MAX_HEADERS
    with pytest.raises(Http1Error) as info:
        RequestParser().feed(b"GET / HTTP/1.1\r\n" + headers(MAX_HEADERS + 1) + b"\r\n")
    assert info.value.status == 431


def test_the_head_size_limit_at_its_default_even_fed_byte_by_byte() -> None:
    value = b"v" * (MAX_HEAD_BYTES - 200)
    ok = RequestParser().feed(b"GET / HTTP/1.1\r\nX-Big: " + value + b"\r\n\r\n")
    assert isinstance(ok[0], RequestHead)
    parser = RequestParser()
    big = b"GET / HTTP/1.1\r\nX-Big: " + value + b"v" * 400 + b"\r\n\r\n"
    with pytest.raises(Http1Error) as info:
        for i in range(0, len(big), 997):
            parser.feed(big[i : i + 997])
    assert info.value.status == 431


def test_responses_and_the_head_rule() -> None:
    parser = ResponseParser()
    parser.expect(b"HEAD")
    events = parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    assert isinstance(events[0], ResponseHead) and events[1:] == [MessageEnd()], "no body after HEAD"
    parser.expect(b"GET")
    events = parser.feed(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno")
    assert isinstance(events[0], ResponseHead) and (events[0].status, events[0].reason) == (404, b"Not Found")
    assert events[1:] == [Body(b"no"), MessageEnd()]
    parser.expect(b"HEAD")
    with pytest.raises(Http1Error) as info:
        parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nX")
    assert info.value.status == 502


def test_no_content_and_not_modified_have_no_body() -> None:
    events = ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n")
    assert [type(e).__name__ for e in events] == ["ResponseHead", "MessageEnd", "ResponseHead", "MessageEnd"]


def test_serialised_heads_parse_back() -> None:
    raw = request_head(b"POST", b"/p?q=1", [(b"Host", b"svc:80"), (b"Transfer-Encoding", b"chunked")])
    raw += chunk(b"abc") + chunk(b"") + last_chunk([(b"grpc-status", b"0")])
    events = RequestParser().feed(raw)
    assert isinstance(events[0], RequestHead) and events[0].target == b"/p?q=1"
    assert events[1:] == [Body(b"abc"), MessageEnd(((b"grpc-status", b"0"),))]
    reply = ResponseParser().feed(response_head(503, [(b"Content-Length", b"0")]))
    assert isinstance(reply[0], ResponseHead) and (reply[0].status, reply[0].reason) == (
        503,
        b"Service Unavailable",
    )


@pytest.mark.parametrize(
    "bad",
    [
        lambda: request_head(b"GET", b"/a\r\nX-Injected: 1", []),
        lambda: request_head(b"GET", b"/", [(b"X-A", b"v\r\nX-Injected: 1")]),
        lambda: request_head(b"GET", b"/", [(b"X A", b"v")]),
        lambda: request_head(b"GET", b"/", [(b"X-A", b"v\0")]),
        lambda: request_head(b"G T", b"/", []),
        lambda: response_head(200, [(b"Set-Cookie", b"a\nb")]),
        lambda: response_head(42, []),
    ],
)
def test_serialising_never_splits_a_message(bad: object) -> None:
    with pytest.raises(Http1Error):
        bad()  # type: ignore[operator]


def test_an_error_keeps_the_events_parsed_before_it() -> None:
    parser = RequestParser()
    with pytest.raises(Http1Error) as info:
        parser.feed(b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost : a\r\n\r\n")
    assert info.value.status == 400
    assert [type(e).__name__ for e in info.value.events] == ["RequestHead", "MessageEnd"], (
        "/a is still served"
    )
    assert isinstance(info.value.events[0], RequestHead) and info.value.events[0].target == b"/a"
