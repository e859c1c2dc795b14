"""Fixtures for the SRPC tests: servers on loopback and clients for the test schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import SrpcClient, SrpcServer
from meshsrpc.testing import loop_factories

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage
from tests.srpc._support import ClientFactory, ServerFactory, url_of


@pytest.fixture(autouse=True)
def _each_transport(srpc_transport: str) -> str:
    """Every SRPC test runs on each standalone transport (websockets, picows)."""
    return srpc_transport


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every SRPC test runs on each event loop (asyncio, uvloop)."""
    return loop_factories()


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[SrpcServer[ClientMessage, ServerMessage]] = []

    async def make(**kwargs: Any) -> SrpcServer[ClientMessage, ServerMessage]:
        listen = kwargs.pop("listen", True)
        kwargs.setdefault("allow_unsigned", True)  # tests that sign pass a secret
        server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
            ClientMessage, ServerMessage, **kwargs
        )
        if listen:
            await server.listen("127.0.0.1", 0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[SrpcClient[ClientMessage, ServerMessage]] = []

    def make(
        target: SrpcServer[Any, Any] | str, client_id: str = "c1", **kwargs: Any
    ) -> SrpcClient[ClientMessage, ServerMessage]:
        url = target if isinstance(target, str) else url_of(target)
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            url, ClientMessage, ServerMessage, client_id, **kwargs
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.disconnect()
