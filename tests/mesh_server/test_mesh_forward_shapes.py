"""Every kind of field crosses a mixed mesh in the shape ts-proto builds (WIRE.md §3).

A Python node forwards ``dShapes`` to a client held by a node that behaves like a
TypeScript node (the test, on a real Redis): the request it publishes must hold every
non-optional field with its default, enums and 64-bit integers as numbers, and leave
unset optional, oneof and message fields out. The other way, a TypeScript-style node
forwards a ts-proto object to a Python node holding a real client, and the reply comes
back in the same shape.
"""

from __future__ import annotations

import asyncio
import datetime
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import MeshClientRedisRegistry, MeshSrpcServer, RedisSettings, SrpcClient
from redis.asyncio import Redis

from tests.generated.meshtest.Shapes import (
    ClientMessage,
    Colour,
    DShapesRequest,
    DShapesResponse,
    Leaf,
    ServerMessage,
)
from tests.mesh_server.mesh_server_support import FAST, eventually
from tests.mesh_server.test_mesh_forward_vectors import Inbox

pytestmark = pytest.mark.timeout(60)

ShapesNode = MeshSrpcServer[ClientMessage, ServerMessage, Any]
TS_NODE = 7

# ts-proto's decode() of an empty DShapesRequest.
DEFAULTS: dict[str, Any] = {
    "text": "",
    "flag": False,
    "i32": 0,
    "u32": 0,
    "s32": 0,
    "f32": 0,
    "sf32": 0,
    "i64": 0,
    "u64": 0,
    "s64": 0,
    "f64": 0,
    "sf64": 0,
    "ratio": 0.0,
    "precise": 0.0,
    "blob": "",
    "colour": 0,
    "texts": [],
    "bigs": [],
    "colours": [],
    "leaves": [],
    "counts": {},
    "names": {},
    "leafByName": {},
    "colourByName": {},
}

FULL = DShapesRequest(
    text="é/\u2028",
    flag=True,
    i32=-(2**31),
    u32=2**32 - 1,
    s32=-5,
    f32=7,
    sf32=-7,
    i64=-(2**53) + 1,
    u64=2**53 - 1,
    s64=-3,
    f64=3,
    sf64=-(2**40),
    ratio=0.5,
    precise=-1.25,
    blob=b"\x00\xffz",
    colour=Colour.GREEN,
    texts=["a", ""],
    bigs=[0, 2**40],
    colours=[Colour.RED, Colour.UNSPECIFIED],
    leaves=[Leaf(label="x", weight=1.5, colour=Colour.RED), Leaf()],
    counts={"k": 3, "zero": 0},
    names={-1: "minus", 2**40: ""},
    leaf_by_name={"l": Leaf(label="y")},
    colour_by_name={"c": Colour.GREEN},
    maybe_text="",
    maybe_number=0,
    maybe_colour=Colour.UNSPECIFIED,
    leaf=Leaf(),
    chosen_leaf=Leaf(colour=Colour.GREEN),
    when=datetime.datetime(2026, 12, 3, 9, 30, 1, 250000, tzinfo=datetime.UTC),
    within=datetime.timedelta(seconds=2, microseconds=5000),
    wrapped_number=0,
)
FULL_OBJECT: dict[str, Any] = {
    "text": "é/\u2028",
    "flag": True,
    "i32": -(2**31),
    "u32": 2**32 - 1,
    "s32": -5,
    "f32": 7,
    "sf32": -7,
    "i64": -(2**53) + 1,
    "u64": 2**53 - 1,
    "s64": -3,
    "f64": 3,
    "sf64": -(2**40),
    "ratio": 0.5,
    "precise": -1.25,
    "blob": "AP96",
    "colour": 2,
    "texts": ["a", ""],
    "bigs": [0, 2**40],
    "colours": [1, 0],
    "leaves": [
        {"label": "x", "weight": 1.5, "colour": 1},
        {"label": "", "weight": 0.0, "colour": 0},
    ],
    "counts": {"k": 3, "zero": 0},
    "names": {"-1": "minus", str(2**40): ""},
    "leafByName": {"l": {"label": "y", "weight": 0.0, "colour": 0}},
    "colourByName": {"c": 2},
    "maybeText": "",
    "maybeNumber": 0,
    "maybeColour": 0,
    "leaf": {"label": "", "weight": 0.0, "colour": 0},
    "chosenLeaf": {"label": "", "weight": 0.0, "colour": 2},
    "when": "2026-12-03T09:30:01.250Z",
    "within": {"seconds": 2, "nanos": 5_000_000},
    "wrappedNumber": 0,
}


