"""Hostile peers, issue 20 item 1: a receiver that goes away must release its upload.

Probes a handler that refuses an upload after its first chunk (by raising), one that
drops its reader unread, a reader block left early, and a server closing while a
reader is full: none may wedge the connection's receive loop.
"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import SrpcError, SrpcStream
from meshsrpc.srpc.bytestream import ByteStreamReader

from tests.generated.sgnl24.TestRpc import (
    UEchoRequest,
    UEchoResponse,
    UUploadRequest,
    UUploadResponse,
)
from tests.hostile._support import Client, connected_client, signed_server
from tests.srpc._support import ClientFactory, ServerFactory, eventually

CHUNK = b"\0" * (64 * 1024)
LIMIT = 8 * 1024 * 1024  # well past the reader's 1 MiB high water


async def _echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=request.message)


async def _write_until_refused(
    client: Client, opened: asyncio.Event
) -> tuple[asyncio.Task[UUploadResponse], str]:
    """Start an upload, write once the handler opened its reader, until it is destroyed.

    Returns the upload call and the writer's error.
    """
    writer = client.create_byte_stream()
    call = asyncio.create_task(
        client.invoke("uUpload", UUploadRequest(stream_id=writer.stream_id), timeout=20)
    )
    await opened.wait()
    written = 0
    with pytest.raises(SrpcError) as refused:
        while written < LIMIT:
            await writer.write(CHUNK)
            written += len(CHUNK)
        # Everything went out: a destroy must still arrive, before this echo's reply.
        await client.invoke("uEcho", UEchoRequest(message="flush"))
        await writer.write(CHUNK)
    return call, str(refused.value)


async def test_a_handler_that_raises_after_the_first_chunk_refuses_the_upload(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    opened = asyncio.Event()

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        reader = stream.open_byte_stream(request.stream_id)
        opened.set()
        await reader.__anext__()
        raise SrpcError("upload refused", True)

    server.register_message_handler("uUpload", upload)
    server.register_message_handler("uEcho", _echo)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(30):
        call, error = await _write_until_refused(client, opened)
        assert "upload refused" in error
        with pytest.raises(SrpcError, match="upload refused"):
            await call
        # The connection still receives: the same client calls again.
        reply = await client.invoke("uEcho", UEchoRequest(message="still here"))
    assert reply.message == "still here"


async def test_a_refused_upload_lets_the_stream_close_and_run_its_disconnect_handlers(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    opened = asyncio.Event()
    disconnected: list[str] = []

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        reader = stream.open_byte_stream(request.stream_id)
        opened.set()
        await reader.__anext__()
        raise ValueError("not this file")

    server.register_message_handler("uUpload", upload)
    server.register_message_handler("uEcho", _echo)
    server.register_disconnect_handler(lambda stream, cause: disconnected.append(cause))
    client = await connected_client(make_client, server)
    stream = server.streams_by_client_id["c1"]
    async with asyncio.timeout(30):
        await _write_until_refused(client, opened)
        await client.disconnect()
        await server.stream_closed(stream)
    assert disconnected == ["disconnect"]
    assert "c1" not in server.streams_by_client_id


async def test_a_reader_dropped_unread_releases_its_substream(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    opened = asyncio.Event()

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        stream.open_byte_stream(request.stream_id)  # and forgotten
        opened.set()
        return UUploadResponse(message="ignored")

    server.register_message_handler("uUpload", upload)
    server.register_message_handler("uEcho", _echo)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(30):
        _, error = await _write_until_refused(client, opened)
        reply = await client.invoke("uEcho", UEchoRequest(message="still here"))
    assert "receiver dropped" in error
    assert reply.message == "still here"


async def test_leaving_a_reader_block_unfinished_destroys_the_substream(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    opened = asyncio.Event()

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        async with stream.open_byte_stream(request.stream_id) as reader:
            opened.set()
            first = await reader.__anext__()
        return UUploadResponse(message="enough", bytes_received=len(first))

    server.register_message_handler("uUpload", upload)
    server.register_message_handler("uEcho", _echo)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(30):
        call, error = await _write_until_refused(client, opened)
        response = await call
    assert "reader closed" in error
    assert response.bytes_received == len(CHUNK)


async def test_closing_the_server_ends_a_stream_whose_reader_stopped_reading(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server, close_timeout=0.5)
    readers: list[ByteStreamReader] = []
    disconnected: list[str] = []

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        readers.append(stream.open_byte_stream(request.stream_id))
        await asyncio.Event().wait()  # holds the reader, never reads
        raise AssertionError("unreachable")

    server.register_message_handler("uUpload", upload)
    server.register_disconnect_handler(lambda stream, cause: disconnected.append(cause))
    client = await connected_client(make_client, server)
    writer = client.create_byte_stream()
    call = asyncio.create_task(
        client.invoke("uUpload", UUploadRequest(stream_id=writer.stream_id), timeout=20)
    )

    async def flood() -> None:
        for _ in range(LIMIT // len(CHUNK)):
            await writer.write(CHUNK)

    writing = asyncio.create_task(flood())
    async with asyncio.timeout(30):
        # The reader is full: the receive loop waits for room that never comes.
        await eventually(lambda: bool(readers) and not readers[0]._room.is_set(), 20)
        await server.close()
    assert disconnected == ["disconnect"]
    await asyncio.gather(call, writing, return_exceptions=True)
