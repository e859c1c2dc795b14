"""Dead nodes: the leader removes them after node_ttl and reports each once (WIRE.md §1)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from mesh_helpers import FAST, MakeMesh, eventually, spawn_node_process
from meshsrpc import MeshService, RedisSettings
from meshsrpc.engine import MeshEngine, open_mesh_engine
from meshsrpc.settings import RedisLike, resolve_redis_settings


async def register_dead_node(backend: RedisLike, key: str = "k") -> tuple[MeshEngine, int]:
    """A node that joined (id, heartbeat, hostname) and then went silent forever."""
    engine = open_mesh_engine(resolve_redis_settings(backend), key)
    instance_id = await engine.allocate_instance_id()
    await engine.heartbeat(instance_id)
    await engine.register_node(instance_id, "ghost")
    return engine, instance_id


async def test_silent_node_is_removed_after_node_ttl(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    leader = await make_mesh()
    cleaned: list[int] = []
    leader.set_node_cleaned_up_callback(cleaned.append)
    engine, ghost = await register_dead_node(backend)
    try:
        assert ghost in [node.instance_id for node in await leader.get_nodes()]
        await eventually(lambda: cleaned == [ghost])
        assert [node.instance_id for node in await leader.get_nodes()] == [leader.instance_id]
        await asyncio.sleep(0.5)
        assert cleaned == [ghost]
    finally:
        await engine.aclose()


async def test_live_nodes_are_never_removed(make_mesh: MakeMesh) -> None:
    a = await make_mesh()
    b = await make_mesh()
    cleaned: list[int] = []
    a.set_node_cleaned_up_callback(cleaned.append)
    b.set_node_cleaned_up_callback(cleaned.append)
    await asyncio.sleep(1.5)  # more than twice the node ttl
    assert cleaned == []
    assert len(await a.get_nodes()) == 2


async def test_async_cleanup_callback(make_mesh: MakeMesh, backend: RedisLike) -> None:
    leader = await make_mesh()
    cleaned: list[int] = []

    async def on_cleaned(instance_id: int) -> None:
        await asyncio.sleep(0)
        cleaned.append(instance_id)

    leader.set_node_cleaned_up_callback(on_cleaned)
    engine, ghost = await register_dead_node(backend)
    try:
        await eventually(lambda: cleaned == [ghost])
    finally:
        await engine.aclose()


async def test_raising_cleanup_callback_does_not_stop_cleanup(
    make_mesh: MakeMesh, backend: RedisLike, caplog: pytest.LogCaptureFixture
) -> None:
    leader = await make_mesh()
    calls: list[int] = []

    def on_cleaned(instance_id: int) -> None:
        calls.append(instance_id)
        raise RuntimeError(f"callback boom {instance_id}")

    leader.set_node_cleaned_up_callback(on_cleaned)
    engine1, ghost1 = await register_dead_node(backend)
    engine2, ghost2 = await register_dead_node(backend)
    try:
        await eventually(lambda: sorted(calls) == [ghost1, ghost2])
        assert f"callback boom {ghost1}" in caplog.text
        engine3, ghost3 = await register_dead_node(backend)
        await eventually(lambda: ghost3 in calls)
        await engine3.aclose()
        assert leader.is_running
        assert [node.instance_id for node in await leader.get_nodes()] == [leader.instance_id]
    finally:
        await engine1.aclose()
        await engine2.aclose()


async def test_cleanup_callback_runs_only_on_the_leader(
    make_mesh: MakeMesh, backend: RedisLike
) -> None:
    nodes = [await make_mesh() for _ in range(3)]
    await eventually(lambda: sum(node.is_leader for node in nodes) == 1)
    calls: dict[int, list[int]] = {node.instance_id: [] for node in nodes}
    for node in nodes:
        node.set_node_cleaned_up_callback(calls[node.instance_id].append)
    engine, ghost = await register_dead_node(backend)
    try:
        await eventually(lambda: any(calls.values()))
        await asyncio.sleep(0.5)
        leader = next(node for node in nodes if node.is_leader)
        assert calls[leader.instance_id] == [ghost]
        assert sum(len(ids) for ids in calls.values()) == 1
    finally:
        await engine.aclose()


async def test_killed_node_process_is_removed_and_reported_once_on_the_leader(
    redis_settings: RedisSettings,
) -> None:
    leader = MeshService("k", **{**FAST, "redis": redis_settings})
    follower = MeshService("k", **{**FAST, "redis": redis_settings})
    cleaned: dict[str, list[int]] = {"leader": [], "follower": []}
    leader.set_node_cleaned_up_callback(cleaned["leader"].append)
    follower.set_node_cleaned_up_callback(cleaned["follower"].append)
    await leader.start()
    await eventually(lambda: leader.is_leader)
    await follower.start()
    # In a thread: a blocked event loop would stop our own heartbeats meanwhile.
    process, child_id = await asyncio.to_thread(spawn_node_process, redis_settings, "k")
    try:
        assert await leader.invoke(child_id, "ping", None) == "pong"
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        loop = asyncio.get_running_loop()
        killed_at = loop.time()
        await eventually(lambda: cleaned["leader"] == [child_id], timeout=10)
        # Not before node_ttl (0.6 s) has passed since its last heartbeat.
        assert loop.time() - killed_at > 0.3
        await asyncio.sleep(0.5)
        assert cleaned == {"leader": [child_id], "follower": []}
        ids = [node.instance_id for node in await follower.get_nodes()]
        assert ids == [leader.instance_id, follower.instance_id]
    finally:
        process.kill()
        process.wait()
        await follower.stop()
        await leader.stop()


async def test_cleanup_runs_right_after_the_leaders_heartbeat(
    redis_settings: RedisSettings,
) -> None:
    """The leader's beat = heartbeat script, then cleanup script (one MONITOR-free check:
    a dead node never outlives the leader's next beat after node_ttl by much)."""
    leader = MeshService("k", **{**FAST, "redis": redis_settings, "node_ttl": 0.4})
    cleaned: list[Any] = []
    leader.set_node_cleaned_up_callback(cleaned.append)
    await leader.start()
    try:
        await eventually(lambda: leader.is_leader)
        engine, ghost = await register_dead_node(redis_settings)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await eventually(lambda: cleaned == [ghost], timeout=5)
        assert loop.time() - started >= 0.3
        await engine.aclose()
    finally:
        await leader.stop()
