"""The client registry in Redis, wire-compatible with TypeScript nodes (WIRE.md §2).

Keys: ``<P>:mesh:<key>:clients`` (hash clientId → JSON value) and
``<P>:mesh:<key>:node:<nodeId>:clients`` (set of clientIds). Every mutation is one
Lua script (``*.lua`` next to this file), so concurrent nodes never interleave.
"""

from __future__ import annotations

import asyncio

from ..errors import RedisConfigurationError
from ..keys import RegistryKeys
from ..settings import RedisLike, create_redis_client, resolve_redis_settings
from ._redis_common import MAX_IN_FLIGHT, RedisRegistryScripts, parse_client_value
from .base import RegisteredClient, TMeta

__all__ = ["MeshClientRedisRegistry", "parse_client_value"]


class MeshClientRedisRegistry(RedisRegistryScripts[TMeta]):
    """Registry backend on Redis, sharing keys and semantics with TypeScript nodes.

    ``redis`` is RedisSettings, a URL, or None (environment, scope ``MESH``). The
    connection opens lazily; call :meth:`aclose` when done.
    """

    def __init__(self, key: str, *, redis: RedisLike = None) -> None:
        settings = resolve_redis_settings(redis)
        if settings.is_memory:
            raise RedisConfigurationError(
                "MeshClientRedisRegistry needs a real Redis; use MeshClientMemoryRegistry "
                "for memory:// meshes"
            )
        super().__init__(create_redis_client(settings), asyncio.Semaphore(MAX_IN_FLIGHT))
        self.key = key
        self._keys = RegistryKeys(settings.key_prefix, key)
        self._base = self._keys.base
        self.clients_key = self._keys.clients

    def node_key(self, node_id: int) -> str:
        """The set of clients owned by ``node_id``."""
        return self._keys.node_clients(node_id)

    def _base_of(self, client_id: str) -> str:
        return self._base

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client, via HSCAN (never one huge HGETALL)."""
        return await self._scan_clients(self._base)

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns: SSCAN its set, HMGET the values in batches."""
        return await self._scan_node(self._base, node_id)

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns and delete its set; return them."""
        return await self._clean_up(self._base, node_id)
