"""Hostile peers, issue 20 item 5: a handshake flood that exhausts the descriptors.

Probes a server in its own process with a 64-descriptor limit, flooded with TCP
connections that never send their upgrade request: it reports running out of
descriptors once per interval (not per accept attempt), and accepts again once the
flood is gone.
"""

from __future__ import annotations

import asyncio
import contextlib

from meshsrpc import SrpcClient

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest
from tests.hostile._support import SECRET, ServerProcess

FLOOD = 120


async def test_running_out_of_descriptors_is_reported_once_per_interval() -> None:
    async with asyncio.timeout(60), ServerProcess("--nofile", "64") as server:
        flood: list[asyncio.StreamWriter] = []
        try:
            for _ in range(FLOOD):
                _, writer = await asyncio.open_connection("127.0.0.1", server.port)
                flood.append(writer)
            # The server's retries (one a second) meet the same wall a few times.
            await asyncio.sleep(3)
        finally:
            for writer in flood:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            server.url,
            ClientMessage,
            ServerMessage,
            "after",
            client_secret=SECRET,
            enable_reconnect=False,
            connect_timeout=20,
        )
        await client.connect()
        try:
            reply = await client.invoke("uEcho", UEchoRequest(message="back"), timeout=10)
        finally:
            await client.disconnect()
        log = (await server.stop()).decode(errors="replace")
    assert reply.message == "back"
    assert log.count("out of system resource") == 1
