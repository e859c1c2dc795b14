"""Fixtures of the mesh suite: every engine-independent test runs on Redis and on memory://."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from mesh_helpers import FAST, MakeMesh, stop_or_dump
from meshsrpc import MeshService, RedisSettings
from meshsrpc.settings import RedisLike
from meshsrpc.testing import loop_factories

# The core calls of the mesh (invoke, broadcast, its messages) also run on uvloop.
_ON_EVERY_LOOP = {"test_mesh_invoke.py", "test_mesh_broadcast.py", "test_mesh_messages.py"}


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """uvloop besides asyncio for the core mesh tests; asyncio alone for the rest."""
    factories = loop_factories()
    if item.path.name in _ON_EVERY_LOOP:
        return factories
    return {"asyncio": factories["asyncio"]}


@pytest.fixture(
    params=["redis", "memory", pytest.param("redis-cluster", marks=pytest.mark.cluster_suite)]
)
def backend(
    request: pytest.FixtureRequest, redis_settings: RedisSettings, memory_url: str
) -> RedisLike:
    """Where the mesh lives: the test's own Redis prefix, or a test-private memory:// hub."""
    if request.param == "redis-cluster":
        return RedisSettings(
            url=request.getfixturevalue("redis_cluster").url, prefix=redis_settings.prefix
        )
    return redis_settings if request.param == "redis" else memory_url


@pytest.fixture
async def make_mesh(backend: RedisLike) -> AsyncIterator[MakeMesh]:
    """Create (and by default start) MeshServices on ``backend``; all stopped after the test."""
    created: list[MeshService] = []

    async def make(key: str = "k", *, start: bool = True, **options: Any) -> MeshService:
        mesh = MeshService(key, **{**FAST, "redis": backend, **options})
        created.append(mesh)
        if start:
            await mesh.start()
        return mesh

    yield make
    for mesh in created:
        await stop_or_dump(mesh)
