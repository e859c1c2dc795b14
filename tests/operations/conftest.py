"""Fixtures of the metrics and health tests: in-process nodes with their own metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import MeshSrpcServer, RedisSettings, SrpcClient

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    DNotifyResponse,
    ServerMessage,
)
from tests.mesh_server.mesh_server_support import FAST, Client, Node, url_of


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[Any]:
    """``await make_node(**options)``: a listening MeshSrpcServer with the mesh started."""
    nodes: list[Node] = []

    async def make(*, redis: RedisSettings | None = None, **options: Any) -> Node:
        node: Node = MeshSrpcServer(
            ClientMessage,
            ServerMessage,
            **{
                "mesh_key": "app",
                "redis": redis or redis_settings,
                "allow_unsigned": True,
                **FAST,
                **options,
            },
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
async def make_client() -> AsyncIterator[Any]:
    """``make_client(node, "c1")``: an SrpcClient (v2, no reconnect) answering dNotify."""
    clients: list[Client] = []

    def make(node: Node, client_id: str, **options: Any) -> Client:
        client: Client = SrpcClient(
            url_of(node), ClientMessage, ServerMessage, client_id, enable_reconnect=False, **options
        )
        client.register_message_handler(
            "dNotify", lambda request: DNotifyResponse(acknowledged=bool(request.notification))
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.disconnect()


__all__ = ["DNotifyRequest"]
