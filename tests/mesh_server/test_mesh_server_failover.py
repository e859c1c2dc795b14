"""A client whose node crashed (or lost its stream) is let in elsewhere at once (probeClient).

A v2 connection without supersede that conflicts with another node's entry asks that
node whether it still holds a live connection: "not held" or no answer → takeover;
"held", or a node that cannot tell (a TypeScript node) → 4001 as before.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from meshsrpc import (
    MeshClientRedisRegistry,
    MeshService,
    RedisSettings,
    SrpcConflictError,
)
from meshsrpc.probe import OwnerProbe
from meshsrpc.testing import spawn_child
from redis.asyncio import Redis

from tests.generated.sgnl24.TestRpc import DNotifyRequest
from tests.mesh_server.mesh_server_support import (
    MakeClient,
    MakeNode,
    Recorder,
    eventually,
    join,
    settle,
)
from tests.mesh_server.test_mesh_forward_vectors import Inbox
from tests.mesh_server.test_mesh_server_nodes import CHILD, ROOT

pytestmark = pytest.mark.timeout(60)


async def register_elsewhere(settings: RedisSettings, client_id: str, node_id: int) -> None:
    """Write a registry entry naming ``node_id``, as that node would have."""
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry("_mc:app", redis=settings)
    try:
        await registry.register(client_id, node_id, None)
    finally:
        await registry.aclose()


async def owned_by(node: Any, client_id: str) -> int | None:
    found = await node.client_registry.get_client(client_id)
    return None if found is None else int(found.node_id)


async def test_a_crashed_nodes_client_is_let_in_elsewhere_long_before_node_ttl(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings, raw: Redis
) -> None:
    node_ttl = 3.0
    survivor = await make_node(
        heartbeat_interval=node_ttl / 5, node_ttl=node_ttl, request_timeout=2.0, leader=None
    )
    connected, disconnected = Recorder(), Recorder()
    survivor.on_client_connected(connected)
    survivor.on_client_disconnected(disconnected)
    orphans: list[tuple[int, list[str]]] = []
    survivor.on_node_clients_orphaned(
        lambda node_id, clients: orphans.append((node_id, [c.client_id for c in clients]))
    )
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
        doomed = make_client(survivor, "c5")
        doomed.url = f"ws://127.0.0.1:{port}/srpc"
        await doomed.connect()
        await eventually(lambda: owned_by(survivor, "c5"), timeout=10)
        assert await owned_by(survivor, "c5") == child_id
        await child.aclose()  # SIGKILL: its entry stays in the registry until the leader cleans up
        await doomed.disconnect()

        loop = asyncio.get_running_loop()
        started = loop.time()
        back = make_client(survivor, "c5")  # protocol v2, no supersede
        await join(survivor, back)
        took = loop.time() - started
        assert took < node_ttl  # measured: the probe timeout (0.5 s) and a few ms
        assert await owned_by(survivor, "c5") == survivor.mesh_instance_id
        assert (
            await survivor.invoke("c5", "dNotify", DNotifyRequest(notification="hi"))
        ).acknowledged
        # The leader later removes the dead node: the client that moved is not its orphan.

        async def dead_node_removed() -> bool:
            return child_id not in [n.instance_id for n in await survivor.get_nodes()]

        await eventually(dead_node_removed, timeout=2 * node_ttl + 6)
        await settle(0.3)
        assert orphans == []
        assert [cid for cid, _ in connected.events] == ["c5"]
        assert disconnected.events == []
        assert await owned_by(survivor, "c5") == survivor.mesh_instance_id
    finally:
        await child.aclose()


# Writes entries with the single-instance registry itself.
@pytest.mark.single_instance
async def test_a_live_node_that_lost_the_stream_is_taken_over(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings
) -> None:
    a = await make_node()
    b = await make_node()
    # A ghost entry: the registry names node a, which has no connection for the client.
    await register_elsewhere(redis_settings, "g1", a.mesh_instance_id)
    await join(b, make_client(b, "g1"))
    assert await owned_by(b, "g1") == b.mesh_instance_id


# Writes entries with the single-instance registry itself.
@pytest.mark.single_instance
async def test_a_node_that_does_not_answer_the_probe_is_taken_over(
    make_node: MakeNode, make_client: MakeClient, redis_settings: RedisSettings
) -> None:
    node = await make_node(probe_timeout=0.3)
    await register_elsewhere(redis_settings, "d1", 4242)  # a node id nobody listens for
    await join(node, make_client(node, "d1"))
    assert await owned_by(node, "d1") == node.mesh_instance_id


async def test_a_live_connection_on_the_owner_still_gets_4001(
    make_node: MakeNode, make_client: MakeClient
) -> None:
    a = await make_node()
    b = await make_node()
    first = make_client(a, "h1")
    await join(a, first)
    with pytest.raises(SrpcConflictError):
        await make_client(b, "h1").connect()
    assert first.is_connected
    assert await owned_by(b, "h1") == a.mesh_instance_id


async def test_a_node_that_cannot_tell_keeps_the_4001(
    make_node: MakeNode,
    make_client: MakeClient,
    redis_settings: RedisSettings,
    raw: Redis,
    mesh_prefix: str,
) -> None:
    node = await make_node()
    ts_node = 77
    await register_elsewhere(redis_settings, "t1", ts_node)
    async with Inbox(raw, f"{mesh_prefix}:mesh:_mc:app:node:{ts_node}") as inbox:

        async def answer_like_typescript() -> None:
            request = await inbox.next()
            reply = {
                "requestId": request["requestId"],
                "reply": True,
                "error": f"MESH_NO_HANDLER:{request['type']}",
            }
            channel = f"{mesh_prefix}:mesh:_mc:app:node:{request['senderInstanceId']}"
            await raw.publish(channel, json.dumps(reply))

        answering = asyncio.create_task(answer_like_typescript())
        with pytest.raises(SrpcConflictError):
            await make_client(node, "t1").connect()
        await answering
    assert await owned_by(node, "t1") == ts_node


async def test_one_probe_per_client_id_and_a_refusal_is_remembered(
    redis_settings: RedisSettings,
) -> None:
    asked: list[str] = []

    async def holds(client_id: str) -> bool:
        asked.append(client_id)
        await asyncio.sleep(0.1)
        return True

    owner = MeshService("probe", heartbeat_interval=0.2, node_ttl=3.0, redis=redis_settings)
    asker = MeshService("probe", heartbeat_interval=0.2, node_ttl=3.0, redis=redis_settings)
    OwnerProbe(owner, holds, timeout=2.0, refusal_ttl=1.0)
    probe = OwnerProbe(asker, None, timeout=2.0, refusal_ttl=1.0)
    await owner.start()
    await asker.start()
    try:
        answers = await asyncio.gather(*(probe.is_held("x", owner.instance_id) for _ in range(5)))
        assert answers == [True] * 5 and asked == ["x"]
        assert await probe.is_held("x", owner.instance_id) and asked == ["x"]
        await asyncio.sleep(1.1)
        assert await probe.is_held("x", owner.instance_id) and asked == ["x", "x"]
    finally:
        await asker.stop()
        await owner.stop()
