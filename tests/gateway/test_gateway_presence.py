"""ListClients and WatchPresence through the gateway, on a real 2-node mesh."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from meshsrpc import MeshSrpcServer, RedisSettings
from meshsrpc.gateway import PRESENCE_BROADCAST, PresenceFeed
from meshsrpc.testing import spawn_child
from redis.asyncio import Redis
from srpc_test_gateway.sgnl24.TestRpc import ClientMeta
from srpc_test_gateway.sgnl24.TestRpc.gateway import (
    ListClientsRequest,
    PresenceEvent,
    PresenceKind,
    WatchPresenceRequest,
)
from srpc_test_gateway.srpc_test_gateway import SrpcTestGatewayStub

from tests.gateway.conftest import Client, Mesh, Node, eventually

# A plain MeshSrpcServer node in its own process, on mesh "app", that a test SIGKILLs.
CHILD = "tests.mesh_server.mesh_server_child"
ROOT = Path(__file__).resolve().parents[2]


async def test_list_clients_filters_1000_clients_by_node_and_metadata(mesh: Mesh) -> None:
    # 1,000 registry entries written as node b through its own (Redis) registry, plus
    # one real client on each node.
    registry = mesh.b.client_registry
    for start in range(0, 1000, 100):
        await asyncio.gather(
            *(
                registry.register(
                    f"user-{i}",
                    {"displayName": f"user {i}", "device": "phone" if i % 10 == 0 else "desk"},
                )
                for i in range(start, start + 100)
            )
        )
    await mesh.connect(mesh.a, "alice", client_meta={"displayName": "Alice", "device": "phone"})
    await mesh.connect(mesh.b, "bob", client_meta={"displayName": "Bob", "device": "phone"})

    everyone = [c async for c in mesh.stub.list_clients(ListClientsRequest())]
    assert len(everyone) == 1002

    phones_on_b = [
        c
        async for c in mesh.stub.list_clients(
            ListClientsRequest(node_id=mesh.b.mesh_instance_id, metadata={"device": "phone"})
        )
    ]
    assert sorted(c.client_id for c in phones_on_b) == sorted(
        ["bob", *(f"user-{i}" for i in range(0, 1000, 10))]
    )
    assert {c.node_id for c in phones_on_b} == {mesh.b.mesh_instance_id}
    bob = next(c for c in phones_on_b if c.client_id == "bob")
    assert bob.metadata == ClientMeta(display_name="Bob", device="phone")
    assert bob.connected_at is not None


async def test_list_clients_of_an_unknown_node_is_empty(mesh: Mesh) -> None:
    await mesh.connect(mesh.b, "bob")
    assert [c async for c in mesh.stub.list_clients(ListClientsRequest(node_id=999_999))] == []


async def test_watch_presence_sees_connect_move_and_disconnect_in_order(mesh: Mesh) -> None:
    events: list[PresenceEvent] = []
    watching = asyncio.Event()

    async def watch() -> None:
        async for event in mesh.stub.watch_presence(WatchPresenceRequest(client_id="mover")):
            if event.kind == PresenceKind.WATCHING:
                watching.set()
                continue
            events.append(event)
            if len(events) == 3:
                return

    watcher = asyncio.create_task(watch())
    await watching.wait()
    await mesh.connect(mesh.a, "mover", client_meta={"displayName": "M"})
    await eventually(lambda: len(events) >= 1)
    moved = await mesh.connect(mesh.b, "mover", supersede=True, client_meta={"displayName": "M2"})
    await eventually(lambda: len(events) >= 2)
    await moved.disconnect()
    async with asyncio.timeout(10):
        await watcher

    a, b = mesh.a.mesh_instance_id, mesh.b.mesh_instance_id
    assert [(e.kind, e.client_id, e.node_id, e.previous_node_id) for e in events] == [
        (PresenceKind.CONNECTED, "mover", a, 0),
        (PresenceKind.MOVED, "mover", b, a),
        (PresenceKind.DISCONNECTED, "mover", b, 0),
    ]
    assert [e.metadata for e in events] == [
        ClientMeta(display_name="M"),
        ClientMeta(display_name="M2"),
        ClientMeta(display_name="M2"),
    ]


async def test_watch_presence_of_one_client_skips_the_others(mesh: Mesh) -> None:
    events: list[PresenceEvent] = []
    watching = asyncio.Event()

    async def watch() -> None:
        async for event in mesh.stub.watch_presence(WatchPresenceRequest(client_id="wanted")):
            if event.kind == PresenceKind.WATCHING:
                watching.set()
                continue
            events.append(event)
            return

    watcher = asyncio.create_task(watch())
    await watching.wait()
    await mesh.connect(mesh.b, "other")
    await mesh.connect(mesh.b, "wanted")
    async with asyncio.timeout(10):
        await watcher
    assert [(e.kind, e.client_id) for e in events] == [(PresenceKind.CONNECTED, "wanted")]


async def test_a_watch_the_caller_leaves_is_closed_on_the_gateway(mesh: Mesh) -> None:
    feed = PresenceFeed.of(mesh.a)
    watch = mesh.stub.watch_presence(WatchPresenceRequest())
    first = await anext(watch)
    assert first.kind == PresenceKind.WATCHING
    assert feed.watch_count == 1
    await watch.aclose()
    await eventually(lambda: feed.watch_count == 0)


async def test_malformed_presence_broadcast_is_dropped(mesh: Mesh) -> None:
    events: list[PresenceEvent] = []

    async def watch() -> None:
        async for event in mesh.stub.watch_presence(WatchPresenceRequest()):
            if event.kind == PresenceKind.WATCHING:
                # Another node's bad payload first: dropped, and the watch goes on.
                await MeshSrpcServer.broadcast(mesh.b, PRESENCE_BROADCAST, {"kind": "bogus"})
                await mesh.connect(mesh.b, "late")
                continue
            events.append(event)
            return

    async with asyncio.timeout(10):
        await watch()
    assert [(e.kind, e.client_id) for e in events] == [(PresenceKind.CONNECTED, "late")]


async def test_watch_presence_sees_the_clients_of_a_killed_node_leave(
    make_node: Callable[..., Any], redis_settings: RedisSettings
) -> None:
    # The leader (the gateway's node) reports a dead node's clients once it cleans it up.
    leader = await make_node(heartbeat_interval=0.1, node_ttl=0.6)
    assert redis_settings.url is not None and redis_settings.prefix is not None
    raw = Redis.from_url(redis_settings.url)
    try:
        await eventually(lambda: raw.exists(f"{redis_settings.prefix}:leader:mesh:_mc:app"))
    finally:
        await raw.aclose()
    gateway = await leader.serve_gateway()
    channel = Channel("127.0.0.1", gateway.port)
    stub = SrpcTestGatewayStub(channel, timeout=20)
    child = await spawn_child(
        "-m", CHILD, redis_settings.url, redis_settings.prefix, cwd=ROOT, ready_timeout=20
    )
    try:
        port, child_id = (int(part) for part in child.ready_line.split())
        watch = stub.watch_presence(WatchPresenceRequest(client_id="c9"))
        assert (await anext(watch)).kind == PresenceKind.WATCHING
        client = Client(f"ws://127.0.0.1:{port}/srpc", "c9", enable_reconnect=False)
        await client.connect()
        await eventually(lambda: _on(leader, "c9", child_id))
        await child.aclose()  # SIGKILL: the child says nothing
        async with asyncio.timeout(15):
            left = await anext(watch)
        assert (left.kind, left.client_id, left.node_id) == (
            PresenceKind.DISCONNECTED,
            "c9",
            child_id,
        )
        await watch.aclose()
        await client.disconnect()
    finally:
        await child.aclose()
        channel.close()
        await gateway.close()


async def _on(node: Node, client_id: str, node_id: int) -> bool:
    entry = await node.client_registry.get_client(client_id)
    return entry is not None and entry.node_id == node_id
