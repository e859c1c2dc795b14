"""Only the caller times out a forwarded call: the holder waits while heartbeats flow (§3)."""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import ClientDisconnectedError, ClientInvocationError

from tests.generated.sgnl24.TestRpc import DNotifyRequest, DNotifyResponse
from tests.mesh_server.mesh_server_support import Client, MakeClient, MakeNode, Node, join

pytestmark = pytest.mark.timeout(60)


def slow_client(make_client: MakeClient, node: Node, client_id: str, delay: float) -> Client:
    client = make_client(node, client_id)
    started = asyncio.Event()

    async def slow(request: DNotifyRequest) -> DNotifyResponse:
        started.set()
        await asyncio.sleep(delay)
        return DNotifyResponse(acknowledged=True)

    client.register_message_handler("dNotify", slow)
    client.started = started  # type: ignore[attr-defined]
    return client


@pytest.mark.parametrize("direction", ["a_to_b", "b_to_a"])
async def test_a_slow_client_answers_a_caller_with_a_shorter_timeout(
    make_node: MakeNode, make_client: MakeClient, direction: str
) -> None:
    a = await make_node()
    b = await make_node()
    caller, holder = (a, b) if direction == "a_to_b" else (b, a)
    await join(holder, slow_client(make_client, holder, "slow1", delay=1.3))
    reply = await caller.invoke("slow1", "dNotify", DNotifyRequest(notification="x"), timeout=1.0)
    assert reply == DNotifyResponse(acknowledged=True)


async def test_the_holder_still_ends_the_call_when_the_client_disconnects(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    client = slow_client(make_client, b, "gone1", delay=30.0)
    await join(b, client)
    calling = asyncio.create_task(a.invoke("gone1", "dNotify", DNotifyRequest(), timeout=20.0))
    await asyncio.wait_for(client.started.wait(), 5)  # type: ignore[attr-defined]
    await client.disconnect()
    with pytest.raises(ClientDisconnectedError):
        await asyncio.wait_for(calling, 10)


async def test_the_holders_safety_bound_ends_a_call_the_client_never_answers(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node(forward_safety_timeout=0.5)
    await join(b, slow_client(make_client, b, "mute1", delay=30.0))
    with pytest.raises(ClientInvocationError, match=r"no reply within 0\.5 s"):
        await a.invoke("mute1", "dNotify", DNotifyRequest(), timeout=0.2)
