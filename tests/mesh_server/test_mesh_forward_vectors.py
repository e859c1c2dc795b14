"""Cross-node calls between a Python node and a TypeScript node: every case of mesh-forward.json.

The capture (``tests/protos/mesh-forward.json``, from ``shared/vectors``) holds the
``forward`` requests a TypeScript node and a Python node published to each other, with
the reply that came back. Here the TypeScript side is played on a real Redis by the
test: it publishes the captured request to the Python node's inbox (which holds a real
client over SRPC), or receives what the Python node publishes and answers as the
TypeScript node did. Three captured outcomes were failures of the Python side that this
release fixes; the test asserts the corrected outcome for those.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import ClientInvocationError, MeshClientRedisRegistry, RedisSettings
from meshsrpc._tsproto_json import message_from_object
from redis.asyncio import Redis

from tests.generated.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)
from tests.mesh_server.mesh_server_support import Client, MakeClient, MakeNode, Node, join

pytestmark = pytest.mark.timeout(60)

VECTORS = json.loads(
    (Path(__file__).parents[1] / "protos" / "mesh-forward.json").read_text(encoding="utf-8")
)
CASES: list[dict[str, Any]] = VECTORS["cases"]
TS_NODE = 2  # the TypeScript node's instance id in the capture

# The captured failures of the Python side, and what a TypeScript node gets now.
FIXED_REPLY_DATA = {
    # TypeScript -> Python dCompute number=0: the reply had no "result" (undefined).
    "ff604322-b09e-45c9-a5d5-c8d089864ba3": {"data": {"result": 0}},
    # TypeScript -> Python dNotify slow:1300 with timeoutMs 1000: the holder timed it out.
    "ec9d0efb-5d77-41b0-96b0-d69ef6b80f11": {"data": {"acknowledged": True}},
}
# Python -> TypeScript requests that left defaults out (the TypeScript encoder threw
# "invalid int32: undefined"): what a Python node sends now, every scalar present.
FIXED_REQUEST_DATA = {
    "4e71b5df-38d5-4238-834e-000000000004": {"number": 0, "operation": "double"},
    "4e71b5df-38d5-4238-834e-000000000005": {"number": 0, "operation": "x"},
    "4e71b5df-38d5-4238-834e-000000000006": {"notification": ""},
    "4e71b5df-38d5-4238-834e-000000000007": {"streamId": 0, "dataSize": 1},
}
# ... and what the TypeScript client behind that node answers to them.
TS_CLIENT_REPLIES = {
    "4e71b5df-38d5-4238-834e-000000000004": {"data": {"result": 0}},
    "4e71b5df-38d5-4238-834e-000000000005": {"data": {"result": -1}},
    "4e71b5df-38d5-4238-834e-000000000007": {
        "error": "Unhandled message type",
        "errorName": "Error",
    },
}


def cases(source: str) -> list[dict[str, Any]]:
    return [case for case in CASES if case["from"] == source]


def case_id(case: dict[str, Any]) -> str:
    request = case["forward_request"]
    payload = json.dumps(request["data"]["data"], sort_keys=True)
    return f"{request['data']['type']}-{payload}-{request['requestId'][-4:]}"


# --- the client behind the Python node: what the captured TypeScript client did -------


async def notify(request: DNotifyRequest) -> DNotifyResponse:
    if request.notification.startswith("slow:"):
        await asyncio.sleep(int(request.notification[5:]) / 1000)
    return DNotifyResponse(acknowledged=True)


def compute(request: DComputeRequest) -> DComputeResponse:
    return DComputeResponse(result=request.number * 2 if request.operation == "double" else -1)


def capture_client(make_client: MakeClient, node: Node, client_id: str) -> Client:
    client = make_client(node, client_id)
    client.register_message_handler("dNotify", notify)
    client.register_message_handler("dCompute", compute)
    return client  # no dRequestData handler, as in the capture


class Inbox:
    """A node's channel on Redis, read by the test (the TypeScript node's side)."""

    def __init__(self, raw: Redis, channel: str) -> None:
        self.channel = channel
        self._pubsub = raw.pubsub()
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Inbox:
        await self._pubsub.subscribe(self.channel)
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._pubsub.aclose()

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] == "message":
                self.messages.put_nowait(json.loads(message["data"]))

    async def next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.messages.get(), timeout)


@pytest.fixture
async def python_node(
    make_node: MakeNode, make_client: MakeClient, raw: Redis, mesh_prefix: str
) -> AsyncIterator[tuple[Node, Inbox]]:
    """A Python node holding pc1 and mv1, and the TypeScript node's inbox it replies to."""
    node = await make_node()
    for client_id in ("pc1", "mv1"):
        await join(node, capture_client(make_client, node, client_id))
    async with Inbox(raw, f"{mesh_prefix}:mesh:_mc:app:node:{TS_NODE}") as inbox:
        yield node, inbox


