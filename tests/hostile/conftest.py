"""Fixtures of the hostile-peer tests: the SRPC suite's servers and clients.

Every test runs on each standalone transport (picows, websockets) and each event loop
(asyncio, uvloop); asyncio's own accept-error report is checked on asyncio alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from meshsrpc.testing import loop_factories

from tests.srpc.conftest import make_client, make_server

__all__ = ["make_client", "make_server"]

# What these tests check is asyncio's own behaviour (uvloop's differs: see the test).
_ASYNCIO_ONLY = {"test_running_out_of_descriptors_is_reported_once_per_interval"}


@pytest.fixture(autouse=True)
def _each_transport(srpc_transport: str) -> str:
    """Every hostile-peer test runs on each standalone transport (websockets, picows)."""
    return srpc_transport


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every hostile-peer test runs on each event loop (asyncio, uvloop)."""
    factories = loop_factories()
    if getattr(item, "originalname", item.name) in _ASYNCIO_ONLY:
        return {"asyncio": factories["asyncio"]}
    return factories
