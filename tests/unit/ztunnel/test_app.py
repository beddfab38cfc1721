"""ZtunnelApp's pure helpers: the node directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from ambit.ztunnel.app import node_dir


def test_node_dir(tmp_path: Path) -> None:
    assert node_dir(tmp_path, "node1") == tmp_path / "nodes" / "node1"
    with pytest.raises(ValueError):
        node_dir(tmp_path, "../x")
