"""MeshSrpcServer.mesh_start registers the streams that connected before it (backfill)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from meshsrpc import SrpcStream

from tests.generated.sgnl24.TestRpc import DNotifyRequest
from tests.mesh_server.mesh_server_support import (
    MakeClient,
    MakeNode,
    ProbeBackend,
    Recorder,
    eventually,
)

pytestmark = pytest.mark.timeout(60)

MakeProbe = Callable[[], ProbeBackend]


async def test_an_active_stream_is_reported_before_mesh_start_and_registered_by_it(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node(start=False)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1", client_meta={"userId": "u1"})
    await client.connect()
    # Reported at activation, mesh or no mesh (as the TypeScript server does).
    await eventually(lambda: connected.events == [("c1", {"userId": "u1"})])

    await node.mesh_start()
    registered = await node.client_registry.get_client("c1")
    assert registered is not None and registered.metadata == {"userId": "u1"}
    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", {"userId": "u1"})])
    await node.mesh_stop()
    await node.close()  # runs what is still queued: nothing more is reported
    assert connected.events == [("c1", {"userId": "u1"})]
    assert disconnected.events == [("c1", {"userId": "u1"})]


async def test_a_client_that_leaves_before_mesh_start_is_reported_gone_once(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    node = await make_node(start=False)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1")
    await client.connect()
    await eventually(lambda: connected.ids() == ["c1"])
    await client.disconnect()
    await eventually(lambda: disconnected.ids() == ["c1"])

    await node.mesh_start()
    assert await node.client_registry.get_client("c1") is None
    await node.mesh_stop()
    await node.close()
    assert disconnected.ids() == ["c1"] and node._mesh.table.is_empty()


async def test_backfill_reserves_a_pending_stream_until_it_activates(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(start=False, registry_backend=probe)
    release = asyncio.Event()

    async def hold(stream: SrpcStream) -> None:
        await release.wait()

    node.register_connection_handler(hold)
    connected = Recorder()
    node.on_client_connected(connected)
    await make_client(node, "c1").connect()

    await node.mesh_start()
    assert probe.calls == [("reserve", "c1")]
    assert await node.client_registry.get_client("c1") is None  # hidden while pending
    release.set()
    await eventually(lambda: connected.ids() == ["c1"])
    assert probe.calls == [("reserve", "c1"), ("activate", "c1")]
    assert await node.client_registry.get_client("c1") is not None


async def test_a_disconnect_while_the_backfill_registration_is_in_flight(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(start=False, registry_backend=probe)
    connected, disconnected = Recorder(), Recorder()
    node.on_client_connected(connected)
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1")
    await client.connect()
    await eventually(lambda: node.streams_by_client_id["c1"].is_activated)

    probe.hold("register")
    starting = asyncio.create_task(node.mesh_start())
    await probe.entered["register"].wait()
    await client.disconnect()
    await eventually(lambda: not node.streams_by_id)
    probe.release("register")
    await starting

    await eventually(lambda: probe.count("unregister", "c1") == 1)
    assert await node.client_registry.get_client("c1") is None
    await eventually(lambda: disconnected.ids() == ["c1"])
    await node.mesh_stop()
    await node.close()  # runs what is still queued: nothing more is reported
    assert connected.ids() == ["c1"] and disconnected.ids() == ["c1"]


async def test_a_disconnect_during_backfill_leaves_no_registration(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(start=False, registry_backend=probe)
    early = make_client(node, "c1")
    await early.connect()
    leaving = make_client(node, "c2")
    await leaving.connect()
    await eventually(lambda: all(s.is_activated for s in node.streams_by_id.values()))

    probe.hold("register")  # the whole backfill waits on the first registration
    starting = asyncio.create_task(node.mesh_start())
    await probe.entered["register"].wait()
    await leaving.disconnect()
    await eventually(lambda: "c2" not in node.streams_by_client_id)
    probe.release("register")
    await starting

    await eventually(lambda: probe.count("unregister", "c2") == 1)
    assert await node.client_registry.get_client("c2") is None
    assert await node.client_registry.get_client("c1") is not None
    response = await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))
    assert response.acknowledged
