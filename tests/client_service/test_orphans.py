"""Dead nodes: the leader removes their clients and reports the orphans exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import MeshClientRedisRegistry, RedisSettings, RegisteredClient
from meshsrpc.testing import ChildNode, spawn_child
from redis.asyncio import Redis
from service_nodes import Node, eventually

NODE_SCRIPT = Path(__file__).with_name("node_process.py")

Spawn = Callable[[list[str]], Awaitable[tuple[ChildNode, int]]]


@pytest.fixture
async def spawn_node(redis_settings: RedisSettings) -> AsyncIterator[Spawn]:
    """Start a node in a child process holding the given clients; killed at the end."""
    children: list[ChildNode] = []

    async def spawn(clients: list[str]) -> tuple[ChildNode, int]:
        child = await spawn_child(
            str(NODE_SCRIPT), str(redis_settings.url), redis_settings.key_prefix, *clients
        )
        children.append(child)
        return child, int(json.loads(child.ready_line)["instanceId"])

    yield spawn
    for child in children:
        await child.aclose()


async def _leader(make_node: Any) -> Node:
    node: Node = make_node()
    await node.service.start()
    await eventually(lambda: node.service.mesh.is_leader)
    return node


async def _gone(node: Node, dead_id: int) -> None:
    for _ in range(250):
        if dead_id not in {n.instance_id for n in await node.service.mesh.get_nodes()}:
            return
        await asyncio.sleep(0.04)
    raise AssertionError(f"node {dead_id} was never cleaned up")


async def test_sigkilled_node_orphans_reported_once_with_clients_that_did_not_reconnect(
    make_node: Any, spawn_node: Spawn
) -> None:
    a = await _leader(make_node)
    c = make_node()
    await c.service.start()
    proc, b_id = await spawn_node(["gone-1", "gone-2", "moved"])
    await a.connect("moved")  # reconnected elsewhere before the crash
    await proc.aclose()  # SIGKILL: a crash
    await eventually(lambda: bool(a.orphaned), timeout=10)
    await asyncio.sleep(1.0)  # several more cleanup rounds: no second report
    assert len(a.orphaned) == 1
    node_id, clients = a.orphaned[0]
    assert node_id == b_id
    assert {cl.client_id: (cl.node_id, cl.metadata) for cl in clients} == {
        "gone-1": (b_id, {"c": "gone-1"}),
        "gone-2": (b_id, {"c": "gone-2"}),
    }
    assert c.orphaned == []
    listed = await a.service.client_registry.list_clients()
    assert [(cl.client_id, cl.node_id) for cl in listed] == [("moved", a.id)]


async def test_zero_orphans_no_callback(make_node: Any, spawn_node: Spawn) -> None:
    a = await _leader(make_node)
    proc, b_id = await spawn_node(["moved"])
    await a.connect("moved")
    await proc.aclose()  # SIGKILL: a crash
    await _gone(a, b_id)
    await asyncio.sleep(0.5)
    assert a.orphaned == []


@pytest.mark.single_instance
async def test_orphan_callback_errors_are_caught(
    make_node: Any, redis_settings: RedisSettings
) -> None:
    a = await _leader(make_node)
    reported: list[tuple[int, list[RegisteredClient[Any]]]] = []

    def broken(node_id: int, clients: list[RegisteredClient[Any]]) -> None:
        raise RuntimeError("callback bug")

    async def recording(node_id: int, clients: list[RegisteredClient[Any]]) -> None:
        reported.append((node_id, clients))

    a.service.on_node_clients_orphaned(broken)
    a.service.on_node_clients_orphaned(recording)
    await _fake_dead_node(redis_settings, 999, ["x1"])
    await eventually(lambda: bool(reported), timeout=10)
    assert [(n, [cl.client_id for cl in cls]) for n, cls in reported] == [(999, ["x1"])]
    # The service keeps working.
    await a.connect("c1")
    assert (await a.service.invoke("c1", "uEcho", 3))["data"] == 3


async def _fake_dead_node(settings: RedisSettings, node_id: int, clients: list[str]) -> None:
    """A node whose last heartbeat is a minute old, holding ``clients``."""
    registry = MeshClientRedisRegistry[Any]("_mc:svc", redis=settings)
    redis = Redis.from_url(str(settings.url))
    try:
        for client_id in clients:
            await registry.register(client_id, node_id, {"c": client_id})
        seconds, _micros = await redis.time()
        base = f"{settings.key_prefix}:mesh:_mc:svc"
        await redis.zadd(f"{base}:heartbeats", {str(node_id): seconds * 1000 - 60_000})
        await redis.hset(f"{base}:nodes", str(node_id), "ghost")
    finally:
        await registry.aclose()
        await redis.aclose()
