"""Fixtures for the proxy core's integration tests: the in-process mesh (loopback addresses, a PKI)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ambit.testing.ztunnel_mesh import Mesh


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    m = Mesh()
    try:
        yield m
    finally:
        await m.close()
