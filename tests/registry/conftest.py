"""One registry test-suite for every backend: Redis, memory, the SQL example, and a
backend without reservations (MeshClientRegistry's fallback)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import (
    MeshClientMemoryRegistry,
    MeshClientRedisRegistry,
    MeshClientRegistry,
    RedisSettings,
)
from registry_fixtures import Meta, Nodes, WithoutReservation

# The SQL backend is an example, not part of the package (the repo root is on pythonpath).
from examples.sql_registry import SqliteClientRegistry

BACKENDS = ["redis", "memory", "sqlite", "no-reservation"]


@pytest.fixture(params=BACKENDS)
async def nodes(
    request: pytest.FixtureRequest, tmp_path: Path, redis_settings: RedisSettings
) -> AsyncIterator[Nodes]:
    backend: Any
    if request.param == "redis":
        backend = MeshClientRedisRegistry[Meta]("_mc:reg", redis=redis_settings)
    elif request.param == "memory":
        backend = MeshClientMemoryRegistry[Meta]()
    elif request.param == "sqlite":
        backend = SqliteClientRegistry[Meta](str(tmp_path / "registry.db"))
    else:
        backend = WithoutReservation(MeshClientMemoryRegistry[Meta]())
    yield Nodes(backend, MeshClientRegistry(1, backend), MeshClientRegistry(2, backend))
    if hasattr(backend, "aclose"):
        await backend.aclose()
