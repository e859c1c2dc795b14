"""Fixtures of the direct data-plane tests: MeshServices on the test's Redis prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from direct_helpers import FAST, SECRET, MakeMesh
from meshsrpc import DirectSettings, MeshService, RedisSettings
from meshsrpc.testing import loop_factories

# The calls over direct channels also run on uvloop (its transports are not
# asyncio.Transport subclasses; its add_reader and write buffering differ).
_ON_EVERY_LOOP = {"test_direct_calls.py", "test_direct_backpressure.py"}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """uvloop besides asyncio for the direct calls; asyncio alone for the rest."""
    factories = loop_factories()
    if item.path.name in _ON_EVERY_LOOP:
        return factories
    return {"asyncio": factories["asyncio"]}


@pytest.fixture
def direct() -> DirectSettings:
    """Direct channels on, on loopback, with the tests' mesh secret."""
    return DirectSettings(secret=SECRET, retry_interval=0.2)


@pytest.fixture
async def make_mesh(
    redis_settings: RedisSettings, direct: DirectSettings
) -> AsyncIterator[MakeMesh]:
    """``make_mesh(direct=...)``: a started MeshService of mesh ``k``; all stopped after."""
    created: list[MeshService] = []

    async def make(key: str = "k", **options: Any) -> MeshService:
        mesh = MeshService(key, **{**FAST, "redis": redis_settings, "direct": direct, **options})
        created.append(mesh)
        await mesh.start()
        return mesh

    yield make
    for mesh in reversed(created):
        async with asyncio.timeout(15):
            await mesh.stop()
