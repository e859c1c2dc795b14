"""Hostile peers, issue 20 item 5: a handshake flood that exhausts the descriptors.

Probes a server in its own process with a 64-descriptor limit, flooded with TCP
connections that never send their upgrade request: it accepts again once the flood is
gone, and (on asyncio) reports running out of descriptors once per interval, not per
accept attempt. uvloop reports nothing: libuv, out of descriptors, accepts and closes
the waiting connections with a descriptor it keeps in reserve.
"""

from __future__ import annotations

import asyncio
import contextlib

from meshsrpc import SrpcClient
from meshsrpc.testing import eventually

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, UEchoRequest
from tests.hostile._support import SECRET, ServerProcess

FLOOD = 120


async def _flood_then_echo(server: ServerProcess) -> str:
    """Flood ``server`` past its descriptors, let go, then echo with a fresh client."""
    idle = server.open_descriptors()
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
    # Gone once the server has closed its ends too: a connection arriving before that
    # waits in the backlog on asyncio, but uvloop (libuv) accepts and closes it at once.
    await eventually(lambda: server.open_descriptors() <= idle, timeout=20)
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
    return reply.message


async def test_the_listener_accepts_again_once_a_descriptor_flood_is_gone() -> None:
    async with asyncio.timeout(60), ServerProcess("--nofile", "64") as server:
        assert await _flood_then_echo(server) == "back"


async def test_running_out_of_descriptors_is_reported_once_per_interval() -> None:
    async with asyncio.timeout(60), ServerProcess("--nofile", "64") as server:
        reply = await _flood_then_echo(server)
        log = (await server.stop()).decode(errors="replace")
    assert reply == "back"
    assert log.count("out of system resource") == 1
