"""The waypoint's HTTP/1.1 decisions that need no connection: what a head means, how a message is framed."""

from __future__ import annotations

from collections import deque

import pytest

from ambit.protocol.http1 import (
    Body,
    Http1Error,
    MessageEnd,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    content_length,
)
from ambit.waypoint.exchange import BodyStream, Request
from ambit.waypoint.http1_client import _complete_body, frame_request, has_empty_body, response_fields
from ambit.waypoint.http1_server import error_response, parse_request_head, plan_response, trailer_fields


def head(raw: bytes) -> RequestHead:
    event = RequestParser().feed(raw)[0]
    assert isinstance(event, RequestHead)
    return event


# -- request heads ---------------------------------------------------------------------------------


def test_origin_form_takes_the_host_and_drops_hop_by_hop_fields() -> None:
    target = parse_request_head(
        head(
            b"GET /a?b=1 HTTP/1.1\r\nHost: svc.ns:8080\r\nConnection: keep-alive, X-Hop\r\n"
            b"X-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Kept: v\r\nCookie: a=1\r\n\r\n"
        )
    )
    assert (target.scheme, target.authority, target.path) == (b"http", b"svc.ns:8080", b"/a?b=1")
    assert target.headers == [(b"te", b"trailers"), (b"x-kept", b"v"), (b"cookie", b"a=1")]
    assert target.te_trailers and not target.has_body and target.upgrade is None


def test_absolute_form_overrides_host() -> None:
    target = parse_request_head(head(b"GET http://other:81/p?q HTTP/1.1\r\nHost: svc\r\n\r\n"))
    assert (target.authority, target.path) == (b"other:81", b"/p?q")
    target = parse_request_head(head(b"GET http://other?q HTTP/1.1\r\nHost: svc\r\n\r\n"))
    assert (target.authority, target.path) == (b"other", b"/?q")


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 needs Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
        (b"GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405),
        (b"POST / HTTP/1.1\r\nHost: a\r\nExpect: gzip\r\nContent-Length: 1\r\n\r\n", 417),
        (
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: 3\r\n\r\n",
            400,
        ),
    ],
)
def test_refused_heads(raw: bytes, status: int) -> None:
    with pytest.raises(Http1Error) as info:
        parse_request_head(head(raw))
    assert info.value.status == status


