"""ZtunnelApp's pure helpers: the node directory and the bootstrap addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambit.ztunnel.app import node_dir, parse_address


def test_parse_address_and_node_dir(tmp_path: Path) -> None:
    assert parse_address("172.30.0.11:15012") == ("172.30.0.11", 15012)
    assert parse_address("[fd00::1]:15012") == ("fd00::1", 15012)
    for bad in ("172.30.0.11", ":15012", "a:b", "1.2.3.4:0", "1.2.3.4:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert node_dir(tmp_path, "node1") == tmp_path / "nodes" / "node1"
    with pytest.raises(ValueError):
        node_dir(tmp_path, "../x")
