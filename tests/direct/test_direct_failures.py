"""A node that dies or restarts: calls fail fast, none is sent twice; a new address is used."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from direct_helpers import SECRET, InboxSpy, MakeMesh
from meshsrpc import (
    DirectSettings,
    MeshConnectionLostError,
    MeshError,
    MeshService,
    RedisSettings,
)
from meshsrpc.redis_server import RedisServer
from meshsrpc.testing import eventually
from redis.asyncio import Redis

NODE_SCRIPT = Path(__file__).with_name("direct_node.py")
MARKER = b'{"requestId":"marker","heartbeat":true}'

Spawn = Callable[[], Awaitable[tuple[asyncio.subprocess.Process, int]]]


@pytest.fixture
async def spawn_node(redis_settings: RedisSettings) -> AsyncIterator[Spawn]:
    """Start a direct-capable node of mesh ``k`` in a child process; killed at the end."""
    procs: list[asyncio.subprocess.Process] = []

    async def spawn() -> tuple[asyncio.subprocess.Process, int]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(NODE_SCRIPT),
            str(redis_settings.url),
            redis_settings.key_prefix,
            SECRET,
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        return proc, int(json.loads(line)["instanceId"])

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


async def open_direct(a: MeshService, b_id: int) -> int:
    """Call ``pid`` on b until a's channel to it is open; b's process id."""
    pid = 0

    async def up() -> bool:
        nonlocal pid
        pid = await a.invoke(b_id, "pid", None)
        return a.direct_link is not None and a.direct_link.is_direct(b_id)

    await eventually(up, timeout=10)
    return pid


async def test_sigkill_of_the_called_node_fails_its_100_in_flight_calls_at_once_never_resent(
    make_mesh: MakeMesh, spawn_node: Spawn, raw: Redis, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    proc, b_id = await spawn_node()
    await open_direct(a, b_id)
    deliveries = f"{redis_settings.prefix}:deliveries"
    inbox = f"{redis_settings.prefix}:mesh:k:node:{b_id}"
    async with InboxSpy(redis_settings.url or "", inbox) as spy:
        calls = [asyncio.ensure_future(a.invoke(b_id, "hold", i, timeout=60)) for i in range(100)]
        await eventually(lambda: _count(raw, deliveries, 100), timeout=20)
        proc.kill()
        # Well before the calls' own 60 s timeout (and the 0.6 s node ttl's cleanup).
        async with asyncio.timeout(20):
            results = await asyncio.gather(*calls, return_exceptions=True)
        await raw.publish(inbox, MARKER)
        await eventually(lambda: MARKER in [p for _, p in spy.messages])
    assert all(isinstance(r, MeshConnectionLostError) for r in results), results
    assert {r.instance_id for r in results if isinstance(r, MeshConnectionLostError)} == {b_id}
    counts = await raw.hgetall(deliveries)
    assert sorted(int(k) for k in counts) == list(range(100))
    assert set(counts.values()) == {b"1"}
    # Nothing went the Redis way after the connection dropped: no call was sent twice.
    assert [p for _, p in spy.messages] == [MARKER]


async def _count(raw: Redis, key: str, expected: int) -> bool:
    return int(await raw.hlen(key)) == expected


async def test_a_node_restarted_with_the_same_id_on_a_new_address_is_called_there(
    make_mesh: MakeMesh, spawn_node: Spawn, raw: Redis, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    await eventually(lambda: a.is_leader)
    first, b_id = await spawn_node()
    assert await open_direct(a, b_id) == first.pid
    directory = f"{redis_settings.prefix}:mesh:k:direct"
    old_address = json.loads(await raw.hget(directory, str(b_id)))
    first.kill()
    await first.wait()

    async def cleaned_up() -> bool:
        nodes = {n.instance_id for n in await a.get_nodes()}
        return b_id not in nodes and await raw.hget(directory, str(b_id)) is None

    await eventually(cleaned_up, timeout=10)
    # The next node gets the same id (as after a Redis restart, a rejoin keeps it).
    await raw.set(f"{redis_settings.prefix}:mesh:k:next_id", b_id - 1)
    second, second_id = await spawn_node()
    assert second_id == b_id
    assert await open_direct(a, b_id) == second.pid
    new_address = json.loads(await raw.hget(directory, str(b_id)))
    assert new_address["port"] != old_address["port"]


async def test_a_direct_call_survives_the_loss_of_the_redis_connection(
    redis_server_factory: Callable[[], RedisServer], make_mesh: MakeMesh
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="f")
    a, b = await make_mesh(redis=settings), await make_mesh(redis=settings)
    redis_only = await make_mesh(redis=settings, direct=False)
    released = asyncio.Event()
    started: list[object] = []

    async def wait(data: object) -> object:
        started.append(data)
        await released.wait()
        return data

    for node in (b, redis_only):
        node.register_handler("pid", lambda data: 0)
        node.register_handler("wait", wait)
    await open_direct(a, b.instance_id)
    direct_call = asyncio.ensure_future(a.invoke(b.instance_id, "wait", "answered", timeout=30))
    redis_call = asyncio.ensure_future(a.invoke(redis_only.instance_id, "wait", None, timeout=30))
    await eventually(lambda: len(started) == 2)
    server.kill()
    # The call sent through Redis fails as before: the loss was noticed...
    with pytest.raises(MeshError, match="connection to Redis lost"):
        async with asyncio.timeout(10):
            await redis_call
    # ...and the direct call, whose reply does not need Redis, is still answered.
    released.set()
    async with asyncio.timeout(10):
        assert await direct_call == "answered"
    server.start()


async def test_a_node_that_is_not_the_leader_forgets_a_dead_peer_too(
    make_mesh: MakeMesh, spawn_node: Spawn
) -> None:
    leader = await make_mesh()
    await eventually(lambda: leader.is_leader)
    other = await make_mesh(direct=DirectSettings(secret=SECRET, prune_interval=0.2))
    assert not other.is_leader
    proc, b_id = await spawn_node()
    await open_direct(other, b_id)
    assert other.direct_link is not None
    assert b_id in other.direct_link.known_peers
    proc.kill()
    await proc.wait()
    await eventually(lambda: b_id not in other.direct_link.known_peers, timeout=10)
    # What the leader removed is gone from the nodes too.
    assert b_id not in {n.instance_id for n in await other.get_nodes()}
