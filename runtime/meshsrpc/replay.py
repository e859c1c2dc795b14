"""Replay protection shared by the nodes of a mesh: a signed SRPC handshake is accepted once.

``MeshSrpcServer`` plugs :class:`RedisReplayGuard` into SRPC's
:class:`~meshsrpc.srpc.auth.ReplayGuard` hook (``srpc`` itself never imports Redis),
so a URL captured from one node is refused by every node while its timestamp is valid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._cluster import ClusterReady
from .keys import replay_key_prefix
from .settings import RedisSettings, create_redis_client, create_redis_cluster_client

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

__all__ = ["RedisReplayGuard"]

# Bounded, so a dead Redis refuses a handshake (HTTP 500) in seconds instead of hanging it.
_TIMEOUT = 2.0


class RedisReplayGuard:
    """Accepted handshakes as ``P:srpc:replay:<mesh key>:<digest>`` keys, written with SET NX PX."""

    def __init__(self, settings: RedisSettings, mesh_key: str) -> None:
        self._client: Redis | RedisCluster
        self._ready: ClusterReady | None = None
        if settings.is_cluster:
            # One key per handshake: the digests spread the keys over the shards.
            self._client = create_redis_cluster_client(
                settings, socket_connect_timeout=_TIMEOUT, socket_timeout=_TIMEOUT
            )
            self._ready = ClusterReady(self._client)
        else:
            self._client = create_redis_client(
                settings, socket_connect_timeout=_TIMEOUT, socket_timeout=_TIMEOUT
            )
        self.key_prefix = replay_key_prefix(settings.key_prefix, mesh_key)

    async def first_use(self, key: str, ttl: float) -> bool:
        """SET NX with a ttl: True only for the first handshake with ``key``."""
        ttl_ms = max(1, round(ttl * 1000))
        if self._ready is not None:
            await self._ready()
        return bool(await self._client.set(self.key_prefix + key, b"1", nx=True, px=ttl_ms))

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()
