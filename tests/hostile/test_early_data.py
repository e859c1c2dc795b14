"""Hostile peers, issue 20 item 2: data sent to byte-stream ids nobody opened is capped.

Probes one client writing to many fresh ids (per-connection bytes and ids), two
clients together (the process budget), and that every refused substream is counted
while the connection, and the data kept within the caps, survive.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from meshsrpc import SrpcError
from meshsrpc.srpc.bytestream import ByteStreamWriter, early_data_budget

from tests.generated.sgnl24.TestRpc import UEchoRequest, UEchoResponse
from tests.hostile._support import Client, Server, connected_client, signed_server
from tests.srpc._support import ClientFactory, ServerFactory

MiB = 1024 * 1024


@pytest.fixture
def process_budget() -> Iterator[None]:
    """Restore the process-wide early-data budget after the test."""
    limit = early_data_budget.limit
    yield
    early_data_budget.limit = limit


async def _echoing(make_server: ServerFactory, **kwargs: object) -> Server:
    server = await signed_server(make_server, **kwargs)
    server.register_message_handler(
        "uEcho", lambda stream, request: UEchoResponse(message=request.message)
    )
    return server


async def _write_early(client: Client, size: int) -> ByteStreamWriter:
    """Write ``size`` bytes to a fresh id no reader waits for (errors are for later)."""
    writer = client.create_byte_stream()
    try:
        for start in range(0, size, 64 * 1024):
            await writer.write(b"\1" * min(64 * 1024, size - start))
    except SrpcError:
        pass
    return writer


async def _refused(client: Client, writers: list[ByteStreamWriter]) -> list[bool]:
    """Which writers the server destroyed (a round trip first: destroys arrive before it)."""
    await client.invoke("uEcho", UEchoRequest(message="flush"))
    return [writer._error is not None for writer in writers]


async def test_early_data_past_the_connection_cap_destroys_the_new_substream(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await _echoing(make_server)  # 4 MiB per connection by default
    client = await connected_client(make_client, server)
    async with asyncio.timeout(30):
        writers = [await _write_early(client, 3 * MiB // 2) for _ in range(4)]
        assert await _refused(client, writers) == [False, False, True, True]
        stream = server.streams_by_client_id["c1"]
        kept = await stream.open_byte_stream(writers[0].stream_id).__anext__()
    assert kept == b"\1" * 64 * 1024
    assert client.is_connected


async def test_early_substreams_past_the_connection_cap_are_destroyed(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await _echoing(make_server, max_early_streams=4)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(30):
        writers = [await _write_early(client, 10) for _ in range(6)]
        refused = await _refused(client, writers)
    assert refused == [False] * 4 + [True] * 2
    assert client.is_connected


async def test_early_data_past_the_process_budget_destroys_the_new_substream(
    make_server: ServerFactory, make_client: ClientFactory, process_budget: None
) -> None:
    early_data_budget.limit = early_data_budget.used + 1 * MiB
    server = await _echoing(make_server)
    first = await connected_client(make_client, server, "c1")
    second = await connected_client(make_client, server, "c2")
    async with asyncio.timeout(30):
        kept = await _write_early(first, 3 * MiB // 4)
        assert await _refused(first, [kept]) == [False]
        refused = await _write_early(second, 3 * MiB // 4)
        assert await _refused(second, [refused]) == [True]
    assert first.is_connected and second.is_connected


async def test_every_substream_refused_for_early_data_is_counted(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await _echoing(make_server, max_early_streams=1, max_early_data=MiB)
    client = await connected_client(make_client, server)
    before = dict(early_data_budget.refused)
    async with asyncio.timeout(30):
        big = await _write_early(client, 3 * MiB // 2)  # past the connection's 1 MiB
        await _refused(client, [big])
        extra = [await _write_early(client, 10) for _ in range(2)]  # one waits already
        await _refused(client, extra)
    counted = {
        reason: early_data_budget.refused[reason] - before.get(reason, 0)
        for reason in ("connection", "streams")
    }
    assert counted == {"connection": 1, "streams": 1}
