"""What a new user of MeshSrpcServer sees first: errors that name the fix, the start log
line, and the node's place in the mesh (issue 15, items 7 and 13)."""

from __future__ import annotations

import pytest
from meshsrpc import ClientNotFoundError

from tests.generated.sgnl24.TestRpc import DNotifyRequest
from tests.mesh_server.mesh_server_support import MakeClient, MakeNode

SECRET = "first-contact"


async def test_invoke_before_mesh_start_says_the_mesh_is_not_running(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node(start=False, auth_secret=SECRET)
    await make_client(node, "c1", client_secret=SECRET).connect()
    with pytest.raises(ClientNotFoundError) as not_found:
        await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    text = str(not_found.value)
    assert "mesh is not running" in text and "mesh_start()" in text
    assert "connected to this server" in text
    assert "not connected to any node" not in text
    assert not_found.value.client_id == "c1"


async def test_invoke_after_mesh_stop_says_the_mesh_is_not_running(make_node: MakeNode) -> None:
    node = await make_node(auth_secret=SECRET)
    await node.mesh_stop()
    with pytest.raises(ClientNotFoundError, match="mesh is not running"):
        await node.invoke("nobody", "dNotify", DNotifyRequest(notification="x"))


async def test_an_unknown_client_of_a_running_mesh_is_not_connected_to_any_node(
    make_node: MakeNode,
) -> None:
    node = await make_node(auth_secret=SECRET)
    with pytest.raises(ClientNotFoundError, match="not connected to any node"):
        await node.invoke("nobody", "dNotify", DNotifyRequest(notification="x"))
