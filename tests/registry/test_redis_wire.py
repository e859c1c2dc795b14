"""The Redis registry on the wire (WIRE.md §2): keys, values, TTLs, and TypeScript-written values.

The TypeScript values below are verbatim from the capture
(shared/vectors/mesh-redis.json, snapshots and MC_* luaCalls).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import MeshClientRedisRegistry, RedisSettings
from redis.asyncio import Redis

# The single-instance key layout TypeScript nodes share (WIRE.md §2), byte for byte.
pytestmark = pytest.mark.single_instance

# snapshots.afterUpdateMeta: cjson re-encoded metadata ("\/", 1.2345678901235e+16, [] -> {}).
TS_AFTER_UPDATE_META = (
    '{"state":"active","nodeId":2,"connectedAt":1795706233546,"metadata":{"note":"a\\/b \\"q\\" '
    'é","emptyObj":{},"tags":["x","y"],"flag":true,"userId":"u1","big":1.2345678901235e+16,'
    '"nul":null,"role":"admin","path":"\\/p\\/q","obj":{"a":"b","z":1},"level":3,"empty":{},'
    '"ratio":0.5},"hasMetadata":true}'
)
# snapshots.beforeKill: a client without query metadata.
TS_EMPTY_META = (
    '{"state":"active","nodeId":2,"connectedAt":1795706237803,"metadata":{},"hasMetadata":true}'
)
# commands MC_REGISTER luaCalls: a reservation.
TS_PENDING = (
    '{"state":"pending","nodeId":2,"connectedAt":1795706237803,"metadata":{},"hasMetadata":true}'
)
# An older writer without "state" (WIRE.md §2: reads as active).
TS_NO_STATE = (
    '{"nodeId":2,"connectedAt":1795706233546,"metadata":{"userId":"u1"},"hasMetadata":true}'
)

VALUE_SHAPE = re.compile(
    r'^\{"state":"(active|pending)","nodeId":(\d+),"connectedAt":(\d{13}),'
    r'"metadata":(.*),"hasMetadata":(true|false)\}$'
)


@pytest.fixture
async def registry(redis_settings: RedisSettings) -> AsyncIterator[MeshClientRedisRegistry[Any]]:
    backend = MeshClientRedisRegistry[Any]("_mc:demo", redis=redis_settings)
    yield backend
    await backend.aclose()


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(str(redis_settings.url), decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def keys(redis_settings: RedisSettings) -> dict[str, str]:
    base = f"{redis_settings.key_prefix}:mesh:_mc:demo"
    return {
        "clients": f"{base}:clients",
        "node1": f"{base}:node:1:clients",
        "node2": f"{base}:node:2:clients",
    }


async def test_register_writes_the_typescript_value_shape(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 2, {"userId": "u1", "note": 'a/b "q" é'})
    value = await raw.hget(keys["clients"], "c1")
    match = VALUE_SHAPE.match(value)
    assert match, value
    assert match.group(1, 2, 5) == ("active", "2", "true")
    assert json.loads(match.group(4)) == {"userId": "u1", "note": 'a/b "q" é'}
    assert await raw.smembers(keys["node2"]) == {"c1"}
    assert 86300 < await raw.ttl(keys["clients"]) <= 86400
    assert 86300 < await raw.ttl(keys["node2"]) <= 86400


async def test_metadata_is_stored_verbatim_not_re_encoded(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 1, {"z": 1, "a": "b", "empty": [], "path": "/p"})
    value = await raw.hget(keys["clients"], "c1")
    assert '"metadata":{"z":1,"a":"b","empty":[],"path":"/p"},' in value


async def test_no_metadata_is_has_metadata_false_with_null(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 1, None)
    value = json.loads(await raw.hget(keys["clients"], "c1"))
    assert (value["metadata"], value["hasMetadata"]) == (None, False)


async def test_reserve_writes_pending_and_activate_keeps_connected_at(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.reserve("c1", 2, {})
    pending = json.loads(await raw.hget(keys["clients"], "c1"))
    assert pending["state"] == "pending"
    assert await registry.activate("c1", 2, {"a": 1}) is True
    active = json.loads(await raw.hget(keys["clients"], "c1"))
    assert (active["state"], active["connectedAt"]) == ("active", pending["connectedAt"])
    assert active["metadata"] == {"a": 1}


async def test_supersede_moves_the_set_membership(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 2, None)
    assert await registry.register("c1", 1, None) == 2
    assert await raw.exists(keys["node2"]) == 0
    assert await raw.smembers(keys["node1"]) == {"c1"}
    assert json.loads(await raw.hget(keys["clients"], "c1"))["nodeId"] == 1


async def test_conflict_changes_nothing_in_redis(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 2, {"v": 1})
    before = await raw.hget(keys["clients"], "c1")
    with pytest.raises(Exception, match="already connected"):
        await registry.register("c1", 1, {"v": 2}, allow_supersede=False)
    assert await raw.hget(keys["clients"], "c1") == before
    assert await raw.exists(keys["node1"]) == 0


async def test_update_metadata_refreshes_only_the_hash_ttl(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 2, {"v": 1})
    await raw.expire(keys["clients"], 100)
    await raw.expire(keys["node2"], 100)
    assert await registry.update_metadata("c1", 2, {"v": 2}) is True
    assert await raw.ttl(keys["clients"]) > 86300
    assert await raw.ttl(keys["node2"]) <= 100


async def test_cleanup_node_deletes_the_set_and_the_entries(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await registry.register("c1", 2, None)
    await registry.register("c2", 1, None)
    assert [c.client_id for c in await registry.cleanup_node(2)] == ["c1"]
    assert await raw.exists(keys["node2"]) == 0
    assert await raw.hkeys(keys["clients"]) == ["c2"]


async def test_a_typescript_written_value_reads_back(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await raw.hset(keys["clients"], "c1", TS_AFTER_UPDATE_META)
    await raw.sadd(keys["node2"], "c1")
    client = await registry.get_client("c1")
    assert client is not None
    assert (client.node_id, client.connected_at) == (2, 1795706233546)
    assert client.metadata == json.loads(TS_AFTER_UPDATE_META)["metadata"]
    assert client.metadata["path"] == "/p/q"
    assert client.metadata["note"] == 'a/b "q" é'
    assert client.metadata["big"] == 1.2345678901235e16
    assert client.metadata["empty"] == {}
    assert await registry.list_clients() == [client]
    assert await registry.list_clients_for_node(2) == [client]
    assert await registry.cleanup_node(2) == [client]


async def test_typescript_empty_metadata_and_missing_state(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await raw.hset(keys["clients"], mapping={"e": TS_EMPTY_META, "n": TS_NO_STATE})
    empty, no_state = await registry.get_client("e"), await registry.get_client("n")
    assert empty is not None and empty.metadata == {}
    assert no_state is not None and no_state.metadata == {"userId": "u1"}


async def test_pending_and_unparsable_values_are_invisible(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    values = {"p": TS_PENDING, "bad": "{not json", "ok": TS_NO_STATE}
    await raw.hset(keys["clients"], mapping=values)
    await raw.sadd(keys["node2"], "p", "bad", "ok")
    assert await registry.get_client("p") is None
    assert await registry.get_client("bad") is None
    assert [c.client_id for c in await registry.list_clients()] == ["ok"]
    assert [c.client_id for c in await registry.list_clients_for_node(2)] == ["ok"]


async def test_python_updates_a_typescript_entry_keeping_connected_at(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    await raw.hset(keys["clients"], "c1", TS_AFTER_UPDATE_META)
    assert await registry.update_metadata("c1", 2, {"empty": []}) is True
    assert await raw.hget(keys["clients"], "c1") == (
        '{"state":"active","nodeId":2,"connectedAt":1795706233546,'
        '"metadata":{"empty":[]},"hasMetadata":true}'
    )
    assert await registry.unregister("c1", 1) is False
    assert await registry.unregister("c1", 2) is True


async def test_non_serialisable_metadata_writes_nothing(
    registry: MeshClientRedisRegistry[Any], raw: Redis, keys: dict[str, str]
) -> None:
    with pytest.raises(TypeError):
        await registry.register("c1", 1, {"x": object()})
    assert await raw.exists(keys["clients"], keys["node1"]) == 0


async def test_script_arguments_follow_the_typescript_layout(
    registry: MeshClientRedisRegistry[Any], redis_settings: RedisSettings, keys: dict[str, str]
) -> None:
    # MC_REGISTER ARGV: clientId, nodeId, metadata, hasMetadata, node prefix,
    # connectedAt, allowSupersede, state (capture: commands, MC_REGISTER).
    monitor_client = Redis.from_url(str(redis_settings.url), decode_responses=True)
    seen: list[str] = []
    async with monitor_client.monitor() as monitor:
        await registry.register("c1", 2, {"a": 1}, allow_supersede=False)
        async for event in monitor.listen():
            command = event["command"]
            if command.upper().startswith(("EVALSHA", "EVAL ")):
                seen.append(command)
                break
    await monitor_client.aclose()
    args = seen[0].split(" ")
    assert args[2:] == [
        "2",
        keys["clients"],
        keys["node2"],
        "c1",
        "2",
        '{"a":1}',
        "1",
        keys["node2"][: -len("2:clients")],
        args[10],
        "0",
        "active",
    ]
    assert re.fullmatch(r"\d{13}", args[10])
