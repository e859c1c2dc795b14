"""A client that connects to another node: the old node is told to kick its stream."""

from __future__ import annotations

from typing import Any

import pytest
from meshsrpc import ClientConflictError
from service_nodes import Node, eventually


async def test_on_client_superseded_fires_on_the_old_node(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("c1")
    await b.connect("c1")
    await eventually(lambda: a.kicked == ["c1"])
    assert b.kicked == []
    assert "c1" not in a.streams
    client = await a.service.client_registry.get_client("c1")
    assert client is not None and client.node_id == b.id
    # The old node's late unregister (its stream closing) changes nothing.
    assert await a.service.unregister_client("c1") is False


async def test_same_node_reregister_does_not_supersede(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("c1", {"v": 1})
    await a.connect("c1", {"v": 2})
    await b.connect("other")
    await b.service.invoke("c1", "dNotify", None)  # a round trip to a: any kick has arrived
    assert a.kicked == []


async def test_register_returns_false_on_conflict(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("c1", {"v": 1})
    assert await b.service.register_client("c1", {"v": 2}, allow_supersede=False) is False
    client = await b.service.client_registry.get_client("c1")
    assert client is not None and (client.node_id, client.metadata) == (a.id, {"v": 1})
    assert a.kicked == []


async def test_reserve_with_supersede_kicks_the_old_node(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("c1")
    assert await b.service.reserve_client("c1", None) == a.id
    await eventually(lambda: a.kicked == ["c1"])
    assert await b.service.activate_client("c1", None) is True


async def test_reserve_without_supersede_raises_conflict(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.connect("c1")
    with pytest.raises(ClientConflictError) as caught:
        await b.service.reserve_client("c1", None, allow_supersede=False)
    assert caught.value.owner_node_id == a.id


async def test_kicked_is_false_without_a_stream(two_nodes: tuple[Node, Node]) -> None:
    a, b = two_nodes
    await a.service.register_client("c1", None)  # registered, but no stream held
    reply: Any = await b.service.mesh.invoke(a.id, "kickClient", {"clientId": "c1"})
    assert reply == {"kicked": False}
