"""The forwarded header (RFC 7239): what the HBONE client writes, what the server reads back."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ambit.protocol.forwarded import format_forwarded, parse_forwarded
from ambit.protocol.hbone import request_headers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('for="10.0.0.1"', ("10.0.0.1", None)),
        ("for=10.0.0.1", ("10.0.0.1", None)),
        ('for="10.0.0.1:4711"', ("10.0.0.1", None)),
        (
            'for="[fd00::1]:4711";host=web.default.svc.cluster.local',
            ("fd00::1", "web.default.svc.cluster.local"),
        ),
        ('for="[fd00::1]"', ("fd00::1", None)),
        ('For="10.0.0.1" ; Host="a.b"', ("10.0.0.1", "a.b")),
        ('for="10.0.0.1", for="10.0.0.2"', ("10.0.0.1", None)),  # the first element is the client
        ('for="::ffff:10.0.0.1"', ("10.0.0.1", None)),
        ("for=unknown", (None, None)),
        ("for=_hidden", (None, None)),
        ('for="[fd00::1"', (None, None)),
        ('for="[fd00::1]x"', (None, None)),
        ("for=10.0.0.1;for=10.0.0.2", (None, None)),  # duplicated parameter: invalid
        ('host="a,b";for=10.0.0.1', ("10.0.0.1", "a,b")),  # separators inside quotes
        ("", (None, None)),
        ("garbage", (None, None)),
    ],
)
def test_parse_forwarded(value: str, expected: tuple[str | None, str | None]) -> None:
    assert parse_forwarded([("forwarded", value)]) == expected


def test_no_header() -> None:
    assert parse_forwarded([("baggage", "x=y")]) == (None, None)


def test_what_our_client_sends_parses() -> None:
    headers = request_headers("10.244.1.2", source_port=40000, host="web.default.svc.cluster.local")
    assert parse_forwarded(headers) == ("10.244.1.2", "web.default.svc.cluster.local")


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (("10.244.0.3", None, None), 'for="10.244.0.3"'),
        (("10.244.0.3", 4711, None), 'for="10.244.0.3:4711"'),
        (("fd00::3", None, None), 'for="[fd00::3]"'),
        (
            ("fd00::3", 4711, "reviews.default.svc.cluster.local"),
            'for="[fd00::3]:4711";host=reviews.default.svc.cluster.local',
        ),
        (("10.0.0.1", None, ""), 'for="10.0.0.1"'),  # an empty host is left out
        (("10.0.0.1", None, 'a "b";c'), 'for="10.0.0.1";host="a \\"b\\";c"'),  # not a token: quoted
    ],
)
def test_format_forwarded(args: tuple[str, int | None, str | None], value: str) -> None:
    ip, port, host = args
    assert format_forwarded(ip, source_port=port, host=host) == value


ADDRESSES = st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6))
# What a header value can carry: visible ASCII and spaces (h2 refuses CR, LF and NUL).
HOSTS = st.one_of(
    st.none(),
    st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,60}[a-z0-9])?", fullmatch=True),  # a service FQDN
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),  # anything else
)


@given(ADDRESSES, st.one_of(st.none(), st.integers(1, 65535)), HOSTS)
def test_writer_then_parser_round_trip(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None, host: str | None
) -> None:
    value = format_forwarded(str(address), source_port=port, host=host)
    expected_ip = (
        address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
    )
    ip, parsed_host = parse_forwarded([("Forwarded", value)])
    assert ip == str(expected_ip)
    assert parsed_host == (host or None)
    # a later element (a proxy further along) never changes who the client was
    assert parse_forwarded([("forwarded", value + ', for="192.0.2.1"')]) == (ip, parsed_host)
