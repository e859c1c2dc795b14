"""The data plane admits only members of the mesh: mesh secret, HMAC challenge, TLS."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from pathlib import Path
from typing import Any

import pytest
from direct_helpers import SECRET, MakeMesh
from meshsrpc import DirectSettings, MeshService, RedisSettings
from meshsrpc.testing import eventually

from tests._tls import self_signed


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def connect_raw(mesh: MeshService) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    assert mesh.direct_link is not None and mesh.direct_link.address is not None
    address = mesh.direct_link.address
    return await asyncio.open_connection(address.host, address.port)


async def test_a_peer_with_a_wrong_mesh_secret_is_refused_and_logged(
    make_mesh: MakeMesh, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_mesh(direct=DirectSettings(secret="not-the-mesh-secret"))
    b = await make_mesh()
    b.register_handler("who", lambda data: "b")
    with caplog.at_level(logging.WARNING, logger="meshsrpc.direct"):
        for _ in range(5):
            assert await a.invoke(b.instance_id, "who", None) == "b"  # through Redis
        await eventually(lambda: any("wrong mesh secret" in r.getMessage() for r in caplog.records))
    refusal = next(r.getMessage() for r in caplog.records if "wrong mesh secret" in r.getMessage())
    assert "refused a direct connection from 127.0.0.1:" in refusal
    assert a.direct_link is not None and not a.direct_link.is_direct(b.instance_id)
    assert b.direct_link is not None and not b.direct_link.is_direct(a.instance_id)


async def read_frame(reader: asyncio.StreamReader) -> Any:
    size = int.from_bytes(await reader.readexactly(4), "big")
    return json.loads(await reader.readexactly(size))


async def test_a_connection_that_does_not_prove_the_secret_gets_no_message_through(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    b = await make_mesh()
    served: list[object] = []
    b.register_handler("who", served.append)
    reader, writer = await connect_raw(b)
    mesh = f"{redis_settings.prefix}:mesh:{b.key}"
    hello = {"v": 1, "mesh": mesh, "from": 99, "to": b.instance_id, "nonce": "00"}
    request = b'{"requestId":"r","senderInstanceId":99,"type":"who","data":1,"timeoutMs":1000}'
    writer.write(frame(json.dumps(hello).encode()) + frame(b'{"proof":"00"}') + frame(request))
    async with asyncio.timeout(5):
        challenge = await read_frame(reader)
        verdict = await read_frame(reader)
        assert await reader.read() == b""  # closed
    writer.close()
    assert challenge["id"] == b.instance_id
    assert verdict == {"ok": False, "error": "wrong mesh secret"}
    assert served == []


async def test_an_oversized_frame_before_the_handshake_closes_only_that_connection(
    make_mesh: MakeMesh,
) -> None:
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("who", lambda data: "b")
    reader, writer = await connect_raw(b)
    writer.write((10 * 1024 * 1024).to_bytes(4, "big") + b"x" * 100)
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()
    assert await a.invoke(b.instance_id, "who", None) == "b"


def tls_settings(tmp_path: Path) -> DirectSettings:
    cert, key = self_signed(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    client_ssl = ssl.create_default_context(cafile=str(cert))
    return DirectSettings(secret=SECRET, ssl=server_ssl, client_ssl=client_ssl)


async def test_direct_channels_run_over_tls(make_mesh: MakeMesh, tmp_path: Path) -> None:
    tls = tls_settings(tmp_path)
    a, b = await make_mesh(direct=tls), await make_mesh(direct=tls)
    b.register_handler("who", lambda data: "b")
    assert b.direct_link is not None and b.direct_link.address is not None
    assert b.direct_link.address.tls

    async def direct() -> bool:
        assert await a.invoke(b.instance_id, "who", None) == "b"
        return a.direct_link is not None and a.direct_link.is_direct(b.instance_id)

    await eventually(direct)
    # Nothing but TLS gets through to the listener.
    reader, writer = await connect_raw(b)
    writer.write(frame(b'{"v":1}'))
    async with asyncio.timeout(5):
        assert await reader.read() == b""
    writer.close()


async def test_a_node_without_tls_calls_a_tls_node_through_redis(
    make_mesh: MakeMesh, tmp_path: Path
) -> None:
    a, b = await make_mesh(), await make_mesh(direct=tls_settings(tmp_path))
    b.register_handler("who", lambda data: "b")
    for _ in range(5):
        assert await a.invoke(b.instance_id, "who", None) == "b"
    assert a.direct_link is not None and not a.direct_link.is_direct(b.instance_id)


async def test_the_mesh_secret_is_read_from_the_environment(
    make_mesh: MakeMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESH_DIRECT_SECRET", "from-env")
    a = await make_mesh(direct=None)
    assert a.direct_link is not None
    assert a.direct_link.settings.secret_bytes == b"from-env"
