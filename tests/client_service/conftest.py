"""Fixtures of the MeshClientService tests: nodes on the session Redis, stopped after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from meshsrpc import RedisSettings
from service_nodes import Node

NodeFactory = Callable[..., Node]


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[NodeFactory]:
    """``make_node(key="svc", **options)``: a Node on this test's Redis prefix."""
    nodes: list[Node] = []

    def make(key: str = "svc", redis: Any = None, **options: Any) -> Node:
        node = Node(key, redis if redis is not None else redis_settings, **options)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        await node.service.stop()


@pytest.fixture
async def two_nodes(make_node: NodeFactory) -> tuple[Node, Node]:
    """Two started nodes of the mesh ``_mc:svc``; the first is the leader."""
    a, b = make_node(), make_node()
    await a.service.start()
    await b.service.start()
    return a, b
