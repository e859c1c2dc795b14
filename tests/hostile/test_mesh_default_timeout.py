"""Issue 20, item 13: ``invoke(..., timeout=None)`` waits the service's
``request_timeout`` wherever the client is (a stream, a local client id, a client on
another node), not SRPC's 30 s default. Across nodes that is the caller's silence
bound: the holder's request heartbeats restart it (WIRE.md §3), and the holder's own
``forward_safety_timeout`` ends a call its client never answers.

Real Redis, real WebSockets on loopback; the client never answers the call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from meshsrpc import (
    ClientInvocationError,
    LeaderOptions,
    MeshClientRedisRegistry,
    MeshClientService,
    MeshRequestTimeoutError,
    MeshSrpcServer,
    RedisSettings,
    SrpcClient,
)

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)

pytestmark = pytest.mark.timeout(60)

SECRET = "hostile-s3cret"
# Far below SRPC's 30 s default, so a call that waited that long fails the bound below.
REQUEST_TIMEOUT = 1.0
BOUND = 15.0
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "node_ttl": 5.0,
    "request_timeout": REQUEST_TIMEOUT,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}

Node = MeshSrpcServer[ClientMessage, ServerMessage, Any]
Client = SrpcClient[ClientMessage, ServerMessage]


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[Callable[[], Awaitable[Node]]]:
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        node: Node = MeshSrpcServer(
            ClientMessage,
            ServerMessage,
            mesh_key="hostile",
            redis=redis_settings,
            auth_secret=SECRET,
            **{**FAST, **options},
        )
        nodes.append(node)
        await node.listen("127.0.0.1", 0)
        await node.mesh_start()
        return node

    yield make
    for node in reversed(nodes):
        async with asyncio.timeout(20):
            await node.mesh_stop()
            await node.close()


@pytest.fixture
async def silent_client() -> AsyncIterator[Callable[[Node], Awaitable[Client]]]:
    """A signed client whose dNotify handler never answers (until the test ends)."""
    clients: list[Client] = []
    released = asyncio.Event()

    async def never_answer(request: DNotifyRequest) -> DNotifyResponse:
        await released.wait()
        return DNotifyResponse(acknowledged=True)

    async def connect(node: Node) -> Client:
        client: Client = SrpcClient(
            f"ws://127.0.0.1:{node.port}/srpc",
            ClientMessage,
            ServerMessage,
            "silent",
            client_secret=SECRET,
            enable_reconnect=False,
        )
        client.register_message_handler("dNotify", never_answer)
        clients.append(client)
        registered = asyncio.Event()
        node.on_client_connected(lambda client_id, metadata: registered.set())
        await client.connect()
        async with asyncio.timeout(10):
            await registered.wait()
        return client

    yield connect
    released.set()
    for client in clients:
        await client.disconnect()


async def test_a_call_to_a_silent_client_on_another_node_ends_at_the_holders_bound(
    make_node: Callable[..., Awaitable[Node]],
    silent_client: Callable[[Node], Awaitable[Client]],
) -> None:
    holder = await make_node(forward_safety_timeout=2 * REQUEST_TIMEOUT)
    caller = await make_node()
    await silent_client(holder)
    async with asyncio.timeout(BOUND):
        with pytest.raises(ClientInvocationError, match="no reply"):
            await caller.invoke("silent", "dNotify", DNotifyRequest(notification="x"))


async def test_a_call_to_a_client_of_a_silent_node_without_a_timeout_ends_at_request_timeout(
    make_node: Callable[..., Awaitable[Node]], redis_settings: RedisSettings
) -> None:
    caller = await make_node()
    # Registered to a node that never answers (it died before the leader noticed).
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry(
        "_mc:hostile", redis=redis_settings
    )
    try:
        await registry.register("ghost", 999, None)
        async with asyncio.timeout(BOUND):
            with pytest.raises(MeshRequestTimeoutError):
                await caller.invoke("ghost", "dNotify", DNotifyRequest(notification="x"))
    finally:
        await registry.aclose()


async def test_a_call_to_a_local_client_without_a_timeout_ends_at_request_timeout(
    make_node: Callable[[], Awaitable[Node]],
    silent_client: Callable[[Node], Awaitable[Client]],
) -> None:
    node = await make_node()
    await silent_client(node)
    async with asyncio.timeout(BOUND):
        with pytest.raises(TimeoutError, match="no reply"):
            await node.invoke("silent", "dNotify", DNotifyRequest(notification="x"))


async def test_a_call_to_a_stream_without_a_timeout_ends_at_request_timeout(
    make_node: Callable[[], Awaitable[Node]],
    silent_client: Callable[[Node], Awaitable[Client]],
) -> None:
    node = await make_node()
    await silent_client(node)
    stream = node.streams_by_client_id["silent"]
    async with asyncio.timeout(BOUND):
        with pytest.raises(TimeoutError, match="no reply"):
            await node.invoke(stream, "dNotify", DNotifyRequest(notification="x"))


async def test_a_forward_without_a_timeout_carries_the_callers_request_timeout(
    redis_settings: RedisSettings,
) -> None:
    delivered: list[float | None] = []

    async def deliver(client_id: str, type: str, data: Any, timeout: float | None) -> Any:
        delivered.append(timeout)
        return {"acknowledged": True}

    # A bound below the caller's timeout: the holder then uses the caller's timeoutMs.
    holder: MeshClientService[Any] = MeshClientService(
        "plain", deliver, **{**FAST, "redis": redis_settings, "forward_safety_timeout": 1.0}
    )
    caller: MeshClientService[Any] = MeshClientService(
        "plain", deliver, **{**FAST, "redis": redis_settings, "request_timeout": 3.0}
    )
    await holder.start()
    await caller.start()
    try:
        await holder.register_client("c1", None)
        assert await caller.invoke("c1", "dNotify", {}) == {"acknowledged": True}
        assert delivered == [3.0]
    finally:
        async with asyncio.timeout(20):
            await caller.stop()
            await holder.stop()
