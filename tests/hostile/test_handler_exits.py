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


@pytest.mark.parametrize("client_id", ["exit-on-connect", "exit-on-disconnect"])
async def test_a_lifecycle_handler_raising_system_exit_leaves_the_server_running(
    client_id: str,
) -> None:
    async with asyncio.timeout(60), ServerProcess() as server:

        def client(name: str) -> SrpcClient[ClientMessage, ServerMessage]:
            return SrpcClient(
                server.url,
                ClientMessage,
                ServerMessage,
                name,
                client_secret=SECRET,
                enable_reconnect=False,
            )

        doomed = client(client_id)
        try:
            await doomed.connect()
            await doomed.invoke("uEcho", UEchoRequest(message="x"), timeout=10)
        except SrpcError:
            pass  # the connection handler's failure closes that stream (1011)
        finally:
            await doomed.disconnect()
        survivor = client("after")
        await survivor.connect()
        try:
            reply = await survivor.invoke("uEcho", UEchoRequest(message="after"), timeout=10)
        finally:
            await survivor.disconnect()
        assert reply.message == "after"
        log = await server.stop()
    assert b"handler failed for 'exit-on-" in log
