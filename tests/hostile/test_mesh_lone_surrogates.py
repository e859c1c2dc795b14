"""Issue 20, item 9: a lone surrogate anywhere in a mesh message (``requestId``,
``type``, data) never raises in the node's serve task: the request is answered, the
surrogate escaped as ``JSON.stringify`` writes it (``\\ud800``).

Real Redis; the hostile requests are raw bytes published to the node's inbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import LeaderOptions, MeshService, RedisSettings
from redis.asyncio import Redis

pytestmark = pytest.mark.timeout(60)

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.1,
    "node_ttl": 5.0,
    "request_timeout": 2.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}
KEY = "surrogates"
# The node id of a caller that does not exist: its replies are read off its channel.
CALLER = 999_999
# One lone surrogate, as a JSON escape and as the raw bytes a lax encoder would write.
LONE_SURROGATE = {"escaped": rb"\ud800", "raw bytes": "\ud800".encode("utf-8", "surrogatepass")}


class Replies:
    """A raw subscription to the caller's inbox: the raw payloads published to it."""

    def __init__(self, client: Redis, channel: str) -> None:
        self.payloads: list[bytes] = []
        self._pubsub = client.pubsub()
        self._channel = channel
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Replies:
        await self._pubsub.subscribe(self._channel)
        self._task = asyncio.ensure_future(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._pubsub.aclose()

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "message":
                self.payloads.append(message["data"])

    async def first(self) -> bytes:
        async with asyncio.timeout(10):
            while True:
                if self.payloads:
                    return self.payloads[0]
                await asyncio.sleep(0.01)


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def mesh(redis_settings: RedisSettings) -> AsyncIterator[MeshService]:
    node = MeshService(KEY, **{**FAST, "redis": redis_settings})
    node.register_handler("echo", lambda data: data)
    await node.start()
    yield node
    async with asyncio.timeout(15):
        await node.stop()


def channel(prefix: str, node_id: int) -> str:
    return f"{prefix}:mesh:{KEY}:node:{node_id}"


def request(request_id: bytes, type: bytes, data: bytes) -> bytes:
    return (
        b'{"requestId":"' + request_id + b'","senderInstanceId":' + str(CALLER).encode()
        + b',"type":"' + type + b'","data":' + data + b',"timeoutMs":1000}'
    )  # fmt: skip


@pytest.mark.parametrize("surrogate", LONE_SURROGATE.values(), ids=LONE_SURROGATE.keys())
async def test_a_request_id_with_a_lone_surrogate_is_answered(
    mesh: MeshService, raw: Redis, mesh_prefix: str, surrogate: bytes
) -> None:
    async with Replies(raw, channel(mesh_prefix, CALLER)) as replies:
        await raw.publish(
            channel(mesh_prefix, mesh.instance_id), request(b"r" + surrogate, b"echo", b"7")
        )
        payload = await replies.first()
    assert rb'"requestId":"r\ud800"' in payload
    assert json.loads(payload) == {"requestId": "r\ud800", "reply": True, "data": 7}


@pytest.mark.parametrize("surrogate", LONE_SURROGATE.values(), ids=LONE_SURROGATE.keys())
async def test_a_type_with_a_lone_surrogate_gets_the_no_handler_reply(
    mesh: MeshService, raw: Redis, mesh_prefix: str, surrogate: bytes
) -> None:
    async with Replies(raw, channel(mesh_prefix, CALLER)) as replies:
        await raw.publish(
            channel(mesh_prefix, mesh.instance_id), request(b"r1", b"t" + surrogate, b"7")
        )
        payload = await replies.first()
    assert json.loads(payload) == {
        "requestId": "r1",
        "reply": True,
        "error": "MESH_NO_HANDLER:t\ud800",
    }


async def test_data_with_a_lone_surrogate_is_echoed_back(
    mesh: MeshService, raw: Redis, mesh_prefix: str
) -> None:
    async with Replies(raw, channel(mesh_prefix, CALLER)) as replies:
        data = b'{"text":"a\\ud800b","\\udc00":1}'
        await raw.publish(channel(mesh_prefix, mesh.instance_id), request(b"r1", b"echo", data))
        payload = await replies.first()
    assert json.loads(payload)["data"] == {"text": "a\ud800b", "\udc00": 1}


async def test_a_handler_result_with_a_lone_surrogate_reaches_the_caller(
    mesh: MeshService, redis_settings: RedisSettings
) -> None:
    mesh.register_handler("lone", lambda data: "x\udfff")
    caller = MeshService(KEY, **{**FAST, "redis": redis_settings})
    await caller.start()
    try:
        assert await caller.invoke(mesh.instance_id, "lone", None) == "x\udfff"
    finally:
        async with asyncio.timeout(15):
            await caller.stop()
