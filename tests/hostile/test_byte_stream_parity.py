"""Hostile peers, issue 20: byte-stream behaviours that differed from the TypeScript peer.

Probes a reader opened without a stream id, two readers for one id, and a writer
whose reader gave up (it must not answer the peer's destroy with a destroy).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from meshsrpc import SrpcError

from tests.generated.sgnl24.TestRpc import UEchoRequest, UEchoResponse
from tests.hostile._support import connected_client, signed_server
from tests.srpc._support import ClientFactory, ServerFactory, eventually


async def test_opening_a_reader_without_a_stream_id_raises(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    await connected_client(make_client, server)
    stream = server.streams_by_client_id["c1"]
    with pytest.raises(ValueError, match="Missing stream ID"):
        stream.open_byte_stream(None)  # type: ignore[arg-type]


async def test_opening_a_second_reader_for_a_stream_raises(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    await connected_client(make_client, server)
    stream = server.streams_by_client_id["c1"]
    first = stream.open_byte_stream(1)
    with pytest.raises(ValueError, match="Stream 1 already exists"):
        stream.open_byte_stream(1)
    assert first.stream_id == 1


async def test_a_writer_destroyed_by_its_reader_sends_no_destroy_back(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    server.register_message_handler(
        "uEcho", lambda stream, request: UEchoResponse(message=request.message)
    )
    client = await connected_client(make_client, server)
    stream = server.streams_by_client_id["c1"]
    assert stream.session is not None
    manager = stream.session.byte_streams
    received: list[tuple[int, str]] = []
    on_operation = manager.on_operation

    async def recording(op: Any) -> None:
        received.append((op.stream_id, "destroy" if op.destroy is not None else "data"))
        await on_operation(op)

    manager.on_operation = recording  # type: ignore[method-assign]
    writer = client.create_byte_stream()
    reader = stream.open_byte_stream(writer.stream_id)
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match="no thanks"):
            async with writer:
                await writer.write(b"abc")
                await reader.destroy("no thanks")
                await eventually(lambda: writer._error is not None)
                await writer.write(b"more")
        # Frames keep their order: a destroy sent on exit would arrive before this reply.
        await client.invoke("uEcho", UEchoRequest(message="flush"))
    assert (writer.stream_id, "destroy") not in received
