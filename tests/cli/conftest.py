"""Fixtures of the ``meshsrpc`` command's tests: a 3-node mesh in child processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from meshsrpc import RedisSettings, SrpcClient

from tests.cli.cli_support import ChildNode, Client, cli_argv, run_cli, start_node
from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage


@pytest.fixture
def cli(redis_settings: RedisSettings) -> Callable[..., Any]:
    """``await cli("nodes", "app")`` runs the command against the test's Redis and prefix."""

    def run(*args: str) -> Any:
        return run_cli(cli_argv(redis_settings, *args))

    return run


@pytest.fixture
async def mesh3(redis_settings: RedisSettings) -> AsyncIterator[list[ChildNode]]:
    """Three node processes on the test's Redis; killed at the end."""
    nodes: list[ChildNode] = []
    try:
        for _ in range(3):
            nodes.append(await start_node(redis_settings))
        yield nodes
    finally:
        for node in nodes:
            node.kill()
        for node in nodes:
            await node.process.wait()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., Any]]:
    """``await connect(node, "c1", meta={...}, supersede=False)``: a connected client."""
    clients: list[Client] = []

    async def make(
        node: ChildNode,
        client_id: str,
        *,
        meta: dict[str, str] | None = None,
        supersede: bool = False,
    ) -> Client:
        client: Client = SrpcClient(
            node.url,
            ClientMessage,
            ServerMessage,
            client_id,
            client_meta=meta,
            enable_reconnect=False,
        )
        clients.append(client)
        await client.connect(supersede=supersede)
        return client

    yield make
    for client in clients:
        await client.disconnect()
