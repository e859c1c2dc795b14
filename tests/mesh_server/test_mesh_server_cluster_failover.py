"""A Redis Cluster primary fails over to its replica under a running 3-node mesh."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from mesh_server_support import Client, MakeClient, MakeNode, Node, Recorder, eventually, join
from meshsrpc import MeshClientRedisClusterRegistry, RedisSettings
from meshsrpc.testing import RedisClusterServer

pytestmark = pytest.mark.cluster

CLIENTS = 300
# Longer than a failover (node timeout 1 s + election): live nodes are never expired.
FAILOVER_SAFE = {"node_ttl": 8.0}


async def registry_snapshot(settings: RedisSettings) -> dict[str, int]:
    registry = MeshClientRedisClusterRegistry[Any]("_mc:app", redis=settings)
    try:
        return {c.client_id: c.node_id for c in await registry.list_clients()}
    finally:
        await registry.aclose()


async def test_a_primary_failover_leaves_no_registry_mismatch_and_reports_each_leave_once(
    redis_cluster_factory: Callable[[], RedisClusterServer],
    make_node: MakeNode,
    make_client: MakeClient,
) -> None:
    cluster = redis_cluster_factory()
    settings = RedisSettings(url=cluster.url, prefix="failover")
    nodes: list[Node] = [await make_node(redis=settings, **FAILOVER_SAFE) for _ in range(3)]
    left = Recorder()
    for node in nodes:
        node.on_client_disconnected(left)
    clients: dict[str, tuple[Node, Client]] = {}
    for i in range(CLIENTS):
        node = nodes[i % 3]
        clients[f"c{i}"] = (node, make_client(node, f"c{i}"))
    for start in range(0, CLIENTS, 50):
        batch = list(clients.values())[start : start + 50]
        await asyncio.gather(*(join(node, client) for node, client in batch))
    expected = {cid: node.mesh_instance_id for cid, (node, _) in clients.items()}
    assert await registry_snapshot(settings) == expected

    # The primary holding the mesh keys (heartbeats, leader) and a third of the buckets.
    victim = cluster.owner_of("{failover:mesh:_mc:app}:heartbeats")
    kill = asyncio.get_running_loop().run_in_executor(None, cluster.kill_primary, victim)
    # Clients leave while the shard is down and while it fails over.
    leaving = [f"c{i}" for i in range(0, CLIENTS, 10)]
    for client_id in leaving:
        await clients[client_id][1].disconnect()
        expected.pop(client_id)
    await kill

    async def consistent() -> bool:
        try:
            return await registry_snapshot(settings) == expected
        except Exception:
            return False

    await eventually(consistent, timeout=30)
    await eventually(lambda: set(left.ids()) >= set(leaving), timeout=30)
    counts = Counter(left.ids())
    assert set(counts) == set(leaving)
    assert all(count == 1 for count in counts.values())
