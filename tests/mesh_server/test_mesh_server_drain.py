"""drain(): a node hands its clients to the other nodes with no false leave (a rolling deploy)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from meshsrpc import SrpcClient, SrpcError, SrpcStream
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests.generated.sgnl24.TestRpc import (
    ClientMessage,
    DNotifyRequest,
    ServerMessage,
    UEchoRequest,
    UEchoResponse,
)
from tests.mesh_server.conftest import acknowledge
from tests.mesh_server.mesh_server_support import (
    Client,
    MakeNode,
    Node,
    Recorder,
    eventually,
    settle,
    url_of,
)

pytestmark = pytest.mark.timeout(90)


def echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
    return UEchoResponse(message=request.message)


async def three_nodes(make_node: MakeNode) -> tuple[list[Node], Recorder, list[Any]]:
    nodes = [await make_node() for _ in range(3)]
    left, orphans = Recorder(), []
    for node in nodes:
        node.register_message_handler("uEcho", echo)
        node.on_client_disconnected(left)
        node.on_node_clients_orphaned(lambda node_id, clients: orphans.append(node_id))
    return nodes, left, orphans


def client_of(nodes: list[Node], index: int, client_id: str, **options: Any) -> Client:
    """A client of node ``index`` that knows the other nodes' URLs (as behind a balancer)."""
    others = [url_of(node) for i, node in enumerate(nodes) if i != index]
    client: Client = SrpcClient(
        url_of(nodes[index]),
        ClientMessage,
        ServerMessage,
        client_id,
        fallback_urls=others,
        **options,
    )
    client.register_message_handler("dNotify", acknowledge)
    return client


async def owner(node: Node, client_id: str) -> int | None:
    found = await node.client_registry.get_client(client_id)
    return None if found is None else found.node_id


async def test_a_drained_nodes_clients_all_reconnect_elsewhere_with_no_leave(
    make_node: MakeNode,
) -> None:
    nodes, left, orphans = await three_nodes(make_node)
    clients = [client_of(nodes, i % 3, f"c{i}") for i in range(200)]
    try:
        await asyncio.gather(*(client.connect() for client in clients))

        async def all_registered() -> bool:
            return all(await asyncio.gather(*(owner(nodes[1], c.client_id) for c in clients)))

        await eventually(all_registered, timeout=30)
        drained, survivors = nodes[0], {nodes[1].mesh_instance_id, nodes[2].mesh_instance_id}
        moving = [c for i, c in enumerate(clients) if i % 3 == 0]
        await drained.drain(timeout=10)
        assert drained.streams_by_client_id == {}

        async def all_moved() -> bool:
            owners = await asyncio.gather(*(owner(nodes[1], c.client_id) for c in moving))
            return all(node_id in survivors for node_id in owners)

        await eventually(all_moved, timeout=30)
        await eventually(lambda: all(c.is_connected for c in clients), timeout=30)
        await drained.mesh_stop()
        await drained.close()
        await settle(0.5)
        assert left.events == [] and orphans == []
        for client in moving[:10]:
            assert (await nodes[1].invoke(client.client_id, "dNotify", DNotifyRequest())) == (
                acknowledge(DNotifyRequest())
            )
    finally:
        await asyncio.gather(*(client.disconnect() for client in clients))


async def test_a_client_that_does_not_come_back_is_reported_after_the_grace(
    make_node: MakeNode,
) -> None:
    nodes, left, _ = await three_nodes(make_node)
    gone = client_of(nodes, 0, "gone", enable_reconnect=False)
    await gone.connect()
    await eventually(lambda: owner(nodes[1], "gone"))
    await nodes[0].drain(timeout=0.5)
    await eventually(lambda: left.events, timeout=10)
    await settle(0.3)
    assert [client_id for client_id, _ in left.events] == ["gone"]
    assert await owner(nodes[1], "gone") is None
    await gone.disconnect()


async def test_calls_made_while_a_client_moves_reach_its_new_node(make_node: MakeNode) -> None:
    nodes, _, _ = await three_nodes(make_node)
    runs: list[str] = []

    def counting_echo(stream: SrpcStream, request: UEchoRequest) -> UEchoResponse:
        runs.append(request.message)
        return UEchoResponse(message=request.message)

    for node in nodes:
        node.register_message_handler("uEcho", counting_echo)
    client = client_of(nodes, 0, "busy")
    await client.connect()
    await eventually(lambda: owner(nodes[1], "busy"))
    answers: list[str] = []

    async def keep_calling() -> None:
        for n in range(40):
            reply = await client.invoke("uEcho", UEchoRequest(message=str(n)), timeout=10)
            answers.append(reply.message)
            await asyncio.sleep(0.005)

    calling = asyncio.create_task(keep_calling())
    await asyncio.sleep(0.05)
    await nodes[0].drain(timeout=5)
    await asyncio.wait_for(calling, 30)
    assert answers == [str(n) for n in range(40)]
    # A call cut by the drain was not run there, and so sent again: each ran once.
    assert runs == answers
    await client.disconnect()


async def test_a_draining_node_refuses_new_connections_with_503(make_node: MakeNode) -> None:
    nodes, _, _ = await three_nodes(make_node)
    await nodes[0].drain(timeout=0.1)
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url_of(nodes[0]) + "?id=i&cid=x&appv=1", compression=None):
            pass
    assert refused.value.response.status_code == 503
    assert nodes[0].is_draining


async def test_a_client_with_one_url_reconnects_to_it_after_a_restart_close(
    make_node: MakeNode,
) -> None:
    node = await make_node()
    causes: list[str] = []
    client: Client = SrpcClient(url_of(node), ClientMessage, ServerMessage, "solo")
    client.register_disconnect_handler(causes.append)
    await client.connect()
    await eventually(lambda: "solo" in node.streams_by_client_id)
    stream = node.streams_by_client_id["solo"]
    await node.close_stream(stream, 1012, "restart", "Server restarting: reconnect")
    await eventually(lambda: causes == ["restart"])
    await eventually(lambda: client.is_connected and "solo" in node.streams_by_client_id)
    with pytest.raises(SrpcError):  # nothing answers uEcho on this node
        await client.invoke("uEcho", UEchoRequest(message="x"), timeout=2)
    await client.disconnect()
