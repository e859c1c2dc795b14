"""Calls between two direct-capable nodes go over their direct channel, not through Redis."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from direct_helpers import InboxSpy, MakeMesh
from meshsrpc import (
    MeshConnectionLostError,
    MeshHandlerError,
    MeshNoHandlerError,
    MeshService,
    RedisSettings,
)
from meshsrpc.direct.channel import Channel
from meshsrpc.testing import eventually
from redis.asyncio import Redis

# A heartbeat for no request: ignored by the node, and the last thing the spy sees.
MARKER = b'{"requestId":"marker","heartbeat":true}'


async def publish_markers(settings: RedisSettings, spy: InboxSpy, *channels: str) -> None:
    """Publish MARKER to each channel and wait for the spy to see them: whatever was
    published to those channels before has then reached the spy too."""
    client = Redis.from_url(settings.url or "")
    try:
        for channel in channels:
            await client.publish(channel, MARKER)
    finally:
        await client.aclose()
    await eventually(lambda: sum(p == MARKER for _, p in spy.messages) == len(channels))


def inbox(settings: RedisSettings, mesh: MeshService) -> str:
    return f"{settings.prefix}:mesh:{mesh.key}:node:{mesh.instance_id}"


async def direct_between(a: MeshService, b: MeshService) -> None:
    """Call until a's direct channel to b is open (the first calls go through Redis)."""

    async def up() -> bool:
        await a.invoke(b.instance_id, "echo", "warm-up")
        assert a.direct_link is not None
        return a.direct_link.is_direct(b.instance_id)

    await eventually(up)


async def echo_over_a_channel(make_mesh: MakeMesh) -> tuple[MeshService, MeshService, Channel]:
    """Two nodes, B answering "echo", and A's open direct channel to B."""
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("echo", lambda data: data)
    await direct_between(a, b)
    assert a.direct_link is not None
    channel = a.direct_link.channel_to(b.instance_id)
    assert channel is not None
    return a, b, channel


