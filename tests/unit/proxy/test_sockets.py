"""Socket helpers: raw sockaddr parsing (SO_ORIGINAL_DST's answer)."""

from __future__ import annotations

import socket
import struct

import pytest

from ambit.proxy.sockets import OriginalDestinationError, parse_sockaddr


def test_ipv4() -> None:
    raw = (
        struct.pack("=H", socket.AF_INET)
        + struct.pack("!H", 8080)
        + socket.inet_aton("10.96.0.10")
        + bytes(8)
    )
    assert parse_sockaddr(raw) == ("10.96.0.10", 8080)


def test_ipv6() -> None:
    raw = (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!H", 443)
        + bytes(4)
        + socket.inet_pton(socket.AF_INET6, "fd00::10")
        + bytes(4)
    )
    assert parse_sockaddr(raw) == ("fd00::10", 443)


@pytest.mark.parametrize("raw", [b"", b"\x02\x00", struct.pack("=H", 99) + bytes(14)])
def test_garbage(raw: bytes) -> None:
    with pytest.raises(OriginalDestinationError):
        parse_sockaddr(raw)