@pytest.fixture
async def shapes_nodes(
    redis_settings: RedisSettings, raw: Redis, mesh_prefix: str
) -> AsyncIterator[tuple[ShapesNode, Inbox, MeshClientRedisRegistry[Any]]]:
    node: ShapesNode = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="shapes",
        redis=redis_settings,
        allow_unsigned=True,
        **FAST,
    )
    await node.listen("127.0.0.1", 0)
    await node.mesh_start()
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry(
        "_mc:shapes", redis=redis_settings
    )
    await registry.register("ts1", TS_NODE, None)
    try:
        async with Inbox(raw, f"{mesh_prefix}:mesh:_mc:shapes:node:{TS_NODE}") as inbox:
            yield node, inbox, registry
    finally:
        await registry.aclose()
        await node.mesh_stop()
        await node.close()


async def forward_and_echo(
    node: ShapesNode, inbox: Inbox, raw: Redis, mesh_prefix: str, message: DShapesRequest
) -> tuple[dict[str, Any], DShapesResponse]:
    """Invoke ts1 from the Python node; the TypeScript-style node echoes what it decoded."""
    calling = asyncio.create_task(node.invoke("ts1", "dShapes", message))
    request = await inbox.next()
    reply = {"data": {"echo": request["data"]["data"]}}
    await raw.publish(
        f"{mesh_prefix}:mesh:_mc:shapes:node:{request['senderInstanceId']}",
        json.dumps({"requestId": request["requestId"], "reply": True, "data": reply}),
    )
    return request["data"]["data"], await calling


@pytest.mark.parametrize(
    ("message", "expected"),
    [(DShapesRequest(), DEFAULTS), (FULL, FULL_OBJECT)],
    ids=["defaults", "set"],
)
async def test_a_forwarded_request_has_every_field_in_the_ts_proto_shape(
    shapes_nodes: tuple[ShapesNode, Inbox, Any],
    raw: Redis,
    mesh_prefix: str,
    message: DShapesRequest,
    expected: dict[str, Any],
) -> None:
    node, inbox, _ = shapes_nodes
    sent, answer = await forward_and_echo(node, inbox, raw, mesh_prefix, message)
    assert sent == expected
    assert answer == DShapesResponse(echo=message)


async def test_unset_optional_oneof_and_message_fields_are_left_out_not_null(
    shapes_nodes: tuple[ShapesNode, Inbox, Any], raw: Redis, mesh_prefix: str
) -> None:
    node, inbox, _ = shapes_nodes
    sent, _ = await forward_and_echo(node, inbox, raw, mesh_prefix, DShapesRequest(text="t"))
    absent = {"maybeText", "maybeNumber", "maybeColour", "leaf", "chosenText", "chosenLeaf"}
    absent |= {"when", "within", "wrappedNumber", "extra"}
    assert absent.isdisjoint(sent)
    assert None not in sent.values()


async def test_a_typescript_nodes_forward_is_answered_in_the_ts_proto_shape(
    shapes_nodes: tuple[ShapesNode, Inbox, Any], raw: Redis, mesh_prefix: str
) -> None:
    node, inbox, _ = shapes_nodes
    client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        f"ws://127.0.0.1:{node.port}/srpc",
        ClientMessage,
        ServerMessage,
        "py1",
        enable_reconnect=False,
    )
    received: list[DShapesRequest] = []

    def echo(request: DShapesRequest) -> DShapesResponse:
        received.append(request)
        return DShapesResponse(echo=request)

    client.register_message_handler("dShapes", echo)
    await client.connect()
    try:
        await eventually(lambda: "py1" in node.streams_by_client_id)
        await eventually(lambda: node.streams_by_client_id["py1"].is_activated)
        # A TypeScript node's bytes field arrives as JSON.stringify(Uint8Array).
        data = {**FULL_OBJECT, "blob": {"0": 0, "1": 255, "2": 122}}
        forward = {
            "requestId": "ts-shapes-1",
            "senderInstanceId": TS_NODE,
            "type": "forward",
            "data": {"clientId": "py1", "type": "dShapes", "data": data, "timeoutMs": 3000},
            "timeoutMs": 3000,
        }
        channel = f"{mesh_prefix}:mesh:_mc:shapes:node:{node.mesh_instance_id}"
        await raw.publish(channel, json.dumps(forward))
        reply = await inbox.next()
        assert reply == {
            "requestId": "ts-shapes-1",
            "reply": True,
            "data": {"data": {"echo": FULL_OBJECT}},
        }
        assert received == [FULL]
    finally:
        await client.disconnect()
