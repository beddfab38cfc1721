"""The httpGet probe verdict: 200-399 pass, anything else (or garbage) fails, as the kubelet decides."""

from __future__ import annotations

import pytest

from ambit.runtime.netns import http_probe_passed


@pytest.mark.parametrize(
    ("head", "passed"),
    [
        (b"HTTP/1.1 200 OK\r\n", True),
        (b"HTTP/1.0 302 Found\r\nLocation: /x\r\n", True),
        (b"HTTP/1.1 399 Whatever\r\n", True),
        (b"HTTP/1.1 404 Not Found\r\n", False),
        (b"HTTP/1.1 503 Service Unavailable\r\n", False),
        (b"HTTP/1.1 199 Early\r\n", False),
        (b"", False),
        (b"SSH-2.0-OpenSSH\r\n", False),
        (b"HTTP/1.1 abc\r\n", False),
    ],
)
def test_verdict(head: bytes, passed: bool) -> None:
    assert http_probe_passed(head) is passed
