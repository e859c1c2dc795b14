"""Fixtures of the direct data-plane tests: MeshServices on the test's Redis prefix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from direct_helpers import FAST, SECRET, MakeMesh
from meshsrpc import DirectSettings, MeshService, RedisSettings


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
