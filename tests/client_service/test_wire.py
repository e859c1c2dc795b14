"""forward / kickClient / updateMeta on the wire (WIRE.md §3), shaped as in the capture.

Reference payloads (shared/vectors/mesh-redis.json, channelMessages), e.g.
``{"requestId":…,"senderInstanceId":1,"type":"forward","data":{"clientId":"c1","type":"dNotify",
"data":{…}},"timeoutMs":10000}`` and the reply ``{"requestId":…,"reply":true,"data":{"data":…}}``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from meshsrpc import ClientInvocationError, RedisSettings
from redis.asyncio import Redis
from service_nodes import Node, eventually

# The single-instance key layout TypeScript nodes share (WIRE.md), byte for byte.
pytestmark = pytest.mark.single_instance


class Tap:
    """Every JSON message published on the two nodes' inboxes, in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str]] = []

    def of_type(self, type: str) -> list[dict[str, Any]]:
        return [json.loads(p) for _, p in self.messages if json.loads(p).get("type") == type]

    def reply_to(self, request: dict[str, Any]) -> dict[str, Any]:
        for _, payload in self.messages:
            message = json.loads(payload)
            if message.get("requestId") == request["requestId"] and message.get("reply"):
                return dict(message)
        raise AssertionError(f"no reply to {request}")


@pytest.fixture
async def two_nodes(make_node: Callable[..., Node]) -> tuple[Node, Node]:
    """Two started nodes calling each other through Redis, where the tap sees the messages.

    (Direct channels, when a mesh secret is set, would carry them past it.)
    """
    a, b = make_node(direct=False), make_node(direct=False)
    await a.service.start()
    await b.service.start()
    return a, b


@pytest.fixture
async def tap(two_nodes: tuple[Node, Node], redis_settings: RedisSettings) -> AsyncIterator[Tap]:
    a, b = two_nodes
    base = f"{redis_settings.key_prefix}:mesh:_mc:svc:node:"
    client = Redis.from_url(str(redis_settings.url), decode_responses=True)
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{base}{a.id}", f"{base}{b.id}")
    result = Tap()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                result.messages.append((message["channel"], message["data"]))

    task = asyncio.create_task(listen())
    yield result
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pubsub.aclose()
    await client.aclose()


def _compact(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


async def test_forward_payloads(two_nodes: tuple[Node, Node], tap: Tap) -> None:
    a, b = two_nodes
    await b.connect("c1")
    await a.service.invoke("c1", "dNotify", {"notification": "hello from A"})
    await a.service.invoke("c1", "dNotify", {"notification": "slow"}, timeout=1.0)
    await eventually(lambda: len(tap.of_type("forward")) == 2)
    plain, timed = tap.of_type("forward")
    assert list(plain) == ["requestId", "senderInstanceId", "type", "data", "timeoutMs"]
    # A call without a timeout carries the caller's request_timeout (5 s here): one
    # default for the whole call (TypeScript callers leave the optional field out).
    assert plain["data"] == {
        "clientId": "c1",
        "type": "dNotify",
        "data": {"notification": "hello from A"},
        "timeoutMs": 5000,
    }
    assert plain["timeoutMs"] == 5000
    assert list(timed["data"]) == ["clientId", "type", "data", "timeoutMs"]
    assert (timed["data"]["timeoutMs"], timed["timeoutMs"]) == (1000, 1000)
    await eventually(lambda: _has_reply(tap, plain))
    reply = tap.reply_to(plain)
    assert list(reply) == ["requestId", "reply", "data"]
    assert list(reply["data"]) == ["data"]
    for _, payload in tap.messages:
        assert payload == _compact(json.loads(payload))


async def test_forward_failure_travels_as_data(two_nodes: tuple[Node, Node], tap: Tap) -> None:
    a, b = two_nodes

    async def unhandled(type: str, data: Any, timeout: float | None) -> Any:
        raise RuntimeError("Unhandled message type")

    await b.connect("c1", answer=unhandled)
    with pytest.raises(ClientInvocationError):
        await a.service.invoke("c1", "dCompute", {})
    (request,) = tap.of_type("forward")
    await eventually(lambda: _has_reply(tap, request))
    assert tap.reply_to(request)["data"] == {
        "error": "Unhandled message type",
        "errorName": "RuntimeError",
    }


async def test_update_meta_payloads(two_nodes: tuple[Node, Node], tap: Tap) -> None:
    a, b = two_nodes
    await b.connect("c1", {"userId": "u1"})
    metadata = {"userId": "u1", "role": "admin", "empty": [], "path": "/p/q"}
    assert await a.service.update_client_metadata("c1", metadata) is True
    await eventually(lambda: len(tap.of_type("updateMeta")) == 1)
    (request,) = tap.of_type("updateMeta")
    assert request["data"] == {"clientId": "c1", "metadata": metadata}
    assert list(request["data"]) == ["clientId", "metadata"]
    await eventually(lambda: _has_reply(tap, request))
    assert tap.reply_to(request)["data"] == {"updated": True}


async def test_kick_client_payloads(two_nodes: tuple[Node, Node], tap: Tap) -> None:
    a, b = two_nodes
    await b.connect("c1")
    await a.connect("c1")
    await eventually(lambda: len(tap.of_type("kickClient")) == 1)
    (request,) = tap.of_type("kickClient")
    assert request["data"] == {"clientId": "c1"}
    assert request["senderInstanceId"] == a.id
    await eventually(lambda: _has_reply(tap, request))
    assert tap.reply_to(request)["data"] == {"kicked": True}


def _has_reply(tap: Tap, request: dict[str, Any]) -> bool:
    try:
        tap.reply_to(request)
    except AssertionError:
        return False
    return True
