"""MeshSrpcServer.invoke: by stream, by client id (local or on another node), and its errors."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from meshsrpc import (
    ClientDisconnectedError,
    ClientInvocationError,
    ClientNotFoundError,
    SrpcError,
)

from tests.generated.sgnl24.TestRpc import (
    DComputeRequest,
    DComputeResponse,
    DNotifyRequest,
    DNotifyResponse,
    UEchoRequest,
)
from tests.mesh_server.mesh_server_support import MakeClient, MakeNode, eventually, join

pytestmark = pytest.mark.timeout(60)


async def test_invoke_with_a_stream(make_node: MakeNode, make_client: MakeClient) -> None:
    node = await make_node()
    await join(node, make_client(node, "c1"))
    stream = node.streams_by_client_id["c1"]
    response = await node.invoke(stream, "dNotify", DNotifyRequest(notification="x"))
    assert response == DNotifyResponse(acknowledged=True)


async def test_invoke_a_local_client_by_id(make_node: MakeNode, make_client: MakeClient) -> None:
    node = await make_node()
    await join(node, make_client(node, "c1"))
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response == DNotifyResponse(acknowledged=True)


async def test_invoke_a_client_on_another_node(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    client = make_client(a, "c1")
    seen: list[DComputeRequest] = []

    def compute(request: DComputeRequest) -> DComputeResponse:
        seen.append(request)
        return DComputeResponse(result=request.number * 2)

    client.register_message_handler("dCompute", compute)
    await join(a, client)

    response = await b.invoke("c1", "dCompute", DComputeRequest(number=21, operation="a/b"))
    assert response == DComputeResponse(result=42)
    assert seen == [DComputeRequest(number=21, operation="a/b")]
    # Defaults travel as absent fields and come back as defaults.
    assert await b.invoke("c1", "dNotify", DNotifyRequest()) == DNotifyResponse()


async def test_a_remote_client_error_arrives_as_client_invocation_error(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    await join(a, make_client(a, "c1"))  # has no dCompute handler
    with pytest.raises(ClientInvocationError):
        await b.invoke("c1", "dCompute", DComputeRequest(number=1))
    with pytest.raises(SrpcError):  # locally the client's own error
        await a.invoke("c1", "dCompute", DComputeRequest(number=1))


async def test_invoke_an_unknown_client(make_node: MakeNode) -> None:
    node = await make_node()
    with pytest.raises(ClientNotFoundError):
        await node.invoke("nobody", "dNotify", DNotifyRequest(notification="x"))


async def test_invoke_a_registered_client_without_a_live_stream(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node()
    await a.client_registry.register("ghost", {})
    for node in (a, b):
        with pytest.raises(ClientDisconnectedError):
            await node.invoke("ghost", "dNotify", DNotifyRequest(notification="x"))


async def test_invoke_checks_the_prefix_and_request_type(make_node: MakeNode) -> None:
    node = await make_node()
    with pytest.raises(ValueError):
        await node.invoke("c1", "noSuchCall", DNotifyRequest())
    with pytest.raises(ValueError):
        await node.invoke("c1", "uEcho", UEchoRequest())  # a call the client makes
    with pytest.raises(TypeError):
        await node.invoke("c1", "dNotify", DComputeRequest())


async def test_an_invoke_in_flight_fails_promptly_when_the_stream_closes(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    client = make_client(a, "c1")
    started = asyncio.Event()
    calls = 0

    async def never(request: DNotifyRequest) -> DNotifyResponse:
        nonlocal calls
        calls += 1
        if calls == 2:
            started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    client.register_message_handler("dNotify", never)
    await join(a, client)
    request = DNotifyRequest(notification="slow")
    local = asyncio.create_task(a.invoke("c1", "dNotify", request, 30.0))
    remote = asyncio.create_task(b.invoke("c1", "dNotify", request, 30.0))
    await started.wait()

    await client.disconnect()
    async with asyncio.timeout(1):
        results: list[Any] = await asyncio.gather(local, remote, return_exceptions=True)
    assert [type(r) for r in results] == [ClientDisconnectedError, ClientDisconnectedError]


async def test_broadcasts_reach_every_node(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node()
    received: list[tuple[str, Any, int]] = []
    for name, node in (("a", a), ("b", b)):
        node.register_broadcast_handler(
            "hello", lambda data, sender, name=name: received.append((name, data, sender))
        )

    await a.broadcast("hello", {"msg": "hi", "n": 1})
    await eventually(lambda: len(received) == 2)
    assert sorted(received) == [
        ("a", {"msg": "hi", "n": 1}, a.mesh_instance_id),
        ("b", {"msg": "hi", "n": 1}, a.mesh_instance_id),
    ]

    async def async_handler(data: Any, sender: int) -> None:
        received.append(("b-async", data, sender))

    b.register_broadcast_handler("bye", async_handler)
    await a.broadcast("bye", [1], skip_self=True)
    await eventually(lambda: ("b-async", [1], a.mesh_instance_id) in received)
