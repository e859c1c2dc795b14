"""A raw client sending exactly what the TypeScript SrpcClient sends gets byte-exact answers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from meshsrpc import SrpcError, SrpcStream
from meshsrpc.srpc.auth import sign
from meshsrpc.srpc.ids import uuid7
from websockets.asyncio.client import connect as ws_connect

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
    UErrorRequest,
    UErrorResponse,
)
from tests.srpc._support import ServerFactory, eventually, url_of

VECTORS: dict[str, Any] = {
    v["name"]: v
    for v in json.loads(
        (Path(__file__).resolve().parents[1] / "protos" / "srpc-frames.json").read_text()
    )["vectors"]
}


def upstream(name: str, version: str = "@bufbuild/protobuf>=2.14") -> bytes:
    return bytes.fromhex(VECTORS[name]["hexAsSentByUpstreamSrpc"][version])


def canonical(name: str) -> bytes:
    return bytes.fromhex(VECTORS[name]["hex"])


async def test_typescript_style_session(make_server: ServerFactory) -> None:
    server = await make_server(auth_secret="shared")

    async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=f"Echo: {request.message}")

    async def fail(stream: SrpcStream, request: UErrorRequest) -> UErrorResponse:
        raise SrpcError(request.error_message, is_user_error=request.user_error)

    server.register_message_handler("uEcho", echo)
    server.register_message_handler("uError", fail)

    ts, stream_id = str(int(time.time() * 1000)), uuid7()
    signature = sign("shared", "1", "1.0.0", ts, stream_id, "ts-client")
    query = (
        f"?authv=1&appv=1.0.0&ts={ts}&id={stream_id}&cid=ts-client"
        f"&signature={signature}&_v=2&m--name=Alice"
    )
    async with ws_connect(url_of(server) + query, compression=None) as ws:
        assert await ws.recv(decode=False) == canonical("server_first_pingpong")
        await ws.send(upstream("client_pingpong"))
        assert await ws.recv(decode=False) == canonical("server_first_pingpong")
        stream = server.streams_by_client_id["ts-client"]
        assert stream.meta == {"name": "Alice"} and stream.client_stream_id == stream_id

        # uEcho as the TS client encodes it -> the reply is byte-identical to ts-proto's.
        await ws.send(upstream("client_uecho_request"))
        assert await ws.recv(decode=False) == canonical("server_uecho_response")

        # A user error, with the vector's request id.
        await ws.send(
            bytes.fromhex("0a03722d321000")
            + bytes(
                ClientMessage(
                    u_error_request=UErrorRequest(error_message="Invalid input", user_error=True)
                )
            )
        )
        assert await ws.recv(decode=False) == canonical("server_user_error_reply")

        # The server calls the TS client; it answers with reply written as 10 01.
        call = asyncio.create_task(
            server.invoke(stream, "dNotify", DNotifyRequest(notification="ping"))
        )
        frame = ServerMessage.parse(await ws.recv(decode=False))
        assert frame.d_notify_request == DNotifyRequest(notification="ping")
        request_id = frame.request_id.encode()
        await ws.send(
            b"\x0a" + bytes([len(request_id)]) + request_id + bytes.fromhex("1001827d020801")
        )
        assert await call == DNotifyResponse(acknowledged=True)

        # Older TS peers write the empty requestId as 0a 00.
        await ws.send(upstream("client_pingpong", "@bufbuild/protobuf<=2.13"))
        assert await ws.recv(decode=False) == canonical("server_first_pingpong")

        # A byte stream chunk as the TS client sends it reaches the reader.
        reader = stream.open_byte_stream(3)
        await ws.send(upstream("client_bytestream_write"))
        await ws.send(bytes.fromhex("0a09756e646566696e656410009a030408031a00"))  # finish id 3
        assert await reader.read() == b"\x00\x01\xff"
    await eventually(lambda: server.streams_by_id == {})
