"""Redis specifics: server clock, scripts surviving a SCRIPT FLUSH, subscriber recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from meshsrpc import RedisSettings
from meshsrpc.engine.base import SubscriptionEvent
from meshsrpc.engine.redis import RedisMeshEngine, _buffered_replies
from meshsrpc.redis_server import RedisServer
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

# The single-instance engine itself (WIRE.md §1 keys, plain pub/sub).
pytestmark = pytest.mark.single_instance


@pytest.fixture
async def client(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def engine(redis_settings: RedisSettings) -> AsyncIterator[RedisMeshEngine]:
    engine = RedisMeshEngine(redis_settings, "k")
    yield engine
    await engine.aclose()


async def redis_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_heartbeat_score_is_redis_server_time_in_ms(
    engine: RedisMeshEngine, client: Redis
) -> None:
    before = await redis_ms(client)
    await engine.heartbeat(3)
    after = await redis_ms(client)
    score = await client.zscore(engine.keys.heartbeats, "3")
    assert score is not None and score == int(score)
    assert before <= score <= after


async def test_cleanup_is_inclusive_at_exactly_the_ttl(
    engine: RedisMeshEngine, client: Redis
) -> None:
    now = await redis_ms(client)
    # Scores far enough apart that the clock moving during the call cannot matter.
    await client.zadd(engine.keys.heartbeats, {"1": now - 10_000, "2": now + 10_000})
    await client.hset(engine.keys.nodes, mapping={"1": "h", "2": "h"})
    assert await engine.cleanup_expired(10_000) == [1]
    assert await client.hkeys(engine.keys.nodes) == [b"2"]


async def test_scripts_are_reloaded_after_script_flush(
    engine: RedisMeshEngine, client: Redis
) -> None:
    await engine.heartbeat(1)
    await client.script_flush()
    assert await engine.heartbeat(1) is False
    assert await engine.cleanup_expired(60_000) == []


async def test_subscriber_reports_lost_and_restored_after_a_kill(
    redis_server_factory: type[RedisServer],
) -> None:
    server = redis_server_factory()
    engine = RedisMeshEngine(RedisSettings(url=server.url, prefix="e"), "k")
    events: list[SubscriptionEvent] = []
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), events.append)
    try:
        server.command("CLIENT", "KILL", "TYPE", "pubsub")
        for _ in range(200):
            if events == [SubscriptionEvent.LOST, SubscriptionEvent.RESTORED]:
                break
            await asyncio.sleep(0.02)
        assert events == [SubscriptionEvent.LOST, SubscriptionEvent.RESTORED]
        await engine.publish_to_node(1, b"after")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        assert got == [b"after"]
    finally:
        await engine.aclose()


async def test_subscriber_keeps_retrying_while_redis_is_down(
    redis_server_factory: type[RedisServer],
) -> None:
    server = redis_server_factory()
    engine = RedisMeshEngine(RedisSettings(url=server.url, prefix="e"), "k")
    events: list[SubscriptionEvent] = []
    await engine.subscribe(1, lambda source, data: None, events.append)
    try:
        server.kill()
        await asyncio.sleep(1.5)  # several failed attempts, with backoff
        assert events == [SubscriptionEvent.LOST]
        server.start()
        for _ in range(200):
            if events[-1] is SubscriptionEvent.RESTORED:
                break
            await asyncio.sleep(0.02)
        assert events == [SubscriptionEvent.LOST, SubscriptionEvent.RESTORED]
    finally:
        await engine.aclose()


async def test_subscribe_fails_when_redis_is_unreachable() -> None:
    engine = RedisMeshEngine(RedisSettings(url="redis://127.0.0.1:1/0", prefix="e"), "k")
    try:
        with pytest.raises(RedisConnectionError):
            await engine.subscribe(1, lambda source, data: None, lambda event: None)
    finally:
        await engine.aclose()


async def test_concurrent_publishes_all_arrive_in_publish_order(engine: RedisMeshEngine) -> None:
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), lambda event: None)
    payloads = [str(i).encode() for i in range(300)]
    await asyncio.gather(*(engine.publish_to_node(1, p) for p in payloads))
    await engine.publish_broadcast(b"last")
    for _ in range(200):
        if len(got) == len(payloads) + 1:
            break
        await asyncio.sleep(0.02)
    assert got == [*payloads, b"last"]


async def test_publish_after_its_connection_was_killed_succeeds(
    redis_server_factory: type[RedisServer],
) -> None:
    server = redis_server_factory()
    engine = RedisMeshEngine(RedisSettings(url=server.url, prefix="e"), "k")
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), lambda event: None)
    try:
        await engine.publish_to_node(1, b"before")
        server.command("CLIENT", "KILL", "TYPE", "normal")
        await engine.publish_to_node(1, b"after")
        for _ in range(100):
            if len(got) == 2:
                break
            await asyncio.sleep(0.02)
        assert got == [b"before", b"after"]
    finally:
        await engine.aclose()


async def test_publish_fails_while_redis_is_down_and_works_once_it_is_back(
    redis_server_factory: type[RedisServer],
) -> None:
    server = redis_server_factory()
    engine = RedisMeshEngine(RedisSettings(url=server.url, prefix="e"), "k")
    try:
        await engine.publish_to_node(1, b"up")
        server.kill()
        results = await asyncio.gather(
            *(engine.publish_to_node(1, b"down") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        server.start()
        await engine.publish_to_node(1, b"up again")
    finally:
        await engine.aclose()


async def test_subscriber_dispatches_every_message_one_read_brought_in_order(
    engine: RedisMeshEngine, client: Redis
) -> None:
    got: list[bytes] = []
    await engine.subscribe(1, lambda source, data: got.append(data), lambda event: None)
    payloads = [str(i).encode() for i in range(500)]
    # One pipeline: the subscriber reads many messages per socket read.
    async with client.pipeline(transaction=False) as pipe:
        for payload in payloads:
            pipe.publish(engine.keys.inbox(1), payload)
        await pipe.execute()
    for _ in range(200):
        if len(got) == len(payloads):
            break
        await asyncio.sleep(0.02)
    assert got == payloads
    subscriber = engine._subscriber
    assert subscriber is not None and subscriber._connection is not None
    assert _buffered_replies(subscriber._connection) is not None
