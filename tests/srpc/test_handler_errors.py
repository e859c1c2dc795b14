"""What a caller learns of a failed handler: no leak by default, TypeScript form if exposed."""

from __future__ import annotations

import logging
import re

import pytest
from meshsrpc import SrpcError, SrpcStream

from tests.generated.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DRequestDataRequest,
    UErrorRequest,
    UErrorResponse,
)
from tests.srpc._support import ClientFactory, ServerFactory, eventually

SECRET_TEXT = "db password=hunter2"


async def leaky(stream: SrpcStream, request: UErrorRequest) -> UErrorResponse:
    if request.user_error:
        raise SrpcError(request.error_message, is_user_error=True)
    raise ValueError(SECRET_TEXT)


async def test_an_unexpected_exception_reaches_the_client_as_a_generic_text_and_an_id(
    make_server: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_server()
    server.register_message_handler("uError", leaky)
    client = make_client(server)
    await client.connect()
    with caplog.at_level(logging.ERROR), pytest.raises(SrpcError) as caught:
        await client.invoke("uError", UErrorRequest())
    assert SECRET_TEXT not in caught.value.message
    assert not caught.value.is_user_error
    found = re.fullmatch(r"Internal server error \(error id ([0-9a-f]{12})\)", caught.value.message)
    assert found is not None
    logged = [r for r in caplog.records if found.group(1) in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert SECRET_TEXT in str(logged[0].exc_info[1])


async def test_a_user_error_still_passes_its_message(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    server.register_message_handler("uError", leaky)
    client = make_client(server)
    await client.connect()
    with pytest.raises(SrpcError) as caught:
        await client.invoke("uError", UErrorRequest(error_message="Name taken", user_error=True))
    assert caught.value.message == "Name taken" and caught.value.is_user_error


async def test_expose_errors_sends_the_exception_as_typescript_peers_do(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server(expose_errors=True)
    server.register_message_handler("uError", leaky)
    client = make_client(server)
    await client.connect()
    with pytest.raises(SrpcError) as caught:
        await client.invoke("uError", UErrorRequest())
    # String(err) of a JavaScript Error is "Error: <message>".
    assert caught.value.message == f"ValueError: {SECRET_TEXT}"


async def test_a_client_handlers_exception_reaches_the_server_in_the_typescript_form(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)

    def compute(request: DComputeRequest) -> DComputeResponse:
        raise RuntimeError("boom")

    client.register_message_handler("dCompute", compute)
    await client.connect()
    await eventually(lambda: "c1" in server.streams_by_client_id)
    stream = server.streams_by_client_id["c1"]
    with pytest.raises(SrpcError) as caught:
        await server.invoke(stream, "dCompute", DComputeRequest(number=1))
    assert caught.value.message == "RuntimeError: boom"


async def test_a_client_without_a_handler_answers_unhandled_message_type(
    make_server: ServerFactory, make_client: ClientFactory
) -> None:
    server = await make_server()
    client = make_client(server)
    await client.connect()
    await eventually(lambda: "c1" in server.streams_by_client_id)
    stream = server.streams_by_client_id["c1"]
    with pytest.raises(SrpcError) as caught:
        await server.invoke(stream, "dRequestData", DRequestDataRequest(data_size=1))
    assert caught.value.message == "Unhandled message type: dRequestData"
