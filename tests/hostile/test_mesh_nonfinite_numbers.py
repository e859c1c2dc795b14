"""Issue 20, item 3: NaN/Infinity in mesh JSON never reach a timer, and every wire
number that becomes a delay (``timeoutMs``) is clamped to 1 ms .. 24 h.

Real Redis; the hostile messages are raw bytes published to the node's inbox.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import LeaderOptions, MeshClientService, MeshService, RedisSettings
from meshsrpc._deadlines import Deadlines
from meshsrpc.mesh_messages import MAX_TIMEOUT_MS
from redis.asyncio import Redis

pytestmark = pytest.mark.timeout(60)

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.05,
    # Generous: a loaded box must not declare the node dead; the test reads its score.
    "node_ttl": 5.0,
    "request_timeout": 2.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}
# The node id of a caller that does not exist: its replies are read off its channel.
CALLER = 999_999
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400"]


class Inbox:
    """A raw subscription to one node's inbox: the JSON messages published to it."""

    def __init__(self, client: Redis, channel: str) -> None:
        self.messages: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self._pubsub = client.pubsub()
        self._channel = channel
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Inbox:
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
                self.messages.append(json.loads(message["data"]))
                self.arrived.set()

    def ids(self) -> list[str]:
        return [m["requestId"] for m in self.messages if m.get("reply")]

    async def wait_for_reply(self, request_id: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while True:
                for message in self.messages:
                    if message.get("reply") and message["requestId"] == request_id:
                        return message
                await asyncio.sleep(0.01)


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_settings.url or "")
    yield client
    await client.aclose()


@pytest.fixture
async def mesh(redis_settings: RedisSettings) -> AsyncIterator[MeshService]:
    node = MeshService("hostile", **{**FAST, "redis": redis_settings})
    node.register_handler("echo", lambda data: data)
    await node.start()
    yield node
    async with asyncio.timeout(15):
        await node.stop()


def inbox_of(prefix: str, key: str, node_id: int) -> str:
    return f"{prefix}:mesh:{key}:node:{node_id}"


def request(request_id: str, type: str, data: str, timeout_ms: str = "1000") -> bytes:
    """A request as raw JSON text, so that values json.dumps would refuse can be sent."""
    return (
        f'{{"requestId":"{request_id}","senderInstanceId":{CALLER},"type":"{type}",'
        f'"data":{data},"timeoutMs":{timeout_ms}}}'
    ).encode()


async def beats(raw: Redis, prefix: str, key: str, node_id: int, count: int) -> None:
    """Wait until the node's heartbeat score changed ``count`` times."""
    heartbeats = f"{prefix}:mesh:{key}:heartbeats"
    seen = await raw.zscore(heartbeats, str(node_id))
    async with asyncio.timeout(10):
        while count:
            await asyncio.sleep(0.01)
            score = await raw.zscore(heartbeats, str(node_id))
            if score != seen:
                seen, count = score, count - 1


@pytest.mark.parametrize("constant", NON_FINITE)
async def test_a_forward_with_a_non_finite_timeout_is_dropped_and_the_node_keeps_beating(
    redis_settings: RedisSettings, raw: Redis, mesh_prefix: str, constant: str
) -> None:
    delivered: list[tuple[str, float | None]] = []

    async def deliver(client_id: str, type: str, data: Any, timeout: float | None) -> Any:
        delivered.append((client_id, timeout))
        # What a delivery function does with its timeout: a timer on the event loop.
        async with asyncio.timeout(timeout):
            await asyncio.sleep(0)
        return {"acknowledged": True}

    service: MeshClientService[Any] = MeshClientService(
        "hostile", deliver, **{**FAST, "redis": redis_settings}
    )
    await service.start()
    try:
        node_id = service.instance_id
        async with Inbox(raw, inbox_of(mesh_prefix, "_mc:hostile", CALLER)) as replies:
            inbox = inbox_of(mesh_prefix, "_mc:hostile", node_id)
            for i in range(20):  # many, as a hostile peer would, to fill the timer heap
                forward = (
                    f'{{"clientId":"alice","type":"dNotify","data":{{}},"timeoutMs":{constant}}}'
                )
                await raw.publish(inbox, request(f"bad{i}", "forward", forward))
            probe = '{"clientId":"bob","type":"dNotify","data":{},"timeoutMs":1000}'
            await raw.publish(inbox, request("probe", "forward", probe))
            reply = await replies.wait_for_reply("probe")
            assert reply["data"] == {"data": {"acknowledged": True}}
            assert delivered == [("bob", service.forward_safety_timeout)]
            assert replies.ids() == ["probe"]
        await beats(raw, mesh_prefix, "_mc:hostile", node_id, 3)
    finally:
        async with asyncio.timeout(15):
            await service.stop()


