"""The loopback upstream behind every router test (``router_harness.App``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from router_harness import App


@pytest.fixture
async def app() -> AsyncIterator[App]:
    upstream = await App().start()
    try:
        yield upstream
    finally:
        await upstream.close()
