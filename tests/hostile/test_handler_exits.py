"""Hostile peers, issue 20 item 4: SystemExit or KeyboardInterrupt in a handler.

Probes a server in its own process whose handler raises them (argparse on client
input does): only that call may fail, with an error reply and a log line.
"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import SrpcClient, SrpcError

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest
from tests.hostile._support import SECRET, ServerProcess


@pytest.mark.parametrize(
    ("message", "raised"), [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt")]
)
async def test_a_handler_raising_a_base_exception_fails_only_its_call(
    message: str, raised: str
) -> None:
    async with asyncio.timeout(60), ServerProcess() as server:
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            server.url,
            ClientMessage,
            ServerMessage,
            "c1",
            client_secret=SECRET,
            enable_reconnect=False,
        )
        await client.connect()
        try:
            with pytest.raises(SrpcError, match=raised):
                await client.invoke("uEcho", UEchoRequest(message=message), timeout=10)
            reply = await client.invoke("uEcho", UEchoRequest(message="after"), timeout=10)
        finally:
            await client.disconnect()
        assert reply.message == "after"
        assert server.running
        log = await server.stop()
    assert f"handler for uEcho raised {raised}".encode() in log
