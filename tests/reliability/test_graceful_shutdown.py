"""Issue 8: a node that shuts down gracefully under load leaves the truth behind.

A node process gets SIGTERM (mesh_stop(), then close()) while every one of its
clients has a request in flight: each request is answered, each stream is closed
with 1000, the node's clients are gone from the registry, the node reports each of
them disconnected exactly once, and no node ever reports them orphaned. Clients of
the other nodes do not notice.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from meshsrpc import MeshClientRedisRegistry, RedisSettings, SrpcClient

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage, USlowRequest
from tests.reliability.harness import SOAK, Client, EventLog, NodeProcess

LEAVING_CLIENTS = 300 if SOAK else 60
STAYING_CLIENTS = 100 if SOAK else 20
NODE_TTL = 1.0


async def connect(node: NodeProcess, cid: str, causes: dict[str, list[str]]) -> Client:
    client: Client = SrpcClient(
        node.url, ClientMessage, ServerMessage, cid, client_meta={"s": cid}, enable_reconnect=False
    )
    causes[cid] = []
    client.register_disconnect_handler(causes[cid].append)
    await client.connect()
    return client


async def test_graceful_shutdown_under_load_reports_no_orphans(
    redis_settings: RedisSettings, tmp_path: Path
) -> None:
    log = EventLog()
    nodes = [
        NodeProcess(
            redis_settings.url or "",
            redis_settings.key_prefix,
            log,
            tmp_path / f"node{i}.log",
            heartbeat=0.1,
            ttl=NODE_TTL,
        )
        for i in range(3)
    ]
    await asyncio.gather(*(node.start() for node in nodes))
    leaving, staying = nodes[0], nodes[1]
    causes: dict[str, list[str]] = {}
    clients: list[Client] = []
    registry: MeshClientRedisRegistry[Any] = MeshClientRedisRegistry(
        "_mc:app", redis=redis_settings
    )
    try:
        clients += await asyncio.gather(
            *(connect(leaving, f"l{i}", causes) for i in range(LEAVING_CLIENTS))
        )
        clients += await asyncio.gather(
            *(connect(staying, f"s{i}", causes) for i in range(STAYING_CLIENTS))
        )
        everyone = {c.client_id for c in clients}
        assert await log.wait_for(
            lambda: {e.cid for e in log.events if e.kind == "connected"} == everyone, 10
        )
        calls = [
            asyncio.create_task(c.invoke("uSlow", USlowRequest(delay_ms=500), timeout=10))
            for c in clients
            if c.client_id.startswith("l")
        ]
        await asyncio.sleep(0.2)  # the requests are running on the node
        await leaving.terminate()

        replies = await asyncio.gather(*calls, return_exceptions=True)
        assert [r for r in replies if getattr(r, "message", None) != "done"] == []
        for client in clients:
            expected = ["disconnect"] if client.client_id.startswith("l") else []
            assert causes[client.client_id] == expected, client.client_id
        listed = {c.client_id: c.node_id for c in await registry.list_clients()}
        assert listed == {f"s{i}": staying.node_id for i in range(STAYING_CLIENTS)}

        # Several node TTLs: an orphan report would have come by now.
        await asyncio.sleep(4 * NODE_TTL)
        leaves = [e for e in log.events if e.kind != "connected"]
        assert [e for e in leaves if e.kind == "orphaned"] == []
        reported = sorted(e.cid for e in leaves)
        assert reported == sorted(f"l{i}" for i in range(LEAVING_CLIENTS))
        assert all(e.reporter == leaving.node_id for e in leaves)
        print(
            f"\ngraceful shutdown: {len(calls)} in-flight replies delivered, "
            f"{len(reported)} disconnects reported once, 0 orphans"
        )
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)
        await asyncio.gather(*(node.close() for node in nodes))
        await registry.aclose()
