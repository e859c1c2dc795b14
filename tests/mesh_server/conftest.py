"""Fixtures of the MeshSrpcServer tests: nodes on loopback sharing the test's Redis prefix."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from meshsrpc import (
    MeshClientRedisClusterRegistry,
    MeshClientRedisRegistry,
    MeshSrpcServer,
    RedisSettings,
    SrpcClient,
)
from redis.asyncio import Redis

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)
from tests.mesh_server.mesh_server_support import (
    FAST,
    Client,
    MakeClient,
    MakeNode,
    Node,
    ProbeBackend,
    url_of,
)

MESH_KEY = "app"


@pytest.fixture(autouse=True)
def _each_transport(srpc_transport: str) -> str:
    """Every MeshSrpcServer test runs on each standalone transport (websockets, picows)."""
    return srpc_transport


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[MakeNode]:
    """Create MeshSrpcServers (listening, mesh started unless told otherwise)."""
    nodes: list[Node] = []

    async def make(*, start: bool = True, listen: bool = True, **options: Any) -> Node:
        node: Node = MeshSrpcServer(
            ClientMessage,
            ServerMessage,
            **{
                "mesh_key": MESH_KEY,
                "redis": redis_settings,
                "allow_unsigned": True,
                **FAST,
                **options,
            },
        )
        nodes.append(node)
        if listen:
            await node.listen("127.0.0.1", 0)
        if start:
            await node.mesh_start()
        return node

    yield make
    for node in reversed(nodes):
        try:
            async with asyncio.timeout(20):
                await node.mesh_stop()
                await node.close()
        except TimeoutError:
            for task in asyncio.all_tasks():
                print("TASK", task, file=sys.stderr)
                task.print_stack(file=sys.stderr)
            raise


@pytest.fixture
async def make_probe(redis_settings: RedisSettings) -> AsyncIterator[Callable[[], ProbeBackend]]:
    """Registry backends on the test's Redis that record, fail or hold calls."""
    probes: list[ProbeBackend] = []

    def make() -> ProbeBackend:
        backend: Any = (
            MeshClientRedisClusterRegistry(f"_mc:{MESH_KEY}", redis=redis_settings)
            if redis_settings.is_cluster
            else MeshClientRedisRegistry(f"_mc:{MESH_KEY}", redis=redis_settings)
        )
        probe = ProbeBackend(backend)
        probes.append(probe)
        return probe

    yield make
    for probe in probes:
        await probe.aclose()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test reading raw keys checks the single-instance layout (WIRE.md) itself."""
    for item in items:
        if "raw" in getattr(item, "fixturenames", ()) and "mesh_server" in str(item.path):
            item.add_marker(pytest.mark.single_instance)


@pytest.fixture
async def raw(redis_settings: RedisSettings) -> AsyncIterator[Redis]:
    """A plain Redis client (str replies) on the test's Redis, for checking raw keys."""
    assert redis_settings.url is not None
    client = Redis.from_url(redis_settings.url, decode_responses=True)
    yield client
    await client.aclose()


def acknowledge(request: DNotifyRequest) -> DNotifyResponse:
    """The test clients' dNotify handler."""
    return DNotifyResponse(acknowledged=request.notification != "")


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """SrpcClients (protocol v2, no reconnect, answering dNotify) for a node."""
    clients: list[Client] = []

    def make(node: Node, client_id: str = "c1", **options: Any) -> Client:
        client: Client = SrpcClient(
            url_of(node),
            ClientMessage,
            ServerMessage,
            client_id,
            **{"enable_reconnect": False, **options},
        )
        client.register_message_handler("dNotify", acknowledge)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.disconnect()
