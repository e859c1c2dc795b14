"""invoke remembers a client's node for a moment; a stale route never loses a call."""

from __future__ import annotations

from typing import Any

import pytest
from meshsrpc import ClientDisconnectedError, ClientNotFoundError
from service_nodes import Node, eventually


@pytest.fixture
async def three_nodes(make_node: Any) -> tuple[Node, Node, Node]:
    """Three started nodes of the mesh ``_mc:svc``."""
    nodes = make_node(), make_node(), make_node()
    for node in nodes:
        await node.service.start()
    return nodes


async def test_a_client_that_moved_is_reached_on_its_new_node(
    three_nodes: tuple[Node, Node, Node],
) -> None:
    a, b, c = three_nodes
    await b.connect("c1")
    await a.service.invoke("c1", "dNotify", 1)  # a now knows the way to b
    await c.connect("c1")  # takes the client over; b is told to drop it
    await eventually(lambda: "c1" not in b.streams)
    answer = await a.service.invoke("c1", "dNotify", 2)
    assert answer["data"] == 2
    assert [call[2] for call in c.calls] == [2]
    # b was asked first (the remembered route), said it has no such client, and the
    # fresh lookup sent the call to c.
    assert [call[2] for call in b.calls] in ([1], [1, 2])


async def test_a_client_that_moved_here_is_called_locally(
    three_nodes: tuple[Node, Node, Node],
) -> None:
    a, b, _ = three_nodes
    await b.connect("c1")
    await a.service.invoke("c1", "dNotify", 1)
    await a.connect("c1")
    await a.service.invoke("c1", "dNotify", 2)
    assert [call[2] for call in a.calls] == [2]
    assert [call[2] for call in b.calls] == [1]


async def test_a_client_whose_node_lost_its_stream_is_disconnected(
    three_nodes: tuple[Node, Node, Node],
) -> None:
    a, b, _ = three_nodes
    await b.connect("c1")
    await a.service.invoke("c1", "dNotify", 1)
    del b.streams["c1"]  # the registry still names b, but b has no stream
    with pytest.raises(ClientDisconnectedError):
        await a.service.invoke("c1", "dNotify", 2)
    # Once, not again and again: the registry agreed with the route.
    assert [call[2] for call in b.calls] == [1, 2]


async def test_a_client_that_left_is_not_found(three_nodes: tuple[Node, Node, Node]) -> None:
    a, b, _ = three_nodes
    await b.connect("c1")
    await a.service.invoke("c1", "dNotify", 1)
    del b.streams["c1"]
    assert await b.service.unregister_client("c1")
    with pytest.raises(ClientNotFoundError):
        await a.service.invoke("c1", "dNotify", 2)
