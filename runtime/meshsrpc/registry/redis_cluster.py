"""The client registry on a Redis Cluster: a fixed number of buckets spread over the shards.

A Python-only layout (docs/wire.md, "Cluster layout"); single-instance and Sentinel
meshes keep WIRE.md §2. Client id → bucket by CRC-32; bucket ``b`` is the hash
``<P>:mesh:<key>:{<tag_b>}:clients`` and one set per node
``<P>:mesh:<key>:{<tag_b>}:node:<nodeId>:clients``, sharing the hash tag, so every
script of the single-instance registry (``*.lua`` of this package) runs unchanged on
one bucket, in one slot. The tags are chosen so that bucket ``b`` lands in the
``b``-th equal slice of the 16384 slots: the buckets spread evenly over the shards.
``list_clients``, ``list_clients_for_node`` and ``cleanup_node`` visit the buckets
(concurrently, bounded); nothing scans the keyspace.
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from typing import TYPE_CHECKING, TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .._cluster import ClusterReady
from ..errors import RedisConfigurationError
from ..settings import RedisLike, create_redis_cluster_client, resolve_redis_settings
from ._redis_common import MAX_IN_FLIGHT, RedisRegistryScripts
from .base import RegisteredClient, TMeta

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster

__all__ = ["DEFAULT_BUCKETS", "MeshClientRedisClusterRegistry", "bucket_of", "bucket_tags"]

#: Buckets of a cluster registry. Part of the layout: every node of a mesh must agree.
DEFAULT_BUCKETS = 256
# Buckets visited at once by list/cleanup: enough to overlap round trips to every shard,
# few enough that one listing never crowds out the registrations of live connections.
_BUCKET_CONCURRENCY = 16

_T = TypeVar("_T")


def bucket_of(client_id: str, buckets: int) -> int:
    """The bucket of ``client_id``: CRC-32 of its UTF-8 bytes, modulo ``buckets``."""
    return binascii.crc32(client_id.encode()) % buckets


@lru_cache(maxsize=64)
def bucket_tags(base: str, buckets: int) -> tuple[str, ...]:
    """Key prefix ``<base>:{<b>.<j>}`` of each bucket: ``j`` is the smallest number that
    puts bucket ``b``'s keys in the ``b``-th slice of the slot range."""
    tags: list[str] = []
    for bucket in range(buckets):
        low = bucket * REDIS_CLUSTER_HASH_SLOTS // buckets
        high = max((bucket + 1) * REDIS_CLUSTER_HASH_SLOTS // buckets, low + 1)
        j = 0
        while True:
            tag = f"{base}:{{{bucket}.{j}}}"
            if low <= key_slot(f"{tag}:clients".encode()) < high:
                break
            j += 1
        tags.append(tag)
    return tuple(tags)


class _ReadySemaphore:
    """The in-flight bound, entered only once the client knows the slot map."""

    def __init__(self, client: RedisCluster) -> None:
        self._ready = ClusterReady(client)
        self._semaphore = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def __aenter__(self) -> None:
        await self._ready()
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


class MeshClientRedisClusterRegistry(RedisRegistryScripts[TMeta]):
    """Registry backend on a Redis Cluster, with the bucketed cluster layout.

    ``redis`` must select a cluster (``redis+cluster://...`` or ``cluster=True``).
    ``buckets`` is part of the layout: every node of the mesh must use the same.
    """

    def __init__(
        self, key: str, *, redis: RedisLike = None, buckets: int = DEFAULT_BUCKETS
    ) -> None:
        settings = resolve_redis_settings(redis)
        if not settings.is_cluster:
            raise RedisConfigurationError(
                f"MeshClientRedisClusterRegistry needs a Redis Cluster, not {settings.describe()}"
            )
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        client: RedisCluster = create_redis_cluster_client(settings)
        super().__init__(client, _ReadySemaphore(client))
        self.key = key
        self.buckets = buckets
        self._tags = bucket_tags(f"{settings.key_prefix}:mesh:{key}", buckets)

    def clients_key(self, bucket: int) -> str:
        """The hash clientId → value of ``bucket``."""
        return f"{self._tags[bucket]}:clients"

    def node_key(self, bucket: int, node_id: int) -> str:
        """The set of ``node_id``'s clients in ``bucket``."""
        return f"{self._tags[bucket]}:node:{node_id}:clients"

    def bucket_of(self, client_id: str) -> int:
        """The bucket holding ``client_id``."""
        return bucket_of(client_id, self.buckets)

    def _base_of(self, client_id: str) -> str:
        return self._tags[bucket_of(client_id, self.buckets)]

    async def iter_clients(self) -> AsyncIterator[list[RegisteredClient[TMeta]]]:
        """Every active client, one bucket at a time (memory: one bucket, not the registry)."""
        for tag in self._tags:
            yield await self._scan_clients(tag)

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client: each bucket HSCANned, several buckets at once."""
        return await self._each_bucket(self._scan_clients)

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns: per bucket, SSCAN its set and HMGET values."""

        async def one(tag: str) -> list[RegisteredClient[TMeta]]:
            return await self._scan_node(tag, node_id)

        return await self._each_bucket(one)

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns, bucket by bucket; return them."""

        async def one(tag: str) -> list[RegisteredClient[TMeta]]:
            return await self._clean_up(tag, node_id)

        return await self._each_bucket(one)

    async def _each_bucket(self, visit: Callable[[str], Awaitable[list[_T]]]) -> list[_T]:
        """``visit`` every bucket (by its tag), at most ``_BUCKET_CONCURRENCY`` at once;
        the results concatenated in bucket order."""
        results: list[list[_T]] = [[] for _ in range(self.buckets)]
        next_bucket = iter(range(self.buckets))

        async def worker() -> None:
            for bucket in next_bucket:
                results[bucket] = await visit(self._tags[bucket])

        async with asyncio.TaskGroup() as group:
            for _ in range(min(_BUCKET_CONCURRENCY, self.buckets)):
                group.create_task(worker())
        return [item for part in results for item in part]