@pytest.mark.parametrize("case", cases("typescript"), ids=case_id)
async def test_a_typescript_nodes_forward_gets_the_reply_it_expects(
    python_node: tuple[Node, Inbox], raw: Redis, mesh_prefix: str, case: dict[str, Any]
) -> None:
    node, inbox = python_node
    request = case["forward_request"]
    await raw.publish(
        f"{mesh_prefix}:mesh:_mc:app:node:{node.mesh_instance_id}", json.dumps(request)
    )
    heartbeats = 0
    while True:
        message = await inbox.next()
        assert message["requestId"] == request["requestId"]
        if message.get("heartbeat"):
            heartbeats += 1
            continue
        break
    expected = case["reply"]["data"]
    expected = FIXED_REPLY_DATA.get(request["requestId"], expected)
    if "error" in expected:
        # The client behind the node is ours now: the TypeScript text, then the prefix.
        assert message["data"]["errorName"] == expected["errorName"]
        assert message["data"]["error"].startswith(expected["error"])
    else:
        assert message == {"requestId": request["requestId"], "reply": True, "data": expected}
    if request["requestId"] == "ec9d0efb-5d77-41b0-96b0-d69ef6b80f11":
        assert heartbeats >= 1  # what kept the TypeScript caller waiting past 1 s


@pytest.fixture
async def typescript_node(
    make_node: MakeNode, redis_settings: RedisSettings, raw: Redis, mesh_prefix: str
) -> AsyncIterator[tuple[Node, Inbox]]:
    """A Python node, and a TypeScript node's inbox holding tc1 and mv2 in the registry."""
    node = await make_node()
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry(
        "_mc:app", redis=redis_settings
    )
    for client_id in ("tc1", "mv2"):
        await registry.register(client_id, TS_NODE, None)
    async with Inbox(raw, f"{mesh_prefix}:mesh:_mc:app:node:{TS_NODE}") as inbox:
        yield node, inbox
    await registry.aclose()


async def answer_like_typescript(
    raw: Redis, mesh_prefix: str, inbox: Inbox, reply: dict[str, Any], delay: float
) -> dict[str, Any]:
    """Take one forward request; beat every 0.75 x timeoutMs while 'working'; reply."""
    request = await inbox.next()
    channel = f"{mesh_prefix}:mesh:_mc:app:node:{request['senderInstanceId']}"
    interval = 0.75 * request["timeoutMs"] / 1000
    waited = 0.0
    while waited + interval < delay:
        await asyncio.sleep(interval)
        waited += interval
        await raw.publish(
            channel, json.dumps({"requestId": request["requestId"], "heartbeat": True})
        )
    await asyncio.sleep(delay - waited)
    await raw.publish(
        channel, json.dumps({"requestId": request["requestId"], "reply": True, "data": reply})
    )
    return request


@pytest.mark.parametrize("case", cases("python"), ids=case_id)
async def test_a_python_nodes_forward_is_what_a_typescript_node_can_encode(
    typescript_node: tuple[Node, Inbox], raw: Redis, mesh_prefix: str, case: dict[str, Any]
) -> None:
    node, inbox = typescript_node
    captured = case["forward_request"]
    call = captured["data"]["type"]
    request_class = node.server_schema.lookup(call, request=True)
    assert request_class is not None
    # The message the Python app passed in the capture (fields it left at default).
    message = message_from_object(request_class.message_cls, captured["data"]["data"])
    rid = captured["requestId"]
    reply = TS_CLIENT_REPLIES.get(rid, case["reply"]["data"])
    delay = 1.3 if "slow:" in json.dumps(captured["data"]["data"]) else 0.0
    timeout = captured["data"].get("timeoutMs", captured["timeoutMs"]) / 1000
    kwargs = {"timeout": timeout} if "timeoutMs" in captured["data"] else {}
    answering = asyncio.create_task(answer_like_typescript(raw, mesh_prefix, inbox, reply, delay))
    outcome: Any
    try:
        outcome = await node.invoke(captured["data"]["clientId"], call, message, **kwargs)
    except ClientInvocationError as exc:
        outcome = exc
    sent = await answering
    assert sent["type"] == "forward"
    assert sent["senderInstanceId"] == node.mesh_instance_id
    assert sent["data"]["clientId"] == captured["data"]["clientId"]
    assert sent["data"]["type"] == call
    assert sent["data"]["data"] == FIXED_REQUEST_DATA.get(rid, captured["data"]["data"])
    # A Python caller always sends its timeout (the call's, else request_timeout).
    assert sent["data"]["timeoutMs"] == sent["timeoutMs"]
    if "error" in reply:
        assert isinstance(outcome, ClientInvocationError)
        assert str(outcome) == reply["error"]
    else:
        response_class = node.client_schema.lookup(call, request=False)
        assert response_class is not None
        assert outcome == message_from_object(response_class.message_cls, reply["data"])


def test_every_captured_case_is_replayed() -> None:
    assert len(cases("typescript")) + len(cases("python")) == len(CASES) == 18
    assert ServerMessage  # the schema the capture used
