"""Fixtures of the gateway tests: a real 2-node mesh on the test's Redis, the gateway on node A.

The generated code is meshgen's golden output for srpc_test.proto with --gateway
(tests/golden/srpc_test_gateway, proved current by the golden tests).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

_GOLDEN = str(Path(__file__).resolve().parents[1] / "golden")
if _GOLDEN not in sys.path:
    sys.path.insert(0, _GOLDEN)

from grpclib.client import Channel  # noqa: E402
from meshsrpc import LeaderOptions, RedisSettings, SrpcError  # noqa: E402
from meshsrpc.gateway import GatewayServer, PresenceFeed  # noqa: E402
from srpc_test_gateway.sgnl24.TestRpc import (  # noqa: E402
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
)
from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub  # noqa: E402
from srpc_test_gateway.srpc_test_srpc import (  # noqa: E402
    RoomClosedDict,
    SrpcTestMeshSrpcServer,
    SrpcTestSrpcClient,
)

FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "node_ttl": 3.0,
    "request_timeout": 2.0,
    "leader": LeaderOptions(ttl=1.0, renewal_interval=0.2, retry_delay=0.1),
}


class Node(SrpcTestMeshSrpcServer):
    """A node of the test app: records the broadcasts it receives."""

    def __init__(self, **options: Any) -> None:
        super().__init__("app", **options)
        self.rooms_closed: list[RoomClosedDict] = []

    async def on_broadcast_room_closed(self, data: RoomClosedDict, sender_instance_id: int) -> None:
        self.rooms_closed.append(data)


class Client(SrpcTestSrpcClient):
    """A WebSocket client answering dNotify and dCompute; dRequestData is unhandled.

    dCompute's operation: "double" answers number * 2, "fail" answers a user error,
    "hold" waits for ``release``.
    """

    def __init__(self, url: str, client_id: str, **options: Any) -> None:
        super().__init__(url, client_id, **options)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def handle_d_notify(self, request: DNotifyRequest) -> DNotifyResponse:
        return DNotifyResponse(acknowledged=request.notification != "")

    async def handle_d_compute(self, request: DComputeRequest) -> DComputeResponse:
        if request.operation == "fail":
            raise SrpcError(f"cannot compute {request.number}", is_user_error=True)
        if request.operation == "hold":
            self.entered.set()
            await self.release.wait()
        return DComputeResponse(result=request.number * 2)


@dataclass
class Mesh:
    """Two nodes; the gateway is served by ``a``; ``stub`` calls it."""

    a: Node
    b: Node
    gateway: GatewayServer
    stub: SrpcTestGatewayStub
    clients: list[Client] = field(default_factory=list)

    async def connect(
        self, node: Node, client_id: str, *, supersede: bool = False, **options: Any
    ) -> Client:
        """A client connected (and registered) on ``node``."""
        client = Client(
            f"ws://127.0.0.1:{node.port}/srpc", client_id, enable_reconnect=False, **options
        )
        self.clients.append(client)
        await client.connect(supersede=supersede)
        await eventually(lambda: _registered_on(node, client_id))
        return client


async def _registered_on(node: Node, client_id: str) -> bool:
    entry = await node.client_registry.get_client(client_id)
    return entry is not None and entry.node_id == node.mesh_instance_id


async def eventually(predicate: Callable[[], Any], *, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` (sync or async) is truthy; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[Callable[..., Any]]:
    """Listening nodes of the test app, presence published, mesh started."""
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        node = Node(redis=redis_settings, allow_unsigned=True, **{**FAST, **options})
        nodes.append(node)
        PresenceFeed.of(node)
        await node.listen("127.0.0.1", 0)
        await node.mesh_start()
        return node

    yield make
    for node in reversed(nodes):
        async with asyncio.timeout(20):
            await node.mesh_stop()
            await node.close()


@pytest.fixture
async def mesh(make_node: Callable[..., Any]) -> AsyncIterator[Mesh]:
    """Two nodes, the gateway on node a (loopback, no auth), a grpclib stub calling it."""
    a = await make_node()
    b = await make_node()
    gateway = await a.serve_gateway()
    channel = Channel("127.0.0.1", gateway.port)
    world = Mesh(a, b, gateway, SrpcTestGatewayStub(channel, timeout=10.0))
    yield world
    channel.close()
    for client in world.clients:
        client.release.set()
        await client.disconnect()
    await gateway.close()