async def test_a_request_whose_timeout_is_infinity_is_dropped(
    mesh: MeshService, raw: Redis, mesh_prefix: str
) -> None:
    async with Inbox(raw, inbox_of(mesh_prefix, "hostile", CALLER)) as replies:
        inbox = inbox_of(mesh_prefix, "hostile", mesh.instance_id)
        await raw.publish(inbox, request("bad", "echo", "1", timeout_ms="Infinity"))
        await raw.publish(inbox, request("probe", "echo", "2"))
        await replies.wait_for_reply("probe")
        assert replies.ids() == ["probe"]
    await beats(raw, mesh_prefix, "hostile", mesh.instance_id, 3)


async def test_a_request_carrying_nan_in_its_data_is_dropped(
    mesh: MeshService, raw: Redis, mesh_prefix: str
) -> None:
    async with Inbox(raw, inbox_of(mesh_prefix, "hostile", CALLER)) as replies:
        inbox = inbox_of(mesh_prefix, "hostile", mesh.instance_id)
        await raw.publish(inbox, request("bad", "echo", '{"x":NaN}'))
        await raw.publish(inbox, request("probe", "echo", "2"))
        await replies.wait_for_reply("probe")
        assert replies.ids() == ["probe"]


async def test_a_request_with_a_huge_integer_timeout_is_clamped_and_answered(
    mesh: MeshService, raw: Redis, mesh_prefix: str
) -> None:
    async with Inbox(raw, inbox_of(mesh_prefix, "hostile", CALLER)) as replies:
        inbox = inbox_of(mesh_prefix, "hostile", mesh.instance_id)
        await raw.publish(inbox, request("huge", "echo", "7", timeout_ms="1" + "0" * 400))
        reply = await replies.wait_for_reply("huge")
        assert reply["data"] == 7


async def test_a_caller_timeout_past_24_hours_is_sent_clamped(
    mesh: MeshService, raw: Redis, mesh_prefix: str
) -> None:
    async with Inbox(raw, inbox_of(mesh_prefix, "hostile", CALLER)) as sent:
        call = asyncio.ensure_future(mesh.invoke(CALLER, "echo", 1, timeout=10.0**9))
        try:
            async with asyncio.timeout(10):
                await sent.arrived.wait()
        finally:
            call.cancel()
        assert sent.messages[0]["timeoutMs"] == MAX_TIMEOUT_MS


@pytest.mark.parametrize("timeout", [math.nan, math.inf])
async def test_a_non_finite_caller_timeout_is_refused(mesh: MeshService, timeout: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        await mesh.invoke(CALLER, "echo", 1, timeout=timeout)


@pytest.mark.parametrize("when", [math.nan, math.inf, -math.inf])
async def test_a_non_finite_deadline_is_refused(when: float) -> None:
    deadlines: Deadlines[str] = Deadlines(lambda key: None)
    with pytest.raises(ValueError, match="finite"):
        deadlines.set("key", when)
    assert len(deadlines) == 0