async def test_each_node_advertises_its_address_in_the_direct_hash(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    assert a.direct_link is not None and a.direct_link.address is not None
    client = Redis.from_url(redis_settings.url or "")
    try:
        raw = await client.hget(f"{redis_settings.prefix}:mesh:k:direct", str(a.instance_id))
    finally:
        await client.aclose()
    assert raw is not None
    address = a.direct_link.address
    assert json.loads(raw) == {"host": "127.0.0.1", "port": address.port, "tls": False}


async def test_a_stopped_node_withdraws_its_address(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a = await make_mesh()
    instance_id = a.instance_id
    await a.stop()
    client = Redis.from_url(redis_settings.url or "")
    try:
        assert await client.hget(f"{redis_settings.prefix}:mesh:k:direct", str(instance_id)) is None
    finally:
        await client.aclose()


async def test_the_first_call_goes_through_redis_while_the_channel_opens(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("echo", lambda data: data)
    async with InboxSpy(redis_settings.url or "", inbox(redis_settings, b)) as spy:
        assert await a.invoke(b.instance_id, "echo", 1) == 1
        await eventually(lambda: len(spy.messages) == 1)
    assert json.loads(spy.messages[0][1])["type"] == "echo"


async def test_once_open_requests_and_replies_bypass_redis(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("echo", lambda data: data)
    await direct_between(a, b)
    async with InboxSpy(
        redis_settings.url or "", inbox(redis_settings, a), inbox(redis_settings, b)
    ) as spy:
        results = await asyncio.gather(*(a.invoke(b.instance_id, "echo", i) for i in range(50)))
        assert results == list(range(50))
        await publish_markers(
            redis_settings, spy, inbox(redis_settings, a), inbox(redis_settings, b)
        )
    assert [payload for _, payload in spy.messages] == [MARKER, MARKER]


async def test_request_heartbeats_of_a_long_call_come_over_the_channel(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a, b = await make_mesh(), await make_mesh()

    async def slow(data: Any) -> Any:
        await asyncio.sleep(1.5)  # three beats of a 0.5 s timeout
        return data

    b.register_handler("echo", lambda data: data)
    b.register_handler("slow", slow)
    await direct_between(a, b)
    async with InboxSpy(redis_settings.url or "", inbox(redis_settings, a)) as spy:
        assert await a.invoke(b.instance_id, "slow", "done", timeout=0.5) == "done"
        await publish_markers(redis_settings, spy, inbox(redis_settings, a))
    assert [payload for _, payload in spy.messages] == [MARKER]


async def test_errors_and_missing_handlers_come_back_as_over_redis(make_mesh: MakeMesh) -> None:
    a, b = await make_mesh(), await make_mesh()

    def fail(data: Any) -> Any:
        raise RuntimeError("boom")

    b.register_handler("echo", lambda data: data)
    b.register_handler("fail", fail)
    await direct_between(a, b)
    try:
        await a.invoke(b.instance_id, "fail", None)
    except MeshHandlerError as exc:
        assert exc.message == "boom"
    else:
        raise AssertionError("no error")
    try:
        await a.invoke(b.instance_id, "nothing", None)
    except MeshNoHandlerError as exc:
        assert exc.type == "nothing"
    else:
        raise AssertionError("no error")


async def test_the_called_node_answers_over_the_callers_connection(make_mesh: MakeMesh) -> None:
    a, b = await make_mesh(), await make_mesh()
    a.register_handler("echo", lambda data: data)
    b.register_handler("echo", lambda data: data)
    await direct_between(a, b)
    assert b.direct_link is not None
    # b needs no connection of its own to call a: the one a opened carries both ways.
    assert b.direct_link.is_direct(a.instance_id)
    assert await b.invoke(a.instance_id, "echo", "back") == "back"


async def test_broadcasts_stay_on_redis(make_mesh: MakeMesh, redis_settings: RedisSettings) -> None:
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("echo", lambda data: data)
    got: list[Any] = []
    b.register_broadcast_handler("news", lambda data, sender: got.append(data))
    await direct_between(a, b)
    channel = f"{redis_settings.prefix}:mesh:k:broadcast"
    async with InboxSpy(redis_settings.url or "", channel) as spy:
        await a.broadcast("news", "hello")
        await eventually(lambda: got == ["hello"])
        await eventually(lambda: len(spy.messages) == 1)


async def test_a_call_still_queued_when_its_connection_drops_goes_through_redis(
    make_mesh: MakeMesh, redis_settings: RedisSettings
) -> None:
    a, b, channel = await echo_over_a_channel(make_mesh)
    async with InboxSpy(redis_settings.url or "", inbox(redis_settings, b)) as spy:
        # Two calls in one loop iteration: the first is written at once, the second
        # waits for the end of the iteration.
        written = asyncio.ensure_future(a.invoke(b.instance_id, "echo", "written"))
        queued = asyncio.ensure_future(a.invoke(b.instance_id, "echo", "queued"))
        await asyncio.sleep(0)  # both ran up to their wait
        assert channel.batch > channel.flushed
        channel.abort()
        async with asyncio.timeout(10):
            assert await queued == "queued"
            # It may have been delivered: it fails, it is never sent again.
            with pytest.raises(MeshConnectionLostError):
                await written
        await eventually(lambda: len(spy.messages) == 1)
    assert json.loads(spy.messages[0][1])["data"] == "queued"


async def test_a_lone_call_is_written_at_once_and_a_burst_in_one_write(
    make_mesh: MakeMesh,
) -> None:
    a, b, channel = await echo_over_a_channel(make_mesh)
    lone = asyncio.ensure_future(a.invoke(b.instance_id, "echo", 0))
    await asyncio.sleep(0)
    assert channel.batch == channel.flushed  # on its way before the iteration ended
    assert await lone == 0
    burst = [asyncio.ensure_future(a.invoke(b.instance_id, "echo", n)) for n in range(1, 20)]
    await asyncio.sleep(0)
    first_queued = channel.flushed + 1
    assert channel.batch == first_queued  # the other 18 share the next write
    assert await asyncio.gather(*burst) == list(range(1, 20))
    assert channel.flushed >= first_queued


async def test_both_ends_of_a_direct_connection_send_without_nagle_delay(
    make_mesh: MakeMesh,
) -> None:
    a, b = await make_mesh(), await make_mesh()
    b.register_handler("echo", lambda data: data)
    await direct_between(a, b)
    assert a.direct_link is not None and b.direct_link is not None
    for channel in (
        a.direct_link.channel_to(b.instance_id),
        b.direct_link.channel_to(a.instance_id),
    ):
        assert channel is not None
        sock = channel.transport_socket
        assert sock is not None
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
