"""The receive path after activation: frames taken straight from the transport keep their order."""

from __future__ import annotations

import asyncio

from meshsrpc import SrpcStream
from websockets.asyncio.client import connect as ws_connect

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest, UEchoResponse
from tests.srpc._support import ServerFactory, eventually, url_of

PING = bytes.fromhex("920300")


def echo_frame(i: int) -> bytes:
    return bytes(ClientMessage(request_id=f"r{i}", u_echo_request=UEchoRequest(message=str(i))))


async def replies_to(ws: object, count: int) -> list[str]:
    replies: list[str] = []
    while len(replies) < count:
        frame = ServerMessage.parse(await ws.recv(decode=False))  # type: ignore[attr-defined]
        if frame.reply:
            replies.append(frame.request_id)
    return replies


async def test_back_to_back_requests_start_in_arrival_order(make_server: ServerFactory) -> None:
    server = await make_server()
    started: list[str] = []

    async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        started.append(request.message)
        await asyncio.sleep(0)
        return UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    async with ws_connect(url_of(server) + "?id=s-o&cid=o&appv=1", compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        await eventually(lambda: server.streams_by_client_id["o"].is_activated)
        # Sent without waiting for replies: they arrive (and are read) together.
        for i in range(20):
            await ws.send(echo_frame(i))
        assert sorted(await replies_to(ws, 20)) == sorted(f"r{i}" for i in range(20))
    assert started == [str(i) for i in range(20)]


async def test_a_handler_that_never_waits_answers_each_request(make_server: ServerFactory) -> None:
    server = await make_server()

    def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=request.message)

    server.register_message_handler("uEcho", echo)
    async with ws_connect(url_of(server) + "?id=s-n&cid=n&appv=1", compression=None) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        for i in range(5):
            await ws.send(echo_frame(i))
            assert await replies_to(ws, 1) == [f"r{i}"]
