"""Interop tier: ambit against Node.js; every async test runs on asyncio and uvloop (they are cheap).

uvloop's TLS transport is a separate implementation from asyncio's, so both meet Node's TLS stack.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
