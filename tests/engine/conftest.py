"""Fixtures of the engine suite: the same contract on Redis and on memory://."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from meshsrpc import RedisSettings
from meshsrpc.engine import LeaderLockEngine, MeshEngine, open_leader_lock, open_mesh_engine
from meshsrpc.settings import RedisLike, resolve_redis_settings

OpenEngine = Callable[..., MeshEngine]


@pytest.fixture(
    params=["redis", "memory", pytest.param("redis-cluster", marks=pytest.mark.cluster)]
)
def backend(
    request: pytest.FixtureRequest, redis_settings: RedisSettings, memory_url: str
) -> RedisLike:
    """The test's own Redis prefix, or a test-private memory:// hub."""
    if request.param == "redis-cluster":
        return RedisSettings(
            url=request.getfixturevalue("redis_cluster").url, prefix=redis_settings.prefix
        )
    return redis_settings if request.param == "redis" else memory_url


@pytest.fixture
async def open_engine(backend: RedisLike) -> AsyncIterator[OpenEngine]:
    """Open mesh engines on ``backend`` (closed after the test)."""
    engines: list[MeshEngine] = []

    def open_(key: str = "k") -> MeshEngine:
        engine = open_mesh_engine(resolve_redis_settings(backend), key)
        engines.append(engine)
        return engine

    yield open_
    for engine in engines:
        await engine.aclose()


@pytest.fixture
async def lock(backend: RedisLike) -> AsyncIterator[LeaderLockEngine]:
    """A leader-lock engine on ``backend``."""
    engine = open_leader_lock(resolve_redis_settings(backend))
    yield engine
    await engine.aclose()


@pytest.fixture
def lock_key(mesh_prefix: str) -> str:
    """A lock key no other test uses (the session's Redis is shared)."""
    return f"{mesh_prefix}:leader:job"
