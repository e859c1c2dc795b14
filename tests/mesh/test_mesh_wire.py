"""What a MeshService writes to Redis and publishes, checked with a plain Redis client
against WIRE.md §1 and the TypeScript capture (shared/vectors/mesh-redis.json)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mesh_helpers import FAST, eventually
from meshsrpc import MeshService, RedisSettings
from meshsrpc._lua import lua_source
from redis.asyncio import Redis

# The single-instance layout TypeScript nodes share (WIRE.md §1), byte for byte.
pytestmark = pytest.mark.single_instance

HOSTNAME = socket.gethostname()
# This file checks the Redis path byte for byte: direct channels (which bypass it, and
# add their own hash, see tests/direct) stay off here even when MESH_DIRECT_SECRET is set.
REDIS_PATH: dict[str, Any] = {"direct": False}


class RawSubscriber:
    """A plain pub/sub connection recording (channel, payload) on the given channels."""

    def __init__(self, client: Redis, *channels: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._pubsub = client.pubsub()
        self._channels = channels
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RawSubscriber:
        await self._pubsub.subscribe(*self._channels)
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "message":
                self.messages.append((message["channel"].decode(), message["data"]))

    def payloads(self, channel: str) -> list[bytes]:
        return [data for name, data in self.messages if name == channel]


@pytest.fixture
async def client(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def two_nodes(
    redis_settings: RedisSettings,
) -> AsyncIterator[tuple[MeshService, MeshService]]:
    a = MeshService("demo", **{**FAST, "redis": redis_settings, **REDIS_PATH})
    b = MeshService("demo", **{**FAST, "redis": redis_settings, **REDIS_PATH})
    await a.start()
    await eventually(lambda: a.is_leader)
    await b.start()
    yield a, b
    await b.stop()
    await a.stop()


def names(prefix: str) -> dict[str, str]:
    base = f"{prefix}:mesh:demo"
    return {
        "next_id": f"{base}:next_id",
        "heartbeats": f"{base}:heartbeats",
        "nodes": f"{base}:nodes",
        "node1": f"{base}:node:1",
        "node2": f"{base}:node:2",
        "broadcast": f"{base}:broadcast",
        "lock": f"{prefix}:leader:mesh:demo",
    }


def with_id(template: bytes, request_id: str) -> bytes:
    return template.replace(b"RID", request_id.encode())


async def redis_time_ms(client: Redis) -> int:
    seconds, micros = await client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_keys_types_and_values_after_start(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    n = names(mesh_prefix)
    keys = sorted(k.decode() for k in await client.keys(f"{mesh_prefix}:*"))
    assert keys == sorted([n["next_id"], n["heartbeats"], n["nodes"], n["lock"]])
    assert await client.type(n["next_id"]) == b"string"
    assert await client.get(n["next_id"]) == b"2"
    assert await client.type(n["heartbeats"]) == b"zset"
    assert await client.type(n["nodes"]) == b"hash"
    assert await client.hgetall(n["nodes"]) == {b"1": HOSTNAME.encode(), b"2": HOSTNAME.encode()}
    for key in (n["next_id"], n["heartbeats"], n["nodes"]):
        assert await client.ttl(key) == -1
    lock = await client.get(n["lock"])
    assert lock is not None and uuid.UUID(lock.decode()).version == 4
    assert 0 < await client.pttl(n["lock"]) <= 1000


async def test_heartbeat_scores_are_redis_time_in_integer_ms(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    n = names(mesh_prefix)
    before = await redis_time_ms(client)
    await asyncio.sleep(0.3)  # a few beats
    scored = await client.zrange(n["heartbeats"], 0, -1, withscores=True)
    # Read after the scores: a beat may land between any two commands of this test.
    after = await redis_time_ms(client)
    assert [member for member, _ in scored] == [b"1", b"2"] or sorted(
        member for member, _ in scored
    ) == [b"1", b"2"]
    for _, score in scored:
        assert score == int(score)
        assert before <= score <= after
    # ZRANGE WITHSCORES returns them without decimals, as in the capture.
    raw = await client.execute_command("ZRANGE", n["heartbeats"], 0, -1, "WITHSCORES")
    assert all(b"." not in value for value in raw[1::2])


async def test_each_node_subscribes_to_its_inbox_and_the_broadcast_channel(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    n = names(mesh_prefix)
    channels = sorted(c.decode() for c in await client.pubsub_channels(f"{mesh_prefix}:*"))
    assert channels == sorted([n["node1"], n["node2"], n["broadcast"]])
    counts = dict(await client.pubsub_numsub(n["node1"], n["node2"], n["broadcast"]))
    assert counts == {n["node1"].encode(): 1, n["node2"].encode(): 1, n["broadcast"].encode(): 2}


async def test_request_and_response_json_match_the_capture(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    a, b = two_nodes
    n = names(mesh_prefix)
    b.register_handler("forward", lambda data: {"data": {"acknowledged": True}})
    async with RawSubscriber(client, n["node1"], n["node2"]) as raw:
        data = {"clientId": "c1", "type": "dNotify", "data": {"notification": "hello from A"}}
        assert await a.invoke(2, "forward", data, timeout=10.0) == {"data": {"acknowledged": True}}
        await eventually(lambda: raw.payloads(n["node1"]))
    (request,) = raw.payloads(n["node2"])
    request_id = json.loads(request)["requestId"]
    assert uuid.UUID(request_id).version == 4
    assert request == with_id(
        b'{"requestId":"RID","senderInstanceId":1,"type":"forward","data":{"clientId":"c1",'
        b'"type":"dNotify","data":{"notification":"hello from A"}},"timeoutMs":10000}',
        request_id,
    )
    reply = b'{"requestId":"RID","reply":true,"data":{"data":{"acknowledged":true}}}'
    assert raw.payloads(n["node1"]) == [with_id(reply, request_id)]


async def test_request_carries_the_default_timeout_and_raw_utf8(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    a, b = two_nodes
    n = names(mesh_prefix)
    b.register_handler("meta", lambda data: {"updated": True})
    async with RawSubscriber(client, n["node2"]) as raw:
        await a.invoke(2, "meta", {"note": 'a/b "q" é', "big": 12345678901234568})
    (request,) = raw.payloads(n["node2"])
    # The service's request_timeout (2 s) in ms; like JSON.stringify: no spaces, insertion
    # order, "/" not escaped, non-ASCII as raw UTF-8.
    expected = (
        b'{"requestId":"RID","senderInstanceId":1,"type":"meta","data":'
        b'{"note":"a/b \\"q\\" \xc3\xa9","big":12345678901234568},"timeoutMs":2000}'
    )
    assert request == with_id(expected, json.loads(request)["requestId"])


async def test_request_heartbeat_json_matches_the_capture(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    a, b = two_nodes
    n = names(mesh_prefix)

    async def slow(data: Any) -> str:
        await asyncio.sleep(1.3)
        return "ok"

    b.register_handler("slow", slow)
    async with RawSubscriber(client, n["node1"]) as raw:
        assert await a.invoke(2, "slow", None, timeout=1.0) == "ok"
        await eventually(lambda: len(raw.payloads(n["node1"])) >= 2)
    *heartbeats, reply = raw.payloads(n["node1"])
    request_id = json.loads(reply)["requestId"]
    # timeoutMs 1000 -> one heartbeat at ~750 ms (as the capture shows).
    assert heartbeats == [with_id(b'{"requestId":"RID","heartbeat":true}', request_id)]


async def test_no_handler_reply_to_the_captured_injected_request(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    n = names(mesh_prefix)
    injected = b'{"requestId":"injected-1","senderInstanceId":1,"type":"noSuchType","data":null}'
    async with RawSubscriber(client, n["node1"]) as raw:
        await client.publish(n["node2"], injected)
        await eventually(lambda: raw.payloads(n["node1"]))
    assert raw.payloads(n["node1"]) == [
        b'{"requestId":"injected-1","reply":true,"error":"MESH_NO_HANDLER:noSuchType"}'
    ]


async def test_typescript_request_is_served_and_answered_verbatim(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    """A request exactly as a TypeScript node publishes it (from the capture)."""
    _, b = two_nodes
    n = names(mesh_prefix)
    b.register_handler("kickClient", lambda data: {"kicked": data == {"clientId": "c1"}})
    request = (
        b'{"requestId":"6dd606c2-6296-4936-8aeb-0bc9a8e9254d","senderInstanceId":1,'
        b'"type":"kickClient","data":{"clientId":"c1"},"timeoutMs":10000}'
    )
    async with RawSubscriber(client, n["node1"]) as raw:
        await client.publish(n["node2"], request)
        await eventually(lambda: raw.payloads(n["node1"]))
    assert raw.payloads(n["node1"]) == [
        b'{"requestId":"6dd606c2-6296-4936-8aeb-0bc9a8e9254d","reply":true,"data":{"kicked":true}}'
    ]


async def test_typescript_responses_and_heartbeats_are_understood(
    redis_settings: RedisSettings, client: Redis, mesh_prefix: str
) -> None:
    """A fake TypeScript node 2 answers our request with a heartbeat, then the reply."""
    a = MeshService("demo", **{**FAST, "redis": redis_settings, "node_ttl": 30.0, **REDIS_PATH})
    await a.start()
    n = names(mesh_prefix)
    await client.hset(n["nodes"], "2", "ts-node")  # node 2 is listed, as a real one would be
    try:
        async with RawSubscriber(client, n["node2"]) as raw:
            call = asyncio.ensure_future(a.invoke(2, "updateMeta", {"clientId": "c1"}, timeout=0.5))
            await eventually(lambda: raw.payloads(n["node2"]))
            request_id = json.loads(raw.payloads(n["node2"])[0])["requestId"]
            for _ in range(3):  # keeps the call alive past its 0.5 s timeout
                await asyncio.sleep(0.3)
                heartbeat = with_id(b'{"requestId":"RID","heartbeat":true}', request_id)
                await client.publish(n["node1"], heartbeat)
            reply = with_id(b'{"requestId":"RID","reply":true,"data":{"updated":true}}', request_id)
            await client.publish(n["node1"], reply)
            assert await asyncio.wait_for(call, 5) == {"updated": True}
    finally:
        await a.stop()


async def test_broadcast_json_matches_the_capture(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    a, _ = two_nodes
    n = names(mesh_prefix)
    async with RawSubscriber(client, n["broadcast"]) as raw:
        await a.broadcast("hello", {"msg": "hi", "n": 1})
        await eventually(lambda: raw.payloads(n["broadcast"]))
    assert raw.payloads(n["broadcast"]) == [
        b'{"broadcast":true,"senderInstanceId":1,"type":"hello","data":{"msg":"hi","n":1}}'
    ]


async def test_typescript_broadcast_is_delivered(
    two_nodes: tuple[MeshService, MeshService], client: Redis, mesh_prefix: str
) -> None:
    _, b = two_nodes
    seen: list[tuple[Any, int]] = []
    b.register_broadcast_handler("hello", lambda data, sender: seen.append((data, sender)))
    payload = b'{"broadcast":true,"senderInstanceId":7,"type":"hello","data":{"msg":"hi","n":1}}'
    await client.publish(names(mesh_prefix)["broadcast"], payload)
    await eventually(lambda: seen == [({"msg": "hi", "n": 1}, 7)])


async def test_graceful_stop_leaves_only_next_id(
    redis_settings: RedisSettings, client: Redis, mesh_prefix: str
) -> None:
    a = MeshService("demo", **{**FAST, "redis": redis_settings, **REDIS_PATH})
    b = MeshService("demo", **{**FAST, "redis": redis_settings, **REDIS_PATH})
    await a.start()
    await b.start()
    await eventually(lambda: a.is_leader or b.is_leader)
    await b.stop()
    await a.stop()
    n = names(mesh_prefix)
    assert [k.decode() for k in await client.keys(f"{mesh_prefix}:*")] == [n["next_id"]]
    assert await client.get(n["next_id"]) == b"2"
    assert await client.pubsub_channels(f"{mesh_prefix}:*") == []


def script_sha(name: str) -> str:
    return hashlib.sha1(lua_source("meshsrpc.engine", name).encode()).hexdigest()


SCRIPTS = ("heartbeat", "cleanup", "deregister", "rejoin")
LOCK_SCRIPTS = ("leader_acquire", "leader_renew", "leader_release")


async def monitor(url: str, seen: list[str]) -> None:
    """Record MONITOR output: scripts by name, the other mesh commands verbatim."""
    shas = {script_sha(name): name for name in SCRIPTS + LOCK_SCRIPTS}
    client = Redis.from_url(url)
    connection = await client.connection_pool.get_connection()
    try:
        await connection.send_command("MONITOR")
        while True:
            line = await connection.read_response(timeout=math.inf)
            if not isinstance(line, bytes) or b"]" not in line:
                continue
            words = re.findall(rb'"((?:[^"\\]|\\.)*)"', line)
            verb = words[0].decode().upper()
            if verb == "EVALSHA":
                name = shas.get(words[1].decode(), "?")
                if not seen or seen[-1] != name:  # EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA
                    seen.append(name)
            elif verb in ("INCR", "SUBSCRIBE", "HSET", "UNSUBSCRIBE"):
                seen.append(b" ".join(words).decode().replace(words[0].decode(), verb, 1))
    finally:
        await connection.disconnect()
        await client.aclose()


async def test_start_and_stop_send_commands_in_the_captured_order(
    redis_server_factory: Any,
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="cap")
    seen: list[str] = []
    watcher = asyncio.ensure_future(monitor(server.url, seen))
    await asyncio.sleep(0.3)
    mesh = MeshService("demo", heartbeat_interval=5.0, redis=settings, **REDIS_PATH)
    await mesh.start()
    await eventually(lambda: mesh.is_leader)
    start_order = list(seen)
    await mesh.stop()
    await asyncio.sleep(0.3)
    watcher.cancel()
    assert start_order == [
        "INCR cap:mesh:demo:next_id",
        "SUBSCRIBE cap:mesh:demo:node:1 cap:mesh:demo:broadcast",
        "heartbeat",
        f"HSET cap:mesh:demo:nodes 1 {HOSTNAME}",
        "leader_acquire",
    ]
    # Graceful stop: release the lock, unsubscribe, then deregister atomically.
    assert seen[len(start_order) :] == ["leader_release", "UNSUBSCRIBE", "deregister"]
