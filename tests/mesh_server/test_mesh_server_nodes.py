"""MeshSrpcServer across nodes: supersession, conflicts, dead nodes and graceful shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from meshsrpc import (
    CloseCause,
    MeshClientRedisRegistry,
    MeshClientRegistry,
    MeshService,
    RedisSettings,
    RegisteredClient,
    SrpcConflictError,
    SrpcStream,
)
from meshsrpc.testing import lifecycle_settled, spawn_child
from redis.asyncio import Redis

from tests.generated.sgnl24.TestRpc import DNotifyRequest, USlowRequest, USlowResponse
from tests.mesh_server.mesh_server_support import (
    DEATH_FAST,
    FAST,
    MakeClient,
    MakeNode,
    ProbeBackend,
    Recorder,
    eventually,
    join,
    settle,
)

pytestmark = pytest.mark.timeout(60)

CHILD = "tests.mesh_server.mesh_server_child"
ROOT = Path(__file__).resolve().parents[2]


def record_causes(client: Any) -> list[CloseCause]:
    causes: list[CloseCause] = []
    client.register_disconnect_handler(causes.append)
    return causes


async def test_cross_node_supersession_closes_the_old_stream(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    a_disconnected, b_connected = Recorder(), Recorder()
    a.on_client_disconnected(a_disconnected)
    b.on_client_connected(b_connected)
    old = make_client(a, "c1", client_meta={"via": "a"})
    old_causes = record_causes(old)
    await join(a, old)

    new = make_client(b, "c1", client_meta={"via": "b"})
    await join(b, new, supersede=True)
    await eventually(lambda: old_causes == ["supersede"])  # closed with 4002
    await eventually(lambda: b_connected.events == [("c1", {"via": "b"})])
    registered = await a.client_registry.get_client("c1")
    assert registered is not None and registered.node_id == b.mesh_instance_id
    assert (await a.invoke("c1", "dNotify", DNotifyRequest(notification="x"))).acknowledged
    await eventually(lambda: "c1" not in a.streams_by_client_id)
    await lifecycle_settled(a)
    assert a_disconnected.events == []


async def test_protocol_v1_takes_over_from_another_node(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    old = make_client(a, "c1", protocol_version=1)
    old_causes = record_causes(old)
    await join(a, old)
    await join(b, make_client(b, "c1", protocol_version=1))
    await eventually(lambda: old_causes == ["supersede"])
    registered = await b.client_registry.get_client("c1")
    assert registered is not None and registered.node_id == b.mesh_instance_id


async def test_a_move_that_fails_before_activation_leaves_the_client_where_it_was(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()

    def refuse(stream: SrpcStream) -> None:
        raise RuntimeError("not here")

    b.register_connection_handler(refuse)
    a_disconnected, b_events = Recorder(), Recorder()
    a.on_client_disconnected(a_disconnected)
    b.on_client_connected(b_events)
    b.on_client_disconnected(b_events)
    old = make_client(a, "c1", client_meta={"via": "a"})
    old_causes = record_causes(old)
    await join(a, old)

    new = make_client(b, "c1", client_meta={"via": "b"}, enable_reconnect=False)
    new_causes = record_causes(new)
    await new.connect(supersede=True)  # connected, then refused by the handler
    await eventually(lambda: new_causes != [])
    await eventually(lambda: not b.streams_by_id)
    await lifecycle_settled(b)
    # The takeover is written at activation: the old connection never noticed.
    assert old.is_connected and old_causes == []
    registered = await b.client_registry.get_client("c1")
    assert registered is not None and registered.node_id == a.mesh_instance_id
    assert (await b.invoke("c1", "dNotify", DNotifyRequest(notification="x"))).acknowledged
    assert a_disconnected.events == [] and b_events.events == []


async def test_protocol_v2_is_refused_while_live_on_another_node(
    make_node: MakeNode, make_client: MakeClient, make_probe: Any
) -> None:
    probe: ProbeBackend = make_probe()
    a = await make_node()
    b = await make_node(registry_backend=probe)
    b_connected, b_disconnected = Recorder(), Recorder()
    b.on_client_connected(b_connected)
    b.on_client_disconnected(b_disconnected)
    first = make_client(a, "c1")
    await join(a, first)

    with pytest.raises(SrpcConflictError):
        await make_client(b, "c1").connect()
    registered = await b.client_registry.get_client("c1")
    assert registered is not None and registered.node_id == a.mesh_instance_id
    assert first.is_connected
    await eventually(lambda: not b.streams_by_id)
    await lifecycle_settled(b)
    assert b_connected.events == [] and b_disconnected.events == []
    # The refused stream does not even try an unregister: it never wrote the entry, and
    # on a node that does hold the client it would remove it.
    assert probe.count("unregister", "c1") == 0


async def test_a_refused_client_leaves_nothing_behind_on_the_node(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    await join(a, make_client(a, "c1"))
    for _ in range(3):
        with pytest.raises(SrpcConflictError):
            await make_client(b, "c1").connect()
    await eventually(lambda: not b.streams_by_id)
    await lifecycle_settled(b)
    # Memory stays bounded however many strangers a node refuses.
    assert b._mesh.table.is_empty()


async def test_the_leader_reports_the_clients_of_a_killed_node(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings, raw: Redis
) -> None:
    leader = await make_node(**DEATH_FAST)
    orphans: list[tuple[int, list[RegisteredClient[Any]]]] = []
    leader.on_node_clients_orphaned(lambda node_id, clients: orphans.append((node_id, clients)))
    broken: list[int] = []

    def broken_handler(node_id: int, clients: list[RegisteredClient[Any]]) -> None:
        broken.append(node_id)
        raise RuntimeError("callback bug")

    leader.on_node_clients_orphaned(broken_handler)
    await eventually(lambda: raw.exists(f"{redis_settings.prefix}:leader:mesh:_mc:app"))

    assert redis_settings.url is not None and redis_settings.prefix is not None
    child = await spawn_child(
        "-m", CHILD, redis_settings.url, redis_settings.prefix, cwd=ROOT, ready_timeout=20
    )
    try:
        port, child_id = (int(part) for part in child.ready_line.split())
        client = make_client(leader, "c9", client_meta={"userId": "u9"})
        client.url = f"ws://127.0.0.1:{port}/srpc"
        await client.connect()

        async def registered_on_child() -> bool:
            found = await leader.client_registry.get_client("c9")
            return found is not None and found.node_id == child_id

        await eventually(registered_on_child)
        await child.aclose()  # SIGKILL: no chance to clean up

        await eventually(lambda: orphans, timeout=10)
        await settle(0.5)
        assert [(node_id, [c.client_id for c in clients]) for node_id, clients in orphans] == [
            (child_id, ["c9"])
        ]
        assert orphans[0][1][0].metadata == {"userId": "u9"}
        assert broken == [child_id]
        assert await leader.client_registry.get_client("c9") is None
    finally:
        await child.aclose()


async def test_graceful_shutdown_under_load(make_node: MakeNode, make_client: MakeClient) -> None:
    survivor = await make_node(**DEATH_FAST)
    orphans: list[int] = []
    survivor.on_node_clients_orphaned(lambda node_id, clients: orphans.append(node_id))
    leaving = await make_node(**DEATH_FAST)
    leaving_id = leaving.mesh_instance_id
    started = 0

    async def slow(stream: SrpcStream, request: USlowRequest) -> USlowResponse:
        nonlocal started
        started += 1
        await asyncio.sleep(request.delay_ms / 1000)
        return USlowResponse(message="done", actual_delay_ms=request.delay_ms)

    leaving.register_message_handler("uSlow", slow)
    clients = [make_client(leaving, f"c{i}") for i in range(8)]
    causes = [record_causes(client) for client in clients]
    for client in clients:
        await join(leaving, client)
    calls = [
        asyncio.create_task(client.invoke("uSlow", USlowRequest(delay_ms=300)))
        for client in clients
    ]
    await eventually(lambda: started == len(clients))

    await leaving.mesh_stop()
    await leaving.close()
    responses = await asyncio.gather(*calls)
    assert all(r == USlowResponse(message="done", actual_delay_ms=300) for r in responses)
    await eventually(lambda: all(c == ["disconnect"] for c in causes))  # close code 1000
    assert await survivor.client_registry.list_clients() == []
    assert await survivor.client_registry.list_clients_for_node(leaving_id) == []
    # Several node TTLs: a node that died would have been reported by now.
    await settle(3 * DEATH_FAST["node_ttl"])
    assert orphans == []


async def test_a_stale_kick_does_not_close_the_clients_current_stream(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings
) -> None:
    node = await make_node()
    client = make_client(node, "c1")
    await join(node, client)
    # Another node's kick that arrives after the client came back here: the registry
    # names this node, so the stream stays.
    other = MeshService("_mc:app", redis=redis_settings, **FAST)
    await other.start()
    try:
        reply = await other.invoke(node.mesh_instance_id, "kickClient", {"clientId": "c1"})
    finally:
        await other.stop()
    assert reply == {"kicked": False}
    await settle()
    assert client.is_connected
    assert (await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))).acknowledged


# Writes entries with the single-instance registry itself.
@pytest.mark.single_instance
async def test_a_client_left_unowned_by_a_takeover_that_never_finished_is_reported(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings
) -> None:
    node = await make_node(**DEATH_FAST)
    disconnected = Recorder()
    node.on_client_disconnected(disconnected)
    client = make_client(node, "c1", client_meta={"s": "one"})
    await join(node, client)
    # Another node took the client over, then died before its kick went out and
    # before the client activated there: the registry holds nobody, our stream stays.
    stranger = MeshClientRegistry(999, MeshClientRedisRegistry("_mc:app", redis=redis_settings))
    assert await stranger.reserve("c1", {"s": "stranger"}) == node.mesh_instance_id
    assert await stranger.cleanup_node() == []  # a reservation is never reported orphaned
    assert await node.client_registry.get_client("c1") is None

    await client.disconnect()
    # Nobody else will ever report it: this node does, once the node TTL has passed.
    await eventually(lambda: disconnected.events == [("c1", {"s": "one"})], timeout=5.0)
    await settle(2 * DEATH_FAST["node_ttl"])
    assert disconnected.events == [("c1", {"s": "one"})]


# Writes entries with the single-instance registry itself.
@pytest.mark.single_instance
async def test_a_client_a_lost_takeover_left_unowned_is_registered_again(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings
) -> None:
    node = await make_node(**DEATH_FAST)
    client = make_client(node, "c1", client_meta={"s": "one"})
    await join(node, client)
    stranger = MeshClientRegistry(999, MeshClientRedisRegistry("_mc:app", redis=redis_settings))
    await stranger.reserve("c1", {"s": "stranger"})
    await stranger.cleanup_node()  # the stranger died before its kick went out

    async def registered_here() -> bool:
        entry = await node.client_registry.get_client("c1")
        return entry is not None and entry.node_id == node.mesh_instance_id

    # Within a node TTL or two, the node notices and registers its client again.
    await eventually(registered_here, timeout=5.0)
    assert client.is_connected
    assert (await node.invoke("c1", "dNotify", DNotifyRequest(notification="x"))).acknowledged


async def test_a_crashed_leaders_clients_are_reported_within_twice_the_node_ttl(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings, raw: Redis
) -> None:
    # Default leader timings (scaled to node_ttl), not the fast test ones.
    node_ttl = 1.0
    timings = {"heartbeat_interval": node_ttl / 5, "node_ttl": node_ttl, "request_timeout": 2.0}
    assert redis_settings.url is not None and redis_settings.prefix is not None
    child = await spawn_child(
        "-m",
        CHILD,
        redis_settings.url,
        redis_settings.prefix,
        str(node_ttl),
        cwd=ROOT,
        ready_timeout=20,
    )
    try:
        port, child_id = (int(part) for part in child.ready_line.split())
        lock = f"{redis_settings.prefix}:leader:mesh:_mc:app"
        await eventually(lambda: raw.exists(lock))  # the child leads
        survivor = await make_node(**timings)
        assert survivor._mesh_client_service.mesh.leader_options.ttl == node_ttl
        orphans: list[tuple[int, list[str]]] = []
        survivor.on_node_clients_orphaned(
            lambda node_id, clients: orphans.append((node_id, [c.client_id for c in clients]))
        )
        client = make_client(survivor, "c7")
        client.url = f"ws://127.0.0.1:{port}/srpc"
        await client.connect()

        async def registered_on_child() -> bool:
            found = await survivor.client_registry.get_client("c7")
            return found is not None and found.node_id == child_id

        await eventually(registered_on_child)
        assert not survivor._mesh_client_service.mesh.is_leader
        killed_at = asyncio.get_running_loop().time()
        await child.aclose()  # SIGKILL: the leader dies holding its lock
        # 2 x node_ttl, plus a generous margin for a loaded machine (measured: ~1.4 s).
        await eventually(lambda: orphans, timeout=2 * node_ttl + 6.0)
        took = asyncio.get_running_loop().time() - killed_at
        await settle(0.5)
        assert orphans == [(child_id, ["c7"])]
        assert survivor._mesh_client_service.mesh.is_leader
        print(f"orphans of the crashed leader reported {took:.2f} s after the kill")
    finally:
        await child.aclose()
