"""The control-plane link's pure helpers: bootstrap addresses."""

from __future__ import annotations

import pytest

from ambit.proxy.control_plane import parse_address


def test_parse_address() -> None:
    assert parse_address("172.30.0.11:15012") == ("172.30.0.11", 15012)
    assert parse_address("[fd00::1]:15012") == ("fd00::1", 15012)
    for bad in ("172.30.0.11", ":15012", "a:b", "1.2.3.4:0", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