def test_http10_without_host_and_asterisk() -> None:
    target = parse_request_head(head(b"GET /x HTTP/1.0\r\n\r\n"))
    assert (target.authority, target.path) == (b"", b"/x")
    target = parse_request_head(head(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"))
    assert target.path == b"*"


def test_body_expect_and_upgrade() -> None:
    target = parse_request_head(
        head(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 9\r\n\r\n")
    )
    assert target.has_body and target.expect_continue
    assert (b"content-length", b"9") in target.headers and all(n != b"expect" for n, _ in target.headers)
    assert not parse_request_head(head(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")).has_body
    assert parse_request_head(
        head(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    ).has_body
    upgrade = parse_request_head(
        head(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
    )
    assert upgrade.upgrade == b"websocket" and all(
        n not in (b"upgrade", b"connection") for n, _ in upgrade.headers
    )
    # an Upgrade header without the connection option is no upgrade
    plain = parse_request_head(head(b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"))
    assert plain.upgrade is None


# -- response framing ------------------------------------------------------------------------------


def test_content_length_is_kept_when_consistent() -> None:
    assert content_length([(b"content-length", b"5"), (b"content-length", b"5, 5")]) == 5
    assert content_length([(b"content-length", b"5"), (b"content-length", b"6")]) is None
    assert content_length([(b"content-length", b"-1")]) is None
    assert content_length([]) is None
    plan = plan_response(200, [(b"content-length", b"3")], head_request=False, version="1.1", keep_alive=True)
    assert plan.length == 3 and not plan.chunked and not plan.close
    assert b"content-length: 3\r\n" in plan.head and b"connection" not in plan.head


def test_no_length_is_chunked_for_11_and_close_delimited_for_10() -> None:
    chunked = plan_response(200, [], head_request=False, version="1.1", keep_alive=True, te_trailers=True)
    assert chunked.chunked and chunked.trailers and not chunked.close
    assert b"transfer-encoding: chunked\r\n" in chunked.head
    assert not plan_response(200, [], head_request=False, version="1.1", keep_alive=True).trailers
    inconsistent = plan_response(
        200,
        [(b"content-length", b"3"), (b"content-length", b"4")],
        head_request=False,
        version="1.1",
        keep_alive=True,
    )
    assert inconsistent.chunked and b"content-length" not in inconsistent.head
    closing = plan_response(200, [], head_request=False, version="1.0", keep_alive=True)
    assert closing.close and closing.length is None and not closing.chunked
    assert b"connection: close\r\n" in closing.head and b"transfer-encoding" not in closing.head
    kept = plan_response(200, [(b"content-length", b"2")], head_request=False, version="1.0", keep_alive=True)
    assert not kept.close and b"connection: keep-alive\r\n" in kept.head


@pytest.mark.parametrize(
    ("status", "head_request", "length_header"),
    [(200, True, True), (204, False, False), (304, False, True), (103, False, False)],
)
def test_bodyless_responses(status: int, head_request: bool, length_header: bool) -> None:
    plan = plan_response(
        status, [(b"content-length", b"10")], head_request=head_request, version="1.1", keep_alive=True
    )
    assert not plan.body and not plan.chunked
    assert (b"content-length: 10" in plan.head) is length_header
    assert b"transfer-encoding" not in plan.head


def test_close_and_forwarded_fields() -> None:
    plan = plan_response(
        200,
        [(b"x-a", b"1"), (b"connection", b"x-gone"), (b"x-gone", b"2"), (b"transfer-encoding", b"chunked")],
        head_request=False,
        version="1.1",
        keep_alive=False,
    )
    assert plan.close and plan.head.endswith(b"connection: close\r\n\r\n")
    assert b"x-a: 1" in plan.head and b"x-gone" not in plan.head
    assert plan.head.count(b"transfer-encoding") == 1


def test_trailers_and_error_pages() -> None:
    assert trailer_fields([(b"grpc-status", b"0"), (b"content-length", b"1"), (b"connection", b"x")]) == [
        (b"grpc-status", b"0")
    ]
    events = ResponseParser().feed(error_response(431, "too big"))
    assert isinstance(events[0], ResponseHead) and events[0].status == 431 and not events[0].keep_alive
    assert events[1:] == [Body(b"too big\n"), MessageEnd()]


# -- request framing (upstream) --------------------------------------------------------------------


def request(headers: list[tuple[bytes, bytes]], body: BodyStream, version: str = "1.1") -> Request:
    return Request(b"POST", b"http", b"svc:80", b"/up", headers, body, version=version)


def test_request_with_a_length() -> None:
    framing = frame_request(request([(b"content-length", b"3"), (b"x-a", b"1")], BodyStream()))
    assert framing.head.startswith(b"POST /up HTTP/1.1\r\nhost: svc:80\r\nx-a: 1\r\n")
    assert framing.length == 3 and framing.body and not framing.chunked


def test_request_without_a_length_is_chunked_unless_empty() -> None:
    framing = frame_request(request([], BodyStream(), version="2"))
    assert framing.chunked and framing.body and b"transfer-encoding: chunked\r\n" in framing.head
    empty = frame_request(request([], BodyStream.of()))
    assert not empty.body and b"content-length: 0\r\n" in empty.head  # POST says its empty body
    get = frame_request(Request(b"GET", b"http", b"svc", b"/", [], BodyStream.of()))
    assert not get.body and b"content-length" not in get.head and b"transfer-encoding" not in get.head
    trailers_only = BodyStream.of(b"", [(b"grpc-status", b"0")])
    assert not has_empty_body(trailers_only) and frame_request(request([], trailers_only)).chunked


def test_request_upgrade_te_and_cookies() -> None:
    framing = frame_request(
        Request(
            b"GET",
            b"http",
            b"svc",
            b"/ws",
            [(b"te", b"trailers"), (b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"host", b"spoof")],
            BodyStream.of(),
            version="2",
            upgrade=b"websocket",
        )
    )
    lines = framing.head.split(b"\r\n")
    assert b"host: svc" in lines and b"host: spoof" not in lines
    assert b"cookie: a=1; b=2" in lines and b"upgrade: websocket" in lines
    assert b"connection: upgrade, te" in lines and b"te: trailers" in lines


def test_injected_fields_are_refused() -> None:
    with pytest.raises(Http1Error):
        frame_request(request([(b"x-a", b"v\r\nx-b: 1")], BodyStream.of()))


def test_response_fields_are_lower_case_and_end_to_end() -> None:
    assert response_fields([(b"Content-Length", b"1"), (b"Connection", b"close"), (b"X-A", b"v")]) == [
        (b"content-length", b"1"),
        (b"x-a", b"v"),
    ]


def test_a_response_that_arrived_whole_is_taken_at_once() -> None:
    events: deque[object] = deque([Body(b"he"), Body(b"llo"), MessageEnd(((b"x-t", b"1"),)), Body(b"next")])
    assert _complete_body(events) == (b"hello", [(b"x-t", b"1")])  # type: ignore[arg-type]
    assert list(events) == [Body(b"next")], "only this response's events are taken"


@pytest.mark.parametrize(
    "pending",
    [[Body(b"part")], [], [Body(b"x" * 70_000), MessageEnd()]],
    ids=["the end is still to come", "nothing yet", "too large to take whole"],
)
def test_a_response_still_arriving_is_left_to_stream(pending: list[object]) -> None:
    events: deque[object] = deque(pending)
    assert _complete_body(events) is None  # type: ignore[arg-type]
    assert list(events) == pending, "untouched"
