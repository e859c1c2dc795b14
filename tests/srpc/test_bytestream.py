"""Byte streams: uploads, downloads, backpressure and the early-data limit."""

from __future__ import annotations

import asyncio
import os

import pytest
from meshsrpc import SrpcError, SrpcStream

from tests.generated.sgnl24.TestRpc import (
    DRequestDataRequest,
    DRequestDataResponse,
    UDownloadRequest,
    UDownloadResponse,
    UUploadRequest,
    UUploadResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, eventually


async def test_upload_client_to_server(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    received: dict[str, bytes] = {}

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        data = await stream.open_byte_stream(request.stream_id).read()
        received[request.filename] = data
        return UUploadResponse(message="ok", bytes_received=len(data))

    server.register_message_handler("uUpload", upload)
    client = make_client(server)
    await client.connect()
    payload = os.urandom(300_000)
    writer = client.create_byte_stream()
    assert writer.stream_id % 2 == 1
    call = asyncio.create_task(
        client.invoke("uUpload", UUploadRequest(stream_id=writer.stream_id, filename="f"))
    )
    async with writer:
        await writer.write(payload)
    response = await call
    assert response.bytes_received == len(payload)
    assert received["f"] == payload
    second = client.create_byte_stream()
    assert second.stream_id == writer.stream_id + 2


async def test_download_server_to_client(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    payload = os.urandom(200_000)
    senders: set[asyncio.Task[None]] = set()

    async def download(stream: SrpcStream, request: UDownloadRequest) -> UDownloadResponse:
        writer = stream.create_byte_stream()

        async def send() -> None:
            async with writer:
                await writer.write(payload)

        senders.add(asyncio.create_task(send()))
        return UDownloadResponse(stream_id=writer.stream_id, bytes_total=len(payload))

    server.register_message_handler("uDownload", download)
    client = make_client(server)
    await client.connect()
    response = await client.invoke("uDownload", UDownloadRequest(filename="x"))
    assert response.stream_id % 2 == 0
    chunks = [chunk async for chunk in client.open_byte_stream(response.stream_id)]
    assert b"".join(chunks) == payload and len(chunks) > 1


async def test_server_requests_data_from_client(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    """The server opens a receiver and asks the client to stream into it."""
    server = await make_server()
    client = make_client(server)

    async def request_data(request: DRequestDataRequest) -> DRequestDataResponse:
        writer = client.create_byte_stream()
        # The client can only write to its own ids, so it reports the id it used.
        async with writer:
            await writer.write(b"z" * request.data_size)
        return DRequestDataResponse(success=writer.stream_id == request.stream_id)

    client.register_message_handler("dRequestData", request_data)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    reader = stream.open_byte_stream(1)
    response = await server.invoke(
        stream, "dRequestData", DRequestDataRequest(stream_id=1, data_size=5000)
    )
    assert response.success
    assert await reader.read() == b"z" * 5000


async def test_writer_backpressure_follows_a_slow_reader(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    consumed: list[int] = []
    reader_ready = asyncio.Event()
    go = asyncio.Event()

    async def upload(stream: SrpcStream, request: UUploadRequest) -> UUploadResponse:
        reader = stream.open_byte_stream(request.stream_id)
        reader_ready.set()
        await go.wait()
        total = 0
        async for chunk in reader:
            total += len(chunk)
            consumed.append(total)
            await asyncio.sleep(0.001)
        return UUploadResponse(bytes_received=total)

    server.register_message_handler("uUpload", upload)
    client = make_client(server, max_send_buffer=256 * 1024)
    await client.connect()
    writer = client.create_byte_stream()
    call = asyncio.create_task(
        client.invoke("uUpload", UUploadRequest(stream_id=writer.stream_id), timeout=60)
    )
    await reader_ready.wait()
    total = 24 * 1024 * 1024
    written = 0

    async def write_all() -> None:
        nonlocal written
        async with writer:
            for _ in range(total // (256 * 1024)):
                await writer.write(b"\0" * (256 * 1024))
                written += 256 * 1024

    writing = asyncio.create_task(write_all())
    await asyncio.sleep(1.0)
    # The server is not reading: the writer must be held back well before the end.
    assert written < total
    go.set()
    await asyncio.wait_for(writing, 60)
    assert (await call).bytes_received == total
    assert consumed[-1] == total


async def test_pending_receiver_limits(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    assert stream.session is not None
    manager = stream.session.byte_streams

    # Data for a receiver created a little later is kept.
    early = client.create_byte_stream()
    async with early:
        await early.write(b"early bird")
    await asyncio.sleep(0.1)
    assert await stream.open_byte_stream(early.stream_id).read() == b"early bird"

    # More than 2 MiB before the receiver exists: the substream fails, the writer is told.
    big = client.create_byte_stream()
    with pytest.raises(SrpcError):
        for _ in range(40):
            await big.write(b"\0" * (64 * 1024))
            await asyncio.sleep(0.01)
    with pytest.raises(SrpcError, match="too much data"):
        await stream.open_byte_stream(big.stream_id).read()

    # Nobody opens the receiver in time: it fails after the time limit.
    manager.pending_max_seconds = 0.2
    late = client.create_byte_stream()
    await late.write(b"x")
    await asyncio.sleep(0.5)
    with pytest.raises(SrpcError, match="no receiver"):
        await stream.open_byte_stream(late.stream_id).read()
    assert client.is_connected


async def test_destroy_reaches_the_other_side(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    writer = client.create_byte_stream()
    reader = stream.open_byte_stream(writer.stream_id)
    await writer.write(b"abc")
    await writer.destroy("changed my mind")
    with pytest.raises(SrpcError, match="changed my mind"):
        await reader.read()
    # The reader gives up: the writer fails on its next write.
    writer2 = client.create_byte_stream()
    reader2 = stream.open_byte_stream(writer2.stream_id)
    await reader2.destroy("no thanks")
    await eventually(lambda: writer2._error is not None)
    with pytest.raises(SrpcError, match="no thanks"):
        await writer2.write(b"more")


async def test_disconnect_fails_open_streams(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    stream = server.streams_by_client_id["c1"]
    writer = client.create_byte_stream()
    reader = stream.open_byte_stream(writer.stream_id)
    await writer.write(b"partial")
    await client.disconnect()
    with pytest.raises(SrpcError, match="closed"):
        await reader.read()
