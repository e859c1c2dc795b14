"""The cluster engine: its key layout, and its subscription surviving a primary failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from meshsrpc import RedisSettings
from meshsrpc.engine import open_mesh_engine
from meshsrpc.engine.base import MessageSource, SubscriptionEvent
from meshsrpc.engine.redis_cluster import ClusterMeshKeys, RedisClusterMeshEngine
from meshsrpc.testing import RedisClusterServer

pytestmark = pytest.mark.cluster


def keyslot(cluster: RedisClusterServer, key: str) -> int:
    reply = cluster.nodes[0].command("CLUSTER", "KEYSLOT", key)
    return int(reply[1:].split(b"\r\n")[0])


def test_a_cluster_selects_the_cluster_engine(redis_cluster_settings: RedisSettings) -> None:
    assert isinstance(open_mesh_engine(redis_cluster_settings, "k"), RedisClusterMeshEngine)


def test_the_mesh_keys_share_one_slot(redis_cluster: RedisClusterServer) -> None:
    keys = ClusterMeshKeys("app", "chat")
    names = [keys.next_id, keys.heartbeats, keys.nodes, keys.leader]
    assert len({keyslot(redis_cluster, name) for name in names}) == 1


def test_the_channels_keep_their_wire_names_and_inboxes_spread_over_the_primaries(
    redis_cluster: RedisClusterServer,
) -> None:
    keys = ClusterMeshKeys("app", "chat")
    assert keys.inbox(7) == "app:mesh:chat:node:7"
    assert keys.broadcast == "app:mesh:chat:broadcast"
    owners = {redis_cluster.owner_of(keys.inbox(n)).port for n in range(1, 31)}
    assert len(owners) == 3


async def wait_for(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_subscription_moves_to_the_replica_that_took_over_its_primary(
    redis_cluster_factory: Callable[[], RedisClusterServer],
) -> None:
    cluster = redis_cluster_factory()
    settings = RedisSettings(url=cluster.url, prefix="fo")
    receiver = RedisClusterMeshEngine(settings, "k", health_check_interval=0.2)
    sender = RedisClusterMeshEngine(settings, "k")
    got: list[bytes] = []
    events: list[SubscriptionEvent] = []
    try:
        node_id = await receiver.allocate_instance_id()
        await receiver.subscribe(node_id, lambda source, data: got.append(data), events.append)
        await sender.publish_to_node(node_id, b"before")
        await wait_for(lambda: got == [b"before"], timeout=5)

        cluster.kill_primary(cluster.owner_of(receiver.keys.inbox(node_id)))
        await wait_for(lambda: SubscriptionEvent.RESTORED in events, timeout=20)
        assert events == [SubscriptionEvent.LOST, SubscriptionEvent.RESTORED]

        async def publish_after() -> None:
            while True:
                try:
                    await sender.publish_to_node(node_id, b"after")
                    return
                except Exception:
                    await asyncio.sleep(0.1)

        await asyncio.wait_for(publish_after(), timeout=20)
        await wait_for(lambda: got[-1:] == [b"after"], timeout=5)
    finally:
        await receiver.aclose()
        await sender.aclose()


async def test_a_broadcast_reaches_every_subscriber(redis_cluster_settings: RedisSettings) -> None:
    engines = [RedisClusterMeshEngine(redis_cluster_settings, "b") for _ in range(3)]
    got: list[tuple[int, MessageSource]] = []
    try:
        for engine in engines:
            node_id = await engine.allocate_instance_id()
            await engine.subscribe(
                node_id, lambda source, data, n=node_id: got.append((n, source)), lambda e: None
            )
        await engines[0].publish_broadcast(b"all")
        await wait_for(lambda: len(got) == 3, timeout=5)
        assert {source for _, source in got} == {MessageSource.BROADCAST}
    finally:
        for engine in engines:
            await engine.aclose()
