"""Presence events (WIRE.md §6) on ``P:mesh:K:events``: what nodes publish, and that no
node listens to them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from meshsrpc import RedisSettings
from meshsrpc.cli.inspect import MeshInspector, read_event
from redis.asyncio import Redis

from tests.mesh_server.mesh_server_support import join

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def events(redis_settings: RedisSettings) -> AsyncIterator[Any]:
    """A subscription to the events channel of mesh ``app``."""
    inspector = MeshInspector(redis_settings, "app")
    pubsub = await inspector.subscribe_events()
    yield pubsub
    await pubsub.aclose()
    await inspector.aclose()


async def test_a_client_that_leaves_publishes_a_disconnect(
    make_node: Any, make_client: Any, events: Any
) -> None:
    node = await make_node()
    client = make_client(node, "c1")
    await join(node, client)
    await client.disconnect()
    connect, disconnect = await read_event(events, 10), await read_event(events, 10)
    assert connect is not None and disconnect is not None
    assert connect["event"] == "connect"
    assert disconnect["event"] == "disconnect"
    assert disconnect["clientId"] == "c1" and disconnect["nodeId"] == node.mesh_instance_id
    assert disconnect["at"] >= connect["at"]


async def test_a_node_that_stops_publishes_node_left_with_its_clients(
    make_node: Any, make_client: Any, events: Any
) -> None:
    node = await make_node()
    await join(node, make_client(node, "c1"))
    assert (await read_event(events, 10) or {}).get("event") == "connect"
    node_id = node.mesh_instance_id
    await node.mesh_stop()
    left = await read_event(events, 10)
    assert left == {"event": "nodeLeft", "nodeId": node_id, "clientIds": ["c1"], "at": left["at"]}


async def test_no_node_subscribes_to_the_events_channel(
    make_node: Any, redis_settings: RedisSettings
) -> None:
    await make_node()
    await make_node()
    assert redis_settings.url is not None
    raw = Redis.from_url(redis_settings.url)
    try:
        channel = f"{redis_settings.prefix}:mesh:_mc:app:events"
        assert await raw.pubsub_numsub(channel) == [(channel.encode(), 0)]
    finally:
        await raw.aclose()
