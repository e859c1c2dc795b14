"""One registry test-suite for every backend: Redis, memory, the SQL example, and a
backend without reservations (MeshClientRegistry's fallback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import (
    MeshClientMemoryRegistry,
    MeshClientRedisClusterRegistry,
    MeshClientRedisRegistry,
    MeshClientRegistry,
    RedisSettings,
)
from registry_fixtures import Meta, Nodes, WithoutReservation

# The SQL backend is an example, not part of the package (the repo root is on pythonpath).
from examples.sql_registry import SqliteClientRegistry

BACKENDS = [
    "redis",
    "memory",
    "sqlite",
    "no-reservation",
    pytest.param("redis-cluster", marks=pytest.mark.cluster),
]


@pytest.fixture(params=BACKENDS)
async def nodes(
    request: pytest.FixtureRequest, tmp_path: Path, redis_settings: RedisSettings
) -> AsyncIterator[Nodes]:
    backend: Any
    if request.param == "redis" and redis_settings.is_cluster:
        # --redis-cluster: the "redis" run is on the cluster too.
        backend = MeshClientRedisClusterRegistry[Meta]("_mc:reg", redis=redis_settings)
    elif request.param == "redis":
        backend = MeshClientRedisRegistry[Meta]("_mc:reg", redis=redis_settings)
    elif request.param == "redis-cluster":
        cluster_settings = request.getfixturevalue("redis_cluster_settings")
        backend = MeshClientRedisClusterRegistry[Meta]("_mc:reg", redis=cluster_settings)
    elif request.param == "memory":
        backend = MeshClientMemoryRegistry[Meta]()
    elif request.param == "sqlite":
        backend = SqliteClientRegistry[Meta](str(tmp_path / "registry.db"))
    else:
        backend = WithoutReservation(MeshClientMemoryRegistry[Meta]())
    yield Nodes(backend, MeshClientRegistry(1, backend), MeshClientRegistry(2, backend))
    if hasattr(backend, "aclose"):
        await backend.aclose()
