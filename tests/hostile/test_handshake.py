"""Hostile peers, issue 20 items 5, 7 and 12: the upgrade request and oversized frames.

Probes a non-ASCII signature, more connections than ``max_connections``, a client
that opens TCP and never sends its upgrade request, and a frame over twice the max
frame size (which the transport itself must refuse with our 4000).
"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import SrpcError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.hostile._support import SECRET, signed_server, signed_url
from tests.srpc._support import ClientFactory, ServerFactory, eventually
from tests.srpc.test_transports import Uvicorn


async def test_a_non_ascii_signature_is_refused_with_403(make_server: ServerFactory) -> None:
    server = await signed_server(make_server)
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(10):
            await connect(signed_url(server, signature="é" * 64))
    assert refused.value.response.status_code == 403


async def test_upgrades_past_max_connections_are_refused_with_503(
    make_server: ServerFactory,
) -> None:
    server = await signed_server(make_server, max_connections=2)
    async with asyncio.timeout(10):
        first = await connect(signed_url(server, "a"))
        second = await connect(signed_url(server, "b"))
        await eventually(lambda: len(server.streams_by_id) == 2)
        with pytest.raises(InvalidStatus) as refused:
            await connect(signed_url(server, "c"))
        await first.close()
        await eventually(lambda: len(server.streams_by_id) == 1)
        third = await connect(signed_url(server, "c"))
        await asyncio.gather(second.close(), third.close())
    assert refused.value.response.status_code == 503


async def test_a_connection_that_sends_no_upgrade_request_is_closed_after_the_handshake_timeout(
    make_server: ServerFactory,
) -> None:
    server = await signed_server(make_server, handshake_timeout=0.2)
    assert server.port is not None
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            assert await reader.read() == b""  # closed by the server, nothing sent
        finally:
            writer.close()


async def test_a_frame_over_twice_the_max_frame_size_closes_with_4000(
    make_server: ServerFactory, srpc_transport: str
) -> None:
    server = await signed_server(make_server, max_frame_size=64 * 1024)
    async with asyncio.timeout(10):
        websocket = await connect(signed_url(server), max_size=None)
        await websocket.send(b"\0" * (256 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await websocket.recv()
    assert closed.value.rcvd is not None
    # picows refuses the frame itself, with the standard 1009 (docs/wire.md §4).
    assert closed.value.rcvd.code == (1009 if srpc_transport == "picows" else 4000)


async def test_upgrades_past_max_connections_are_refused_with_503_under_asgi(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server, listen=False, max_connections=1)
    async with asyncio.timeout(30), Uvicorn(server.asgi) as web:
        url = f"ws://127.0.0.1:{web.port}/srpc"
        first = make_client(url, "a", client_secret=SECRET, enable_reconnect=False)
        await first.connect()
        with pytest.raises(SrpcError, match="503"):
            await make_client(url, "b", client_secret=SECRET, enable_reconnect=False).connect()
        await first.disconnect()
