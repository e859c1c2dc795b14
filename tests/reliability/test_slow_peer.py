"""Issue 8: a client that never reads is dropped, and the mesh tells the truth about it.

tests/srpc covers the SRPC limits one server at a time (send high-water mark, frame
size, in-flight requests, hanging handlers, timeouts on both sides). Here the load
comes through the mesh: another node calls the lazy client by id until its node drops
it at the configured high-water mark. The calls in flight fail with
ClientDisconnectedError, the client is reported disconnected once and leaves the
registry, and a client that reads on the same node is unaffected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from meshsrpc import (
    ClientDisconnectedError,
    ClientNotFoundError,
    MeshSrpcServer,
    RedisSettings,
    SrpcClient,
)
from meshsrpc.testing import FAST_MESH
from websockets.asyncio.client import connect as ws_connect

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)

FAST: dict[str, Any] = {**FAST_MESH, "request_timeout": 5.0}
PING = bytes.fromhex("920300")
Node = MeshSrpcServer[ClientMessage, ServerMessage, Any]


async def listed(node: Node) -> set[str]:
    return {c.client_id for c in await node.client_registry.list_clients()}


async def until(probe: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0) -> None:
    """Poll ``await probe()`` until it equals ``expected``."""
    async with asyncio.timeout(timeout):
        while await probe() != expected:  # noqa: ASYNC110 - state owned by the code under test
            await asyncio.sleep(0.02)


async def test_a_client_that_never_reads_is_dropped_and_reported_once(
    redis_settings: RedisSettings,
) -> None:
    holder: Node = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="slow",
        redis=redis_settings,
        max_send_buffer=512 * 1024,
        allow_unsigned=True,
        **FAST,
    )
    caller: Node = MeshSrpcServer(
        ClientMessage,
        ServerMessage,
        mesh_key="slow",
        redis=redis_settings,
        allow_unsigned=True,
        **FAST,
    )
    left: list[str] = []
    holder.on_client_disconnected(lambda cid, _meta: left.append(cid))
    await holder.listen("127.0.0.1", 0)
    await holder.mesh_start()
    await caller.mesh_start()
    url = f"ws://127.0.0.1:{holder.port}/srpc"
    reader: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        url, ClientMessage, ServerMessage, "reader"
    )
    reader.register_message_handler("dNotify", lambda _r: DNotifyResponse(acknowledged=True))
    try:
        await reader.connect()
        async with ws_connect(
            url + "?id=s&cid=lazy&appv=1&_v=2", compression=None, max_queue=1, close_timeout=0.5
        ) as ws:
            assert await ws.recv() == PING
            await ws.send(PING)
            await until(lambda: listed(caller), {"reader", "lazy"})
            big = DNotifyRequest(notification="x" * 60_000)
            calls: list[asyncio.Task[Any]] = []
            for _ in range(1000):
                if "lazy" not in holder.streams_by_client_id:
                    break
                calls.append(asyncio.create_task(caller.invoke("lazy", "dNotify", big, timeout=30)))
                assert (await caller.invoke("reader", "dNotify", big, timeout=10)).acknowledged
            async with asyncio.timeout(15):
                results = await asyncio.gather(*calls, return_exceptions=True)
        assert len(calls) > 10
        unexpected = [
            r for r in results if not isinstance(r, (ClientDisconnectedError, ClientNotFoundError))
        ]
        assert unexpected == []
        await until(lambda: asyncio.sleep(0, list(left)), ["lazy"])
        assert [c.client_id for c in await caller.client_registry.list_clients()] == ["reader"]
        assert reader.is_connected
        assert (await caller.invoke("reader", "dNotify", big, timeout=10)).acknowledged
        await asyncio.sleep(0.3)
        assert left == ["lazy"]
    finally:
        await reader.disconnect()
        for node in (caller, holder):
            await node.mesh_stop()
            await node.close()
