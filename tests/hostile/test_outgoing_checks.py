"""Hostile peers, issue 20 item 10: what we cannot send fails the call here, not the peer.

Probes requests and responses carrying an integer ≥ 2**64 (which betterproto2 writes
as a varint no decoder reads back) or over the peer's max frame size: the call fails
at the sender with a clear error and the connection stays open.
"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import SrpcError, SrpcStream

from tests.generated.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    UComplexRequest,
    UComplexResponse,
    UEchoRequest,
    UEchoResponse,
)
from tests.hostile._support import connected_client, signed_server
from tests.srpc._support import ClientFactory, ServerFactory

TOO_BIG_INT = 2**64
TOO_LONG_TEXT = "x" * (2 * 1024 * 1024)


async def test_a_request_with_an_integer_over_64_bits_fails_at_the_sender(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    client = await connected_client(make_client, server)
    client.register_message_handler("dCompute", lambda r: DComputeResponse(result=r.number))
    stream = server.streams_by_client_id["c1"]
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match=r"cannot be encoded.*64-bit"):
            await server.invoke(stream, "dCompute", DComputeRequest(number=TOO_BIG_INT))
        reply = await server.invoke(stream, "dCompute", DComputeRequest(number=7))
    assert reply.result == 7
    assert client.is_connected


async def test_a_response_with_an_integer_over_64_bits_fails_that_call(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server, expose_errors=True)  # the cause, not an id

    async def complex_(stream: SrpcStream, request: UComplexRequest) -> UComplexResponse:
        return UComplexResponse(result="r", count=TOO_BIG_INT if request.int_field else 1)

    server.register_message_handler("uComplex", complex_)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match="64-bit"):
            await client.invoke("uComplex", UComplexRequest(int_field=1))
        reply = await client.invoke("uComplex", UComplexRequest(int_field=0))
    assert reply.count == 1
    assert client.is_connected


async def test_a_request_with_a_repeated_field_and_an_oversized_integer_fails_at_the_sender(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    """Messages with repeated or map fields are written by betterproto2 itself."""
    server = await signed_server(make_server)
    client = await connected_client(make_client, server)
    request = UComplexRequest(int_field=TOO_BIG_INT, array_field=["a"], map_field={"k": "v"})
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match="cannot be encoded"):
            await client.invoke("uComplex", request)
    assert client.is_connected


async def test_a_request_over_the_peers_max_frame_size_fails_at_the_sender(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server)
    client = await connected_client(make_client, server)
    client.register_message_handler("dNotify", lambda r: DNotifyResponse(acknowledged=True))
    stream = server.streams_by_client_id["c1"]
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match="exceeds the peer's max frame size"):
            await server.invoke(stream, "dNotify", DNotifyRequest(notification=TOO_LONG_TEXT))
        reply = await server.invoke(stream, "dNotify", DNotifyRequest(notification="short"))
    assert reply.acknowledged
    assert client.is_connected


async def test_a_response_over_the_peers_max_frame_size_fails_that_call(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await signed_server(make_server, expose_errors=True)  # the cause, not an id

    async def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        return UEchoResponse(message=TOO_LONG_TEXT if request.message == "big" else "ok")

    server.register_message_handler("uEcho", echo)
    client = await connected_client(make_client, server)
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError, match="exceeds the peer's max frame size"):
            await client.invoke("uEcho", UEchoRequest(message="big"))
        reply = await client.invoke("uEcho", UEchoRequest(message="small"))
    assert reply.message == "ok"
    assert client.is_connected
