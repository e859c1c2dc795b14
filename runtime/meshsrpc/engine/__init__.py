"""Backends of the mesh: the interface (``base``), Redis (``redis``), Redis Cluster
(``redis_cluster``) and in-process (``memory``)."""

from __future__ import annotations

from ..settings import RedisSettings
from .base import LeaderLockEngine, MeshEngine, MeshKeys
from .memory import MemoryHub, memory_hub

__all__ = [
    "LeaderLockEngine",
    "MemoryHub",
    "MeshEngine",
    "MeshKeys",
    "memory_hub",
    "open_leader_lock",
    "open_mesh_engine",
]


def open_mesh_engine(
    settings: RedisSettings, key: str, *, health_check_interval: float = 5.0
) -> MeshEngine:
    """The engine ``settings`` select (``memory://`` or Redis) for mesh ``key``.

    Opens no connection yet; the first operation does.
    """
    keys = MeshKeys(settings.key_prefix, key)
    if settings.is_memory:
        from .memory import MemoryMeshEngine

        return MemoryMeshEngine(memory_hub(settings.memory_name), keys)
    if settings.is_cluster:
        from .redis_cluster import RedisClusterMeshEngine

        return RedisClusterMeshEngine(settings, key, health_check_interval=health_check_interval)
    from .redis import RedisMeshEngine

    return RedisMeshEngine(settings, key, health_check_interval=health_check_interval)


def open_leader_lock(settings: RedisSettings) -> LeaderLockEngine:
    """The leader-lock engine ``settings`` select."""
    if settings.is_memory:
        from .memory import MemoryLeaderLock

        return MemoryLeaderLock(memory_hub(settings.memory_name))
    if settings.is_cluster:
        from .redis_cluster import RedisClusterLeaderLock

        return RedisClusterLeaderLock(settings)
    from .redis import RedisLeaderLock

    return RedisLeaderLock(settings)
