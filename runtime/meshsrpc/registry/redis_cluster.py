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
from typing import TYPE_CHECKING, Generic, TypeVar, cast

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from .._cluster import ClusterReady
from .._lua import lua_source
from ..errors import ClientConflictError, RedisConfigurationError
from ..settings import RedisLike, create_redis_cluster_client, resolve_redis_settings
from .base import RegisteredClient, TMeta
from .metadata import encode_metadata, now_ms
from .redis import _MAX_IN_FLIGHT, _SCAN_COUNT, _client_id, parse_client_value

if TYPE_CHECKING:
    from redis.asyncio import RedisCluster
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_BUCKETS", "MeshClientRedisClusterRegistry", "bucket_of", "bucket_tags"]

#: Buckets of a cluster registry. Part of the layout: every node of a mesh must agree.
DEFAULT_BUCKETS = 256
# Buckets visited at once by list/cleanup: enough to overlap round trips to every shard,
# few enough that one listing never crowds out the registrations of live connections.
_BUCKET_CONCURRENCY = 16

_CONFLICT = 2
_SUPERSEDED = 1
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
        self._semaphore = asyncio.Semaphore(_MAX_IN_FLIGHT)

    async def __aenter__(self) -> None:
        await self._ready()
        await self._semaphore.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


class MeshClientRedisClusterRegistry(Generic[TMeta]):
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
        self.key = key
        self.buckets = buckets
        self._tags = bucket_tags(f"{settings.key_prefix}:mesh:{key}", buckets)
        self._redis: RedisCluster = create_redis_cluster_client(settings)
        self._in_flight = _ReadySemaphore(self._redis)
        self._register = self._script("register")
        self._activate = self._script("activate")
        self._unregister = self._script("unregister")
        self._update_metadata = self._script("update_metadata")
        self._cleanup_node = self._script("cleanup_node")

    def clients_key(self, bucket: int) -> str:
        """The hash clientId → value of ``bucket``."""
        return f"{self._tags[bucket]}:clients"

    def node_key(self, bucket: int, node_id: int) -> str:
        """The set of ``node_id``'s clients in ``bucket``."""
        return f"{self._tags[bucket]}:node:{node_id}:clients"

    def bucket_of(self, client_id: str) -> int:
        """The bucket holding ``client_id``."""
        return bucket_of(client_id, self.buckets)

    async def register(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Make ``node_id`` the owner (active); see MeshClientRegistryBackend.register."""
        return await self._write(client_id, node_id, metadata, allow_supersede, "active")

    async def reserve(
        self, client_id: str, node_id: int, metadata: TMeta, *, allow_supersede: bool = True
    ) -> int | None:
        """Register in the hidden ``pending`` state, settling conflicts and supersedes now."""
        return await self._write(client_id, node_id, metadata, allow_supersede, "pending")

    async def activate(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Make this node's reservation visible; False if another node took the client."""
        text = encode_metadata(metadata)
        bucket = self.bucket_of(client_id)
        async with self._in_flight:
            done = await self._activate(
                keys=[self.clients_key(bucket), self.node_key(bucket, node_id)],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def unregister(self, client_id: str, node_id: int) -> bool:
        """Remove the client if ``node_id`` owns it."""
        bucket = self.bucket_of(client_id)
        async with self._in_flight:
            removed = await self._unregister(
                keys=[self.clients_key(bucket), self.node_key(bucket, node_id)],
                args=[client_id, node_id],
            )
        return bool(removed)

    async def update_metadata(self, client_id: str, node_id: int, metadata: TMeta) -> bool:
        """Replace the metadata if ``node_id`` owns the client; keeps connected_at and state."""
        text = encode_metadata(metadata)
        async with self._in_flight:
            done = await self._update_metadata(
                keys=[self.clients_key(self.bucket_of(client_id))],
                args=[client_id, node_id, text or "null", "0" if text is None else "1"],
            )
        return bool(done)

    async def get_client(self, client_id: str) -> RegisteredClient[TMeta] | None:
        """One HGET in the client's bucket; None when unknown, pending or unparsable."""
        async with self._in_flight:
            raw = await self._redis.hget(self.clients_key(self.bucket_of(client_id)), client_id)
        return None if raw is None else self._parse(client_id, raw)

    async def iter_clients(self) -> AsyncIterator[list[RegisteredClient[TMeta]]]:
        """Every active client, one bucket at a time (memory: one bucket, not the registry)."""
        for bucket in range(self.buckets):
            yield await self._list_bucket(bucket)

    async def list_clients(self) -> list[RegisteredClient[TMeta]]:
        """Every active client: each bucket HSCANned, several buckets at once."""
        parts = await self._each_bucket(self._list_bucket)
        return [client for part in parts for client in part]

    async def list_clients_for_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """The active clients ``node_id`` owns: per bucket, SSCAN its set and HMGET values."""

        async def one(bucket: int) -> list[RegisteredClient[TMeta]]:
            return await self._list_node_bucket(bucket, node_id)

        parts = await self._each_bucket(one)
        return [client for part in parts for client in part]

    async def cleanup_node(self, node_id: int) -> list[RegisteredClient[TMeta]]:
        """Remove every client ``node_id`` still owns, bucket by bucket; return them."""

        async def one(bucket: int) -> list[RegisteredClient[TMeta]]:
            async with self._in_flight:
                reply = await self._cleanup_node(
                    keys=[self.clients_key(bucket), self.node_key(bucket, node_id)],
                    args=[node_id],
                )
            flat = cast("list[bytes]", reply)
            removed: list[RegisteredClient[TMeta]] = []
            # The script has removed them all: one bad entry must not lose the others' report.
            for i in range(0, len(flat) - 1, 2):
                client_id = _client_id(flat[i])
                client = None if client_id is None else self._parse(client_id, flat[i + 1])
                if client is not None:
                    removed.append(client)
            return removed

        parts = await self._each_bucket(one)
        return [client for part in parts for client in part]

    async def aclose(self) -> None:
        """Close the cluster connections."""
        await self._redis.aclose()

    async def _each_bucket(self, visit: Callable[[int], Awaitable[_T]]) -> list[_T]:
        """``visit`` every bucket, at most ``_BUCKET_CONCURRENCY`` at once; results in order."""
        results: list[_T | None] = [None] * self.buckets
        next_bucket = iter(range(self.buckets))

        async def worker() -> None:
            for bucket in next_bucket:
                results[bucket] = await visit(bucket)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(_BUCKET_CONCURRENCY, self.buckets)):
                group.create_task(worker())
        return cast("list[_T]", results)

    async def _list_bucket(self, bucket: int) -> list[RegisteredClient[TMeta]]:
        found: dict[str, RegisteredClient[TMeta]] = {}
        async with self._in_flight:
            scan = self._redis.hscan_iter(self.clients_key(bucket), count=_SCAN_COUNT)
            async for field, raw in scan:
                client_id = _client_id(field)
                if client_id is not None and client_id not in found:
                    client = self._parse(client_id, raw)
                    if client is not None:
                        found[client_id] = client
        return list(found.values())

    async def _list_node_bucket(self, bucket: int, node_id: int) -> list[RegisteredClient[TMeta]]:
        found: dict[str, RegisteredClient[TMeta]] = {}
        async with self._in_flight:
            members = [
                client_id
                async for member in self._redis.sscan_iter(
                    self.node_key(bucket, node_id), count=_SCAN_COUNT
                )
                if (client_id := _client_id(member)) is not None
            ]
            for start in range(0, len(members), _SCAN_COUNT):
                ids = [c for c in members[start : start + _SCAN_COUNT] if c not in found]
                if not ids:
                    continue
                values = await self._redis.hmget(self.clients_key(bucket), ids)
                for client_id, raw in zip(ids, values, strict=True):
                    client = None if raw is None else self._parse(client_id, raw)
                    # The set and the hash change together, but re-check ownership anyway.
                    if client is not None and client.node_id == node_id:
                        found[client_id] = client
        return list(found.values())

    async def _write(
        self, client_id: str, node_id: int, metadata: TMeta, allow_supersede: bool, state: str
    ) -> int | None:
        text = encode_metadata(metadata)
        bucket = self.bucket_of(client_id)
        async with self._in_flight:
            reply = await self._register(
                keys=[self.clients_key(bucket), self.node_key(bucket, node_id)],
                args=[
                    client_id,
                    node_id,
                    text or "null",
                    "0" if text is None else "1",
                    # The previous owner's set of the same bucket: same hash tag, same slot.
                    f"{self._tags[bucket]}:node:",
                    now_ms(),
                    "1" if allow_supersede else "0",
                    state,
                ],
            )
        outcome = cast("list[int]", reply)
        if outcome[0] == _CONFLICT:
            raise ClientConflictError(client_id, int(outcome[1]))
        if outcome[0] == _SUPERSEDED:
            return int(outcome[1])
        return None

    def _parse(self, client_id: str, raw: bytes | str) -> RegisteredClient[TMeta] | None:
        return cast("RegisteredClient[TMeta] | None", parse_client_value(client_id, raw))

    def _script(self, name: str) -> AsyncScript:
        return self._redis.register_script(lua_source(__package__, name))
