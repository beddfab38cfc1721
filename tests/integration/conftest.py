"""Integration tier: in-process, loopback, real TLS; every async test runs on asyncio and uvloop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
import uvloop

from ambit.testing.hbone_env import HboneEnv


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def env() -> AsyncIterator[HboneEnv]:
    e = HboneEnv.create()
    try:
        yield e
    finally:
        await e.close()
