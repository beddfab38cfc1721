"""How the waypoint picks a protocol: the Service port's declaration first, then the first bytes."""

from __future__ import annotations

import pytest

from ambit.model.workload import ServicePort
from ambit.waypoint.router import declared_protocol
from ambit.waypoint.server import H2, H2_PREFACE, HTTP1, TCP, sniff


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (ServicePort(80, app_protocol="http"), "http1"),
        (ServicePort(80, app_protocol="HTTP2"), "h2"),
        (ServicePort(80, app_protocol="grpc"), "h2"),
        (ServicePort(80, app_protocol="kubernetes.io/h2c"), "h2"),
        (ServicePort(80, name="http"), "http1"),
        (ServicePort(80, name="http-web"), "http1"),
        (ServicePort(80, name="http2-api"), "h2"),
        (ServicePort(80, name="grpc-echo"), "h2"),
        (ServicePort(80, name="grpc", app_protocol="http"), "http1"),  # appProtocol wins over the name
        (ServicePort(80, name="web"), ""),
        (ServicePort(80, name="tcp-db"), ""),
        (None, ""),
    ],
)
def test_declared_protocol(port: ServicePort | None, expected: str) -> None:
    assert declared_protocol(port) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", None),
        (b"PRI * HTTP/2.0", None),  # a prefix of the preface: wait for more
        (H2_PREFACE, H2),
        (H2_PREFACE + b"\x00\x00\x12\x04", H2),
        (b"GET / HTTP/1.1\r\n", HTTP1),
        (b"POST ", HTTP1),
        (b"GE", None),
        (b"\x16\x03\x01\x02\x00", TCP),  # a TLS ClientHello: opaque
        (b"SSH-2.0-OpenSSH\r\n", TCP),
        (b"get / HTTP/1.1\r\n", TCP),  # methods are upper case
    ],
)
def test_sniff(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected
