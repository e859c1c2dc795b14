"""Issue 20, item 8: a registry entry that is not UTF-8 or not parseable is skipped with
a warning; listings still answer and a dead node's orphan report keeps its valid clients.

Real Redis; the bad entries are written with a plain client, as a broken peer would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import (
    LeaderOptions,
    MeshClientRedisRegistry,
    MeshClientService,
    RedisSettings,
    RegisteredClient,
)
from redis.asyncio import Redis

pytestmark = pytest.mark.timeout(60)

KEY = "_mc:hostile"
DEAD = 77
BAD_ID = b"\xff\xfebad"
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.05,
    "node_ttl": 5.0,
    "request_timeout": 2.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}


def entry(node_id: int) -> bytes:
    """A registry value as every writer starts it."""
    value = {"state": "active", "nodeId": node_id, "connectedAt": 1, "hasMetadata": False}
    return json.dumps(value, separators=(",", ":")).encode()


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def registry(redis_settings: RedisSettings) -> AsyncIterator[MeshClientRedisRegistry[Any]]:
    backend: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry(KEY, redis=redis_settings)
    await backend.register("alice", DEAD, None)
    await backend.register("bob", DEAD, {"room": 1})
    yield backend
    await backend.aclose()


async def add_bad_client(raw: Redis, registry: MeshClientRedisRegistry[Any], value: bytes) -> None:
    """A client of node DEAD whose id is not UTF-8 (in the hash and the node's set)."""
    await raw.hset(registry.clients_key, BAD_ID, value)
    await raw.sadd(registry.node_key(DEAD), BAD_ID)


def ids(clients: list[RegisteredClient[Any]]) -> list[str]:
    return sorted(client.client_id for client in clients)


async def test_list_clients_skips_a_client_id_that_is_not_utf8(
    registry: MeshClientRedisRegistry[Any], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await add_bad_client(raw, registry, entry(DEAD))
    assert ids(await registry.list_clients()) == ["alice", "bob"]
    assert "not UTF-8" in caplog.text


async def test_list_clients_for_node_skips_a_client_id_that_is_not_utf8(
    registry: MeshClientRedisRegistry[Any], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await add_bad_client(raw, registry, entry(DEAD))
    assert ids(await registry.list_clients_for_node(DEAD)) == ["alice", "bob"]
    assert "not UTF-8" in caplog.text


async def test_list_clients_skips_a_value_nested_too_deeply_to_parse(
    registry: MeshClientRedisRegistry[Any], raw: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await raw.hset(registry.clients_key, "deep", b"[" * 100_000)
    assert ids(await registry.list_clients()) == ["alice", "bob"]
    assert "unparsable" in caplog.text


async def test_cleanup_of_a_node_returns_its_valid_clients_despite_a_client_id_that_is_not_utf8(
    registry: MeshClientRedisRegistry[Any], raw: Redis
) -> None:
    await add_bad_client(raw, registry, entry(DEAD))
    assert ids(await registry.cleanup_node(DEAD)) == ["alice", "bob"]
    assert await raw.hlen(registry.clients_key) == 0


class Orphans:
    """A leader's orphan reports."""

    def __init__(self) -> None:
        self.reports: list[tuple[int, list[str]]] = []
        self.arrived = asyncio.Event()

    def __call__(self, node_id: int, clients: list[RegisteredClient[Any]]) -> None:
        self.reports.append((node_id, ids(clients)))
        self.arrived.set()


async def deliver(client_id: str, type: str, data: Any, timeout: float | None) -> Any:
    raise AssertionError("no call expected")


async def dead_node(raw: Redis, prefix: str, node_id: int) -> None:
    """Register ``node_id`` as a node whose last heartbeat was a minute ago."""
    seconds, _ = await raw.time()
    base = f"{prefix}:mesh:{KEY}"
    await raw.zadd(f"{base}:heartbeats", {str(node_id): (int(seconds) - 60) * 1000})
    await raw.hset(f"{base}:nodes", str(node_id), "gone")


async def leader_report(redis_settings: RedisSettings, orphans: Orphans) -> None:
    """Start a node (the only one, so the leader) and wait for its orphan report."""
    service: MeshClientService[Any] = MeshClientService(
        "hostile", deliver, **{**FAST, "redis": redis_settings}
    )
    service.on_node_clients_orphaned(orphans)
    await service.start()
    try:
        async with asyncio.timeout(10):
            await orphans.arrived.wait()
    finally:
        async with asyncio.timeout(15):
            await service.stop()


async def test_the_leader_reports_a_dead_nodes_valid_clients_despite_a_client_id_that_is_not_utf8(
    registry: MeshClientRedisRegistry[Any], raw: Redis, redis_settings: RedisSettings
) -> None:
    await add_bad_client(raw, registry, entry(DEAD))
    await dead_node(raw, redis_settings.prefix, DEAD)
    orphans = Orphans()
    await leader_report(redis_settings, orphans)
    assert orphans.reports == [(DEAD, ["alice", "bob"])]


async def test_the_leader_reports_a_dead_node_despite_a_heartbeat_member_that_is_no_node_id(
    registry: MeshClientRedisRegistry[Any], raw: Redis, redis_settings: RedisSettings
) -> None:
    await dead_node(raw, redis_settings.prefix, DEAD)
    seconds, _ = await raw.time()
    heartbeats = f"{redis_settings.prefix}:mesh:{KEY}:heartbeats"
    # Scored before the dead node: the script returns it first.
    await raw.zadd(heartbeats, {b"\xffnot-a-node": (int(seconds) - 120) * 1000})
    orphans = Orphans()
    await leader_report(redis_settings, orphans)
    assert orphans.reports == [(DEAD, ["alice", "bob"])]
