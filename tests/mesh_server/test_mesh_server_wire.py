"""The Redis keys a MeshSrpcServer mesh leaves look like the TypeScript capture's snapshots."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.generated.sgnl24.TestRpc import DRequestDataRequest, DRequestDataResponse
from tests.mesh_server.mesh_server_support import MakeClient, MakeNode, eventually, join

pytestmark = pytest.mark.timeout(60)

CAPTURE = json.loads(Path("/work/shared/vectors/mesh-redis.json").read_text(encoding="utf-8"))
SAFETY_TTL = 86400
# The nodes here take the Redis path whose keys the capture shows: make_node(direct=False),
# even when MESH_DIRECT_SECRET is set (the direct hash is checked in tests/direct).


async def snapshot(raw: Redis, prefix: str) -> dict[str, dict[str, Any]]:
    """key (with the prefix replaced by ``cap``) -> {type, ttl, value}, like the capture."""
    keys: dict[str, dict[str, Any]] = {}
    async for key in raw.scan_iter(match=f"{prefix}:*"):
        kind = await raw.type(key)
        value: Any
        if kind == "hash":
            value = await raw.hgetall(key)
        elif kind == "set":
            value = sorted(await raw.smembers(key))
        elif kind == "zset":
            value = [member for member, _ in await raw.zrange(key, 0, -1, withscores=True)]
        else:
            value = await raw.get(key)
        keys["cap" + key[len(prefix) :]] = {"type": kind, "ttl": await raw.ttl(key), "value": value}
    return keys


def expected(name: str) -> dict[str, dict[str, Any]]:
    """The capture's snapshot with the mesh key ``demo`` renamed to ours (``app``)."""
    return {
        key.replace(":demo", ":app"): entry for key, entry in CAPTURE["snapshots"][name].items()
    }


def check_like_capture(
    ours: dict[str, dict[str, Any]], theirs: dict[str, dict[str, Any]], *, nodes: int = 2
) -> None:
    assert sorted(ours) == sorted(theirs)
    for key, entry in theirs.items():
        mine = ours[key]
        assert mine["type"] == entry["type"], key
        if entry["ttl"] == -1:
            assert mine["ttl"] == -1, key
        elif entry["ttl"] > 3600:
            assert SAFETY_TTL - 60 < mine["ttl"] <= SAFETY_TTL, key
        else:
            assert mine["ttl"] > 0, key  # the leader lock: our test TTL is shorter
        if entry["type"] == "hash" and key.endswith(":clients"):
            assert sorted(mine["value"]) == sorted(entry["value"]), key
            for client_id, raw_value in entry["value"].items():
                stored, captured = json.loads(mine["value"][client_id]), json.loads(raw_value)
                assert sorted(stored) == sorted(captured)
                assert stored["state"] == captured["state"] == "active"
                assert stored["nodeId"] == captured["nodeId"]
                assert stored["hasMetadata"] is captured["hasMetadata"] is True
                assert isinstance(stored["connectedAt"], int)
                assert len(str(stored["connectedAt"])) == 13
        elif entry["type"] == "hash":  # nodes: instance id -> hostname
            assert sorted(mine["value"]) == sorted(entry["value"]), key
            assert set(mine["value"].values()) == {socket.gethostname()}
        elif entry["type"] in ("set", "zset"):
            expected_members = [m[0] if isinstance(m, list) else m for m in entry["value"]]
            assert sorted(mine["value"]) == sorted(expected_members), key
        elif key.endswith(":next_id"):
            assert mine["value"] == str(nodes), key  # the capture started two nodes


async def test_registry_keys_match_the_capture(
    make_node: MakeNode, make_client: MakeClient, raw: Redis, mesh_prefix: str
) -> None:
    # Like the capture: node 1 (leader) starts first, node 2 second; c1 connects to node 2.
    a = await make_node(direct=False)
    b = await make_node(direct=False)
    assert (a.mesh_instance_id, b.mesh_instance_id) == (1, 2)
    await eventually(lambda: raw.exists(f"{mesh_prefix}:leader:mesh:_mc:app"))
    note = 'a/b "q" é'
    first = make_client(b, "c1", client_meta={"userId": "u1", "note": note})
    await join(b, first)

    after_invoke = await snapshot(raw, mesh_prefix)
    check_like_capture(after_invoke, expected("afterInvoke"))
    stored = json.loads(after_invoke["cap:mesh:_mc:app:clients"]["value"]["c1"])
    assert stored["metadata"] == {"userId": "u1", "note": note}

    second = make_client(a, "c1", client_meta={"userId": "u1", "via": "A"})
    await join(a, second, supersede=True)
    await eventually(lambda: not first.is_connected)
    await eventually(lambda: "c1" not in b.streams_by_client_id)
    after_supersede = await snapshot(raw, mesh_prefix)
    check_like_capture(after_supersede, expected("afterSupersede"))
    stored = json.loads(after_supersede["cap:mesh:_mc:app:clients"]["value"]["c1"])
    assert stored["metadata"] == {"userId": "u1", "via": "A"}

    await second.disconnect()

    async def gone() -> bool:
        return not await raw.exists(f"{mesh_prefix}:mesh:_mc:app:clients")

    await eventually(gone)
    check_like_capture(await snapshot(raw, mesh_prefix), expected("afterDisconnect"))


async def test_mesh_stop_leaves_only_the_id_counter(
    make_node: MakeNode, make_client: MakeClient, raw: Redis, mesh_prefix: str
) -> None:
    node = await make_node(direct=False)
    await eventually(lambda: raw.exists(f"{mesh_prefix}:leader:mesh:_mc:app"))
    for client_id in ("c1", "c2"):
        await join(node, make_client(node, client_id))
    assert len(await node.client_registry.list_clients()) == 2

    await node.mesh_stop()
    check_like_capture(await snapshot(raw, mesh_prefix), expected("afterStopA"), nodes=1)


async def test_forward_carries_the_messages_as_camel_case_proto_json(
    make_node: MakeNode, make_client: MakeClient, raw: Redis, mesh_prefix: str
) -> None:
    owner = await make_node(direct=False)
    caller = await make_node(direct=False)
    client = make_client(owner, "c1")
    client.register_message_handler(
        "dRequestData", lambda request: DRequestDataResponse(success=request.data_size == 2)
    )
    await join(owner, client)
    pubsub = raw.pubsub()
    await pubsub.subscribe(
        f"{mesh_prefix}:mesh:_mc:app:node:{owner.mesh_instance_id}",
        f"{mesh_prefix}:mesh:_mc:app:node:{caller.mesh_instance_id}",
    )
    try:
        request = DRequestDataRequest(stream_id=7, data_size=2)
        response = await caller.invoke("c1", "dRequestData", request)
        assert response == DRequestDataResponse(success=True)
        payloads: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(payloads) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    payloads.append(json.loads(message["data"]))
    finally:
        await pubsub.aclose()
    forward, reply = payloads
    assert forward["type"] == "forward"
    assert forward["data"] == {
        "clientId": "c1",
        "type": "dRequestData",
        "data": {"streamId": 7, "dataSize": 2},
        "timeoutMs": 2000,  # no timeout given: the caller's request_timeout (FAST)
    }
    assert reply == {
        "requestId": forward["requestId"],
        "reply": True,
        "data": {"data": {"success": True}},
    }
