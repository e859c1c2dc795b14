"""Hostile peers, issue 20 item 11: a client id cannot forge log lines.

Probes a client whose id holds a newline: every log line naming it (a failed
handler, a refused second connection) shows the id escaped, on one line.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from meshsrpc import SrpcError, SrpcStream

from tests.generated.sgnl24.TestRpc import UEchoRequest, UEchoResponse
from tests.hostile._support import connected_client, signed_server
from tests.srpc._support import ClientFactory, ServerFactory, eventually

EVIL_ID = "mallory\nCRITICAL forged: the admin logged in"


async def test_a_client_id_with_a_newline_is_logged_escaped(
    make_server: ServerFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await signed_server(make_server)

    async def fail(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        raise RuntimeError("handler bug")

    server.register_message_handler("uEcho", fail)
    caplog.set_level(logging.DEBUG, logger="meshsrpc")
    client = await connected_client(make_client, server, EVIL_ID)
    async with asyncio.timeout(10):
        with pytest.raises(SrpcError):
            await client.invoke("uEcho", UEchoRequest(message="x"))
        with pytest.raises(SrpcError):
            await connected_client(make_client, server, EVIL_ID)  # refused: already there
        await eventually(lambda: any("refusing" in r.getMessage() for r in caplog.records))
    naming = [r.getMessage() for r in caplog.records if "mallory" in r.getMessage()]
    assert any("handler for uEcho failed" in line for line in naming)
    assert all("\n" not in line for line in naming)
    assert all("mallory\\nCRITICAL" in line for line in naming)
