"""On picows, the server's frames of one loop iteration after the first share one write.

picows writes each frame with its own system call; a node forwarding a burst of calls to
one client would pay one per call. The frames must still arrive whole and in order, and
the close frame after them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import SrpcServer
from meshsrpc.srpc.transports.picows_connection import PicowsTransport, binary_frame_header
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from tests._tls import tls_contexts
from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DComputeRequest,
    DComputeResponse,
    ServerMessage,
)
from tests.srpc._support import ClientFactory, ServerFactory, url_of

PING = bytes.fromhex("920300")


@pytest.fixture
def srpc_transport() -> str:
    """Corking is the picows adapter's own (websockets corks in its adapter too)."""
    return "picows"


@contextlib.asynccontextmanager
async def raw_client(
    server: SrpcServer[ClientMessage, ServerMessage], **options: Any
) -> AsyncIterator[tuple[Any, PicowsTransport]]:
    """A websockets client past the first pingPong, and the server's transport of it."""
    url = f"{url_of(server)}?cid=raw&id=s-raw&appv=1"
    async with ws_connect(url, compression=None, **options) as ws:
        assert await ws.recv() == PING
        await ws.send(PING)
        async with asyncio.timeout(5):
            while "raw" not in server.streams_by_client_id:  # noqa: ASYNC110 - server state
                await asyncio.sleep(0.01)
        session = server.streams_by_client_id["raw"].session
        assert session is not None
        transport = session.transport
        assert isinstance(transport, PicowsTransport)
        yield ws, transport


async def receive(ws: Any, count: int) -> list[bytes]:
    """The next ``count`` frames that are not pingPong (the server answers ours)."""
    frames: list[bytes] = []
    async with asyncio.timeout(5):
        while len(frames) < count:
            frame = await ws.recv()
            if frame != PING:
                frames.append(frame)
    return frames


def test_frame_header_has_the_rfc_6455_length_forms() -> None:
    assert binary_frame_header(5) == b"\x82\x05"
    assert binary_frame_header(125) == b"\x82\x7d"
    assert binary_frame_header(126) == b"\x82\x7e\x00\x7e"
    assert binary_frame_header(65535) == b"\x82\x7e\xff\xff"
    assert binary_frame_header(65536) == b"\x82\x7f" + (65536).to_bytes(8, "big")


async def test_frames_of_one_iteration_wait_for_its_end_and_arrive_in_order(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with raw_client(server) as (ws, transport):
        frames = [b"frame-%03d" % n for n in range(50)]
        for frame in frames:
            assert transport.send_nowait(frame)
        # The first left by itself; the rest wait for the end of the iteration.
        assert transport.buffered_amount() == sum(len(f) for f in frames[1:])
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert transport.buffered_amount() == 0
        received = await receive(ws, len(frames))
    assert received == frames


async def test_a_frame_over_the_cork_limit_goes_at_once_and_keeps_the_order(
    make_server: ServerFactory,
) -> None:
    server = await make_server(max_frame_size=1 << 20)
    async with raw_client(server, max_size=None) as (ws, transport):
        frames = [b"a", b"b", b"x" * (100 * 1024), b"c"]
        for frame in frames:
            assert transport.send_nowait(frame)
        received = await receive(ws, len(frames))
    assert received == frames


async def test_the_close_frame_follows_the_frames_still_corked(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with raw_client(server) as (ws, transport):
        frames = [b"one", b"two", b"three"]
        for frame in frames:
            assert transport.send_nowait(frame)
        closing = asyncio.ensure_future(transport.close(4001, "bye"))
        received: list[bytes] = []
        async with asyncio.timeout(5):
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    frame = await ws.recv()
                    if frame != PING:
                        received.append(frame)  # type: ignore[arg-type]
        await closing
    assert received == frames
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_abort_drops_the_corked_frames_without_an_error(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    async with raw_client(server) as (_ws, transport):
        assert transport.send_nowait(b"first")
        assert transport.send_nowait(b"corked")
        assert transport.buffered_amount() >= len(b"corked")
        transport.abort()
        await asyncio.sleep(0.05)  # the iteration's end comes and writes nothing
        assert transport.buffered_amount() == 0
        assert transport.send_nowait(b"late") is False


async def test_a_burst_of_calls_to_a_client_over_tls_is_answered_in_full(
    make_server: ServerFactory, make_client: ClientFactory, tmp_path: Path
) -> None:
    # The corked frames go through the TLS transport's write, not picows' own.
    server_ctx, client_ctx = tls_contexts(tmp_path)
    server = await make_server(listen=False)
    await server.listen("127.0.0.1", 0, ssl=server_ctx)
    client = make_client(f"wss://localhost:{server.port}/srpc", ssl=client_ctx)
    client.register_message_handler("dCompute", lambda r: DComputeResponse(result=r.number * 2))
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    calls = [server.invoke(stream, "dCompute", DComputeRequest(number=n)) for n in range(50)]
    async with asyncio.timeout(10):
        responses = await asyncio.gather(*calls)
    assert [r.result for r in responses] == [2 * n for n in range(50)]
