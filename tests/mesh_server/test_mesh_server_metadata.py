"""MeshSrpcServer metadata: update_client_metadata from any node, and stream.meta auto-sync."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from meshsrpc import SrpcStream
from meshsrpc.testing import lifecycle_settled

from tests.mesh_server.mesh_server_support import (
    MakeClient,
    MakeNode,
    ProbeBackend,
    Recorder,
    eventually,
    join,
    settle,
)

pytestmark = pytest.mark.timeout(60)

MakeProbe = Callable[[], ProbeBackend]


async def registered_metadata(probe: ProbeBackend, client_id: str) -> object:
    client = await probe.inner.get_client(client_id)
    assert client is not None
    return client.metadata


async def test_update_metadata_of_a_local_client(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(registry_backend=probe)
    await join(node, make_client(node, "c1", client_meta={"userId": "u1"}))

    assert await node.update_client_metadata("c1", {"role": "admin", "level": 3})
    merged = {"userId": "u1", "role": "admin", "level": 3}
    assert node.streams_by_client_id["c1"].meta == merged
    assert await registered_metadata(probe, "c1") == merged
    await lifecycle_settled(node)
    assert probe.count("update_metadata") == 1  # the meta watcher found nothing new to write


async def test_update_metadata_of_a_client_on_another_node(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    owner_probe, caller_probe = make_probe(), make_probe()
    owner = await make_node(registry_backend=owner_probe)
    caller = await make_node(registry_backend=caller_probe)
    await join(owner, make_client(owner, "c1", client_meta={"userId": "u1"}))

    update = {"tags": ["x", "y"], "obj": {"z": 1, "a": "b"}, "path": "/p/q"}
    assert await caller.update_client_metadata("c1", update)
    merged = {"userId": "u1", **update}
    assert owner.streams_by_client_id["c1"].meta == merged
    assert await registered_metadata(owner_probe, "c1") == merged
    await lifecycle_settled(owner)
    assert owner_probe.count("update_metadata") == 1
    assert caller_probe.count("update_metadata") == 0  # only the owner writes


async def test_update_metadata_merges_keeping_the_keys_not_given(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    owner = await make_node()
    caller = await make_node()
    await join(owner, make_client(owner, "c1", client_meta={"userId": "u1", "room": "lobby"}))

    assert await caller.update_client_metadata("c1", {"room": "kitchen"})
    assert owner.streams_by_client_id["c1"].meta == {"userId": "u1", "room": "kitchen"}


async def test_a_none_value_deletes_the_key_from_another_node(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    owner = await make_node(registry_backend=probe)
    caller = await make_node()
    await join(owner, make_client(owner, "c1", client_meta={"userId": "u1", "room": "lobby"}))

    assert await caller.update_client_metadata("c1", {"room": None, "absent": None})
    assert owner.streams_by_client_id["c1"].meta == {"userId": "u1"}
    assert await registered_metadata(probe, "c1") == {"userId": "u1"}


async def test_update_metadata_of_an_absent_client(make_node: MakeNode) -> None:
    node = await make_node()
    assert not await node.update_client_metadata("nobody", {"a": 1})


async def test_update_metadata_of_a_pending_client(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    release = asyncio.Event()

    async def hold(stream: SrpcStream) -> None:
        await release.wait()

    a.register_connection_handler(hold)
    await make_client(a, "c1").connect()
    await settle()
    assert not await a.update_client_metadata("c1", {"a": "1"})
    assert not await b.update_client_metadata("c1", {"a": "1"})
    release.set()


async def test_a_failed_update_restores_the_known_metadata(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(registry_backend=probe)
    disconnected = Recorder()
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1", client_meta={"userId": "u1"})
    await join(node, client)

    probe.refuse.add("update_metadata")
    assert not await node.update_client_metadata("c1", {"role": "admin"})
    probe.refuse.clear()
    probe.fail.add("update_metadata")
    assert not await node.update_client_metadata("c1", {"role": "root"})
    assert await registered_metadata(probe, "c1") == {"userId": "u1"}
    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", {"userId": "u1"})])


async def test_an_update_reaches_the_disconnect_callback(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    disconnected = Recorder()
    a.on_client_disconnected(disconnected)
    client = make_client(a, "c1", client_meta={"userId": "u1"})
    await join(a, client)

    assert await b.update_client_metadata("c1", {"role": "admin"})
    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", {"userId": "u1", "role": "admin"})])


async def test_meta_changes_sync_once_per_loop_turn(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(registry_backend=probe)
    disconnected = Recorder()
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1", client_meta={"userId": "u1", "gone": "x"})
    await join(node, client)
    await lifecycle_settled(node)
    assert probe.count("update_metadata") == 0  # activation wrote it; nothing new since

    meta = node.streams_by_client_id["c1"].meta
    meta["a"] = "1"
    meta["b"] = "2"
    del meta["gone"]
    meta.update(c="3")
    await eventually(lambda: probe.count("update_metadata") == 1)
    expected = {"userId": "u1", "a": "1", "b": "2", "c": "3"}
    assert await registered_metadata(probe, "c1") == expected
    meta["a"] = "1"  # no change: no write
    await lifecycle_settled(node)
    assert probe.count("update_metadata") == 1
    await client.disconnect()
    await eventually(lambda: disconnected.events == [("c1", expected)])


async def test_meta_set_by_connection_handlers_is_written_with_the_activation(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(registry_backend=probe)
    connected = Recorder()
    node.on_client_connected(connected)

    def tag(stream: SrpcStream) -> None:
        stream.meta["room"] = "lobby"

    node.register_connection_handler(tag)
    await join(node, make_client(node, "c1"))
    await eventually(lambda: connected.events == [("c1", {"room": "lobby"})])
    assert await registered_metadata(probe, "c1") == {"room": "lobby"}
    await lifecycle_settled(node)
    assert probe.count("update_metadata") == 0


async def test_meta_watching_is_installed_once_across_backfill(
    make_node: MakeNode, make_client: MakeClient, make_probe: MakeProbe
) -> None:
    probe = make_probe()
    node = await make_node(start=False, registry_backend=probe)
    await join(node, make_client(node, "c1"))
    stream = node.streams_by_client_id["c1"]
    watcher = stream.meta.on_change
    assert watcher is not None

    await node.mesh_start()
    assert stream.meta.on_change is watcher
    stream.meta["k"] = "v"
    await eventually(lambda: probe.count("update_metadata") == 1)
    await lifecycle_settled(node)
    assert probe.count("update_metadata") == 1
    assert await registered_metadata(probe, "c1") == {"k": "v"}
