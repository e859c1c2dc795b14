"""The data plane as docs/wire.md describes it, spoken by a plain asyncio client."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import pytest
from direct_helpers import SECRET, MakeMesh
from meshsrpc import MeshService, RedisSettings


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def read_frame(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return json.loads(await reader.readexactly(size))


def proof(role: str, mesh: str, caller: int, listener: int, nonces: str) -> str:
    text = f"meshsrpc-direct/1|{role}|{mesh}|{caller}|{listener}|{nonces}"
    return hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()


async def handshake(
    mesh: MeshService, prefix: str, caller: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``mesh`` as node ``caller`` following wire.md."""
    assert mesh.direct_link is not None and mesh.direct_link.address is not None
    address = mesh.direct_link.address
    reader, writer = await asyncio.open_connection(address.host, address.port)
    base = f"{prefix}:mesh:{mesh.key}"
    hello = {"v": 1, "mesh": base, "from": caller, "to": mesh.instance_id, "nonce": "c0ffee"}
    writer.write(frame(json.dumps(hello).encode()))
    challenge = await read_frame(reader)
    assert challenge["id"] == mesh.instance_id
    nonces = f"c0ffee|{challenge['nonce']}"
    assert challenge["proof"] == proof("listener", base, caller, mesh.instance_id, nonces)
    answer = {"proof": proof("caller", base, caller, mesh.instance_id, nonces)}
    writer.write(frame(json.dumps(answer).encode()))
    assert await read_frame(reader) == {"ok": True}
    return reader, writer


async def test_a_client_written_from_the_wire_doc_calls_a_node(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    b = await make_mesh()
    b.register_handler("double", lambda data: data * 2)
    async with asyncio.timeout(10):
        reader, writer = await handshake(b, str(redis_settings.prefix), caller=77)
        request = {
            "requestId": "r-1",
            "senderInstanceId": 77,
            "type": "double",
            "data": 21,
            "timeoutMs": 5000,
        }
        writer.write(frame(json.dumps(request).encode()))
        reply = await read_frame(reader)
    writer.close()
    assert reply == {"requestId": "r-1", "reply": True, "data": 42}


async def test_a_malformed_message_on_a_direct_channel_is_logged_and_dropped(
    make_mesh: MakeMesh, redis_settings: RedisSettings, caplog: pytest.LogCaptureFixture
) -> None:
    b = await make_mesh()
    b.register_handler("double", lambda data: data * 2)
    request = b'{"requestId":"r-2","senderInstanceId":77,"type":"double","data":1}'
    with caplog.at_level(logging.WARNING, logger="meshsrpc.mesh"):
        async with asyncio.timeout(10):
            reader, writer = await handshake(b, str(redis_settings.prefix), caller=77)
            writer.write(frame(b"{not json") + frame(b"[]") + frame(request))
            reply = await read_frame(reader)  # the connection is still there
    writer.close()
    assert reply == {"requestId": "r-2", "reply": True, "data": 2}
    assert len([r for r in caplog.records if "dropping message" in r.getMessage()]) == 2


async def test_an_oversized_frame_after_the_handshake_closes_that_connection_only(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    from meshsrpc import DirectSettings

    a = await make_mesh()
    b = await make_mesh(direct=DirectSettings(secret=SECRET, max_frame_size=1000))
    b.register_handler("double", lambda data: data * 2)
    async with asyncio.timeout(10):
        reader, writer = await handshake(b, str(redis_settings.prefix), caller=77)
        writer.write((1001).to_bytes(4, "big"))
        assert await reader.read() == b""
    writer.close()
    assert await a.invoke(b.instance_id, "double", 4) == 8
