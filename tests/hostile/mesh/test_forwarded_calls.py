"""Hostile peers, issue 20 item 10, across nodes: a forwarded call we cannot send.

Probes a call forwarded from another node with an integer ≥ 2**64: it fails for
its caller, and the client it was meant for stays connected.
"""

from __future__ import annotations

import asyncio

import pytest
from meshsrpc import ClientInvocationError

from tests.generated.sgnl24.TestRpc import DComputeRequest, DComputeResponse
from tests.mesh_server.mesh_server_support import MakeClient, MakeNode, join


async def test_a_forwarded_call_with_an_integer_over_64_bits_fails_and_the_client_stays(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    client = make_client(a, "c1")
    client.register_message_handler("dCompute", lambda r: DComputeResponse(result=r.number))
    await join(a, client)
    async with asyncio.timeout(20):
        with pytest.raises(ClientInvocationError, match="cannot be encoded"):
            await b.invoke("c1", "dCompute", DComputeRequest(number=2**64))
        reply = await b.invoke("c1", "dCompute", DComputeRequest(number=5))
    assert reply.result == 5
    assert client.is_connected
