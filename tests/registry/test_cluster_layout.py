"""The cluster registry's key layout: one slot per bucket, buckets over every primary."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import MeshClientRedisClusterRegistry, RedisConfigurationError, RedisSettings
from meshsrpc.testing import RedisClusterServer

pytestmark = pytest.mark.cluster


def keyslot(cluster: RedisClusterServer, key: str) -> int:
    reply = cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)
    return int(reply[1:].split(b"\r\n")[0])


@pytest.fixture
async def registry(
    redis_cluster_settings: RedisSettings,
) -> AsyncIterator[MeshClientRedisClusterRegistry[Any]]:
    backend = MeshClientRedisClusterRegistry[Any]("_mc:layout", redis=redis_cluster_settings)
    yield backend
    await backend.aclose()


def test_the_keys_of_one_bucket_share_one_slot(
    registry: MeshClientRedisClusterRegistry[Any], redis_cluster: RedisClusterServer
) -> None:
    for bucket in (0, 1, 77, registry.buckets - 1):
        slots = {keyslot(redis_cluster, registry.clients_key(bucket))}
        slots |= {keyslot(redis_cluster, registry.node_key(bucket, n)) for n in (1, 2, 12345)}
        assert len(slots) == 1


async def test_a_clients_entry_and_its_node_set_are_in_one_slot(
    registry: MeshClientRedisClusterRegistry[Any], redis_cluster: RedisClusterServer
) -> None:
    await registry.register("alice", 3, None)
    bucket = registry.bucket_of("alice")
    owner = redis_cluster.owner_of(registry.clients_key(bucket))
    assert owner.command("HEXISTS", registry.clients_key(bucket), "alice") == b":1\r\n"
    assert owner.command("SISMEMBER", registry.node_key(bucket, 3), "alice") == b":1\r\n"


def test_the_buckets_spread_evenly_over_every_primary(
    registry: MeshClientRedisClusterRegistry[Any], redis_cluster: RedisClusterServer
) -> None:
    owners = Counter(
        redis_cluster.owner_of(registry.clients_key(b)).port for b in range(registry.buckets)
    )
    assert len(owners) == 3
    mean = registry.buckets / 3
    assert all(abs(count - mean) <= 0.15 * mean for count in owners.values())


async def test_clients_spread_over_the_buckets_and_cleanup_visits_them_all(
    registry: MeshClientRedisClusterRegistry[Any],
) -> None:
    ids = [f"c{i}" for i in range(1000)]
    for client_id in ids:
        await registry.register(client_id, 7, None)
    assert len({registry.bucket_of(c) for c in ids}) > registry.buckets * 0.9
    removed = await registry.cleanup_node(7)
    assert sorted(c.client_id for c in removed) == sorted(ids)
    assert await registry.list_clients() == []


async def test_iter_clients_yields_the_registry_one_bucket_at_a_time(
    registry: MeshClientRedisClusterRegistry[Any],
) -> None:
    for i in range(300):
        await registry.register(f"c{i}", 1, None)
    parts = [part async for part in registry.iter_clients()]
    assert len(parts) == registry.buckets
    assert max(len(part) for part in parts) < 300
    assert sorted(c.client_id for part in parts for c in part) == sorted(
        f"c{i}" for i in range(300)
    )


def test_the_cluster_registry_refuses_a_single_instance() -> None:
    with pytest.raises(RedisConfigurationError, match="needs a Redis Cluster"):
        MeshClientRedisClusterRegistry[Any]("_mc:x", redis="redis://127.0.0.1:1/0")
