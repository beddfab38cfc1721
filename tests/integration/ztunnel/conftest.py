"""Fixtures for the ztunnel integration tests; the harness itself is `ambit.testing.ztunnel_mesh`."""

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
