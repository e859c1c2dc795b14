"""LeaderService: one leader per key, takeover, loss, re-acquire (API.md, WIRE.md §1 lock)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mesh_helpers import eventually, spawn_node_process
from meshsrpc import LeaderOptions, LeaderService, MeshService, RedisSettings
from meshsrpc.engine import open_leader_lock
from meshsrpc.leader import resolve_leader_settings
from meshsrpc.settings import RedisLike

MakeLeader = Callable[..., LeaderService]


@pytest.fixture
async def make_leader(backend: RedisLike) -> AsyncIterator[MakeLeader]:
    """Started LeaderServices with fast timings on ``backend``; all stopped afterwards."""
    created: list[LeaderService] = []

    def make(key: str = "job", *, start: bool = True, **options: Any) -> LeaderService:
        timings = {"ttl": 1.0, "renewal_interval": 0.2, "retry_delay": 0.1, **options}
        leader = LeaderService(key, redis=backend, **timings)
        created.append(leader)
        if start:
            leader.start()
        return leader

    yield make
    for leader in created:
        await leader.stop()


async def test_wait_first_attempt_tells_who_won_the_first_election(
    make_leader: MakeLeader,
) -> None:
    first = make_leader()
    assert await first.wait_first_attempt(5.0) is True
    second = make_leader()
    assert await second.wait_first_attempt(5.0) is False


async def test_wait_first_attempt_is_bounded_before_start(make_leader: MakeLeader) -> None:
    idle = make_leader(start=False)
    assert await idle.wait_first_attempt(0.01) is False


async def test_one_leader_per_key(make_leader: MakeLeader) -> None:
    services = [make_leader() for _ in range(4)]
    await eventually(lambda: any(s.is_leader for s in services))
    await asyncio.sleep(0.5)
    assert sum(s.is_leader for s in services) == 1


async def test_independent_keys_have_independent_leaders(make_leader: MakeLeader) -> None:
    a = make_leader("one")
    b = make_leader("two")
    await eventually(lambda: a.is_leader and b.is_leader)


async def test_takeover_after_the_leader_stops(make_leader: MakeLeader) -> None:
    first = make_leader()
    await eventually(lambda: first.is_leader)
    second = make_leader()
    await asyncio.sleep(0.3)
    assert not second.is_leader
    await first.stop()
    assert not first.is_leader
    # The lock was released: well before its 1 s ttl could have run out... generous bound.
    await eventually(lambda: second.is_leader, timeout=3)


async def test_became_and_lost_leader_callbacks(
    make_leader: MakeLeader, backend: RedisLike
) -> None:
    leader = make_leader(start=False)
    events: list[str] = []
    leader.set_became_leader_callback(lambda: events.append("became"))

    async def lost() -> None:
        await asyncio.sleep(0)
        events.append("lost")

    leader.set_lost_leader_callback(lost)
    leader.start()
    await eventually(lambda: events == ["became"])
    # Someone else takes the lock (as after an expiry during a long pause).
    lock = open_leader_lock(resolve_leader_settings(backend))
    try:
        assert await lock.release(leader.lock_key, leader._lock_id)
        assert await lock.acquire(leader.lock_key, "intruder", 600)
        await eventually(lambda: events == ["became", "lost"])
        assert not leader.is_leader
        # Re-acquires once the other holder's lock is gone, with a fresh lock id.
        await eventually(lambda: events == ["became", "lost", "became"], timeout=5)
        assert leader.is_leader
        assert leader._lock_id != "intruder"
    finally:
        await lock.aclose()


async def test_lock_id_is_kept_while_leading_and_regenerated_after_losing(
    make_leader: MakeLeader, backend: RedisLike
) -> None:
    leader = make_leader()
    await eventually(lambda: leader.is_leader)
    first_id = leader._lock_id
    uuid.UUID(first_id, version=4)
    await asyncio.sleep(0.5)  # a few renewals
    assert leader._lock_id == first_id
    lock = open_leader_lock(resolve_leader_settings(backend))
    try:
        await lock.release(leader.lock_key, first_id)
        await eventually(lambda: leader._lock_id != first_id)
        await eventually(lambda: leader.is_leader)
    finally:
        await lock.aclose()


async def test_callback_errors_are_logged_not_fatal(
    make_leader: MakeLeader, caplog: pytest.LogCaptureFixture
) -> None:
    leader = make_leader(start=False)

    def fail() -> None:
        raise RuntimeError("callback boom")

    leader.set_became_leader_callback(fail)
    leader.start()
    await eventually(lambda: "callback boom" in caplog.text)
    await asyncio.sleep(0.5)  # keeps renewing
    assert leader.is_leader


async def test_no_retries_after_stop(make_leader: MakeLeader, backend: RedisLike) -> None:
    holder = make_leader()
    await eventually(lambda: holder.is_leader)
    waiting = make_leader()
    await asyncio.sleep(0.2)
    await waiting.stop()
    await holder.stop()
    await asyncio.sleep(0.5)  # 5 retry delays
    lock = open_leader_lock(resolve_leader_settings(backend))
    try:
        # Nobody took the free lock: the stopped service did not try again.
        assert await lock.acquire(holder.lock_key, "probe", 1000)
    finally:
        await lock.aclose()
    assert not waiting.is_leader


async def test_stop_before_start_and_twice_is_fine(make_leader: MakeLeader) -> None:
    leader = make_leader(start=False)
    await leader.stop()
    leader.start()
    await eventually(lambda: leader.is_leader)
    await leader.stop()
    await leader.stop()
    assert not leader.is_leader


async def test_start_twice_raises(make_leader: MakeLeader) -> None:
    leader = make_leader()
    with pytest.raises(RuntimeError, match="already started"):
        leader.start()


async def test_memory_lock_expires_after_its_ttl(memory_url: str) -> None:
    """A holder that vanished without releasing: the lock frees itself after ttl."""
    lock = open_leader_lock(resolve_leader_settings(memory_url))
    key = resolve_leader_settings(memory_url).key_prefix + ":leader:job"
    assert await lock.acquire(key, "gone", 1500)
    follower = LeaderService(
        "job", ttl=1.0, renewal_interval=0.2, retry_delay=0.1, redis=memory_url
    )
    follower.start()
    try:
        await asyncio.sleep(0.15)
        assert not follower.is_leader
        await eventually(lambda: follower.is_leader, timeout=5)
    finally:
        await follower.stop()


# Reads the lock key with a plain client: the single-instance layout.
@pytest.mark.single_instance
async def test_lock_key_value_and_ttl_on_redis(redis_settings: RedisSettings) -> None:
    from redis.asyncio import Redis

    leader = LeaderService("mesh:demo", ttl=30.0, redis=redis_settings)
    leader.start()
    client = Redis.from_url(redis_settings.url or "")
    try:
        await eventually(lambda: leader.is_leader)
        key = f"{redis_settings.prefix}:leader:mesh:demo"
        assert leader.lock_key == key
        value = await client.get(key)
        assert value is not None
        assert uuid.UUID(value.decode()).version == 4
        assert 25_000 < await client.pttl(key) <= 30_000
        await leader.stop()
        assert await client.exists(key) == 0
    finally:
        await leader.stop()
        await client.aclose()


async def test_a_stop_while_an_acquire_waits_in_redis_leaves_no_lock_behind(
    redis_settings: RedisSettings,
) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_settings.url or "")
    key = f"{redis_settings.prefix}:leader:mesh:demo"
    leader = LeaderService("mesh:demo", ttl=30.0, retry_delay=0.05, redis=redis_settings)
    try:
        # Someone else holds the lock briefly, so the first attempt fails and the
        # service keeps retrying on an open connection.
        await client.set(key, "someone-else", px=300)
        leader.start()
        assert await leader.wait_first_attempt(5.0) is False
        # Writes wait in Redis: the next acquire is sent and stays unanswered while
        # stop() cancels it; Redis runs it after the pause, when the key has expired.
        await client.execute_command("CLIENT", "PAUSE", "600", "WRITE")
        await asyncio.sleep(0.2)
        await leader.stop()
        assert await client.exists(key) == 0
    finally:
        await leader.stop()
        await client.aclose()


async def test_takeover_after_ttl_when_the_leaders_process_is_killed(
    redis_settings: RedisSettings,
) -> None:
    process, _ = await asyncio.to_thread(spawn_node_process, redis_settings, "k", leader_ttl=1.0)
    assert process.stdout is not None
    try:
        line = await asyncio.to_thread(process.stdout.readline)
        while line.strip() != "leader":
            line = await asyncio.to_thread(process.stdout.readline)
        mesh = MeshService(
            "k",
            heartbeat_interval=0.1,
            node_ttl=0.6,
            leader=LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
            redis=redis_settings,
        )
        await mesh.start()
        try:
            await asyncio.sleep(0.4)
            assert not mesh.is_leader
            os.kill(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
            loop = asyncio.get_running_loop()
            killed_at = loop.time()
            await eventually(lambda: mesh.is_leader, timeout=5)
            # The lock was not released: it had to expire first (ttl 1 s, minus the time
            # since the last renewal).
            assert loop.time() - killed_at > 0.5
        finally:
            await mesh.stop()
    finally:
        process.kill()
        process.wait()


def test_leader_settings_prefer_mutex_then_mesh_then_plain_variables() -> None:
    env = {
        "MUTEX_REDIS_URL": "redis://mutex:1/0",
        "MESH_REDIS_URL": "redis://mesh:2/0",
        "REDIS_URL": "redis://plain:3/0",
    }
    assert resolve_leader_settings(None, env).url == "redis://mutex:1/0"
    del env["MUTEX_REDIS_URL"]
    assert resolve_leader_settings(None, env).url == "redis://mesh:2/0"
    del env["MESH_REDIS_URL"]
    assert resolve_leader_settings(None, env).url == "redis://plain:3/0"
    assert resolve_leader_settings(None, {"MUTEX_REDIS_HOST": "h"}).host == "h"


def test_leader_lock_prefix_is_mutex_prefix_else_redis_prefix_else_app() -> None:
    base = {"MESH_REDIS_URL": "redis://mesh:2/0", "MESH_REDIS_PREFIX": "meshonly"}
    assert resolve_leader_settings(None, base).key_prefix == "app"
    with_plain = {**base, "REDIS_PREFIX": "plain"}
    assert resolve_leader_settings(None, with_plain).key_prefix == "plain"
    with_mutex = {**with_plain, "MUTEX_REDIS_PREFIX": "mutex"}
    assert resolve_leader_settings(None, with_mutex).key_prefix == "mutex"


def test_explicit_redis_settings_win_with_their_prefix() -> None:
    env = {"MUTEX_REDIS_URL": "redis://mutex:1/0", "MUTEX_REDIS_PREFIX": "mutex"}
    settings = resolve_leader_settings(RedisSettings(url="redis://mine:4/0", prefix="mine"), env)
    assert (settings.url, settings.key_prefix) == ("redis://mine:4/0", "mine")
    from_url = resolve_leader_settings("redis://mine:4/0", env)
    assert (from_url.url, from_url.key_prefix) == ("redis://mine:4/0", "mutex")


def test_leader_options_defaults() -> None:
    assert LeaderOptions() == LeaderOptions(ttl=30.0, renewal_interval=10.0, retry_delay=5.0)
    leader = LeaderService("k", redis="memory://x")
    assert leader.options == LeaderOptions()


def test_a_mesh_without_leader_options_scales_its_lock_to_node_ttl() -> None:
    mesh = MeshService("k", node_ttl=3.0, redis="memory://scaled")
    assert mesh.leader_options == LeaderOptions(ttl=3.0, renewal_interval=1.0, retry_delay=1.0)
    tuned = LeaderOptions(ttl=9.0, renewal_interval=2.0, retry_delay=1.0)
    assert MeshService("k", node_ttl=3.0, leader=tuned, redis="memory://scaled").leader_options == (
        tuned
    )
