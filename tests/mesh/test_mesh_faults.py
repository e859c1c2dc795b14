"""Redis failures under a running mesh: restart, outage, killed or silent subscriber."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from mesh_helpers import FAST, eventually, stop_or_dump
from meshsrpc import MeshError, MeshService, RedisSettings
from meshsrpc.redis_server import RedisServer
from redis.asyncio import Redis

ServerFactory = Callable[[], RedisServer]


@pytest.fixture
async def start_mesh() -> AsyncIterator[Callable[..., Any]]:
    created: list[MeshService] = []

    async def start(settings: RedisSettings, **options: Any) -> MeshService:
        mesh = MeshService("k", **{**FAST, "redis": settings, **options})
        mesh.register_handler("echo", lambda data: data)
        created.append(mesh)
        await mesh.start()
        return mesh

    yield start
    for mesh in created:
        await stop_or_dump(mesh)


async def answers(caller: MeshService, target: int) -> bool:
    try:
        return bool(await caller.invoke(target, "echo", "x", timeout=0.5) == "x")
    except MeshError:
        return False


async def test_nodes_recover_after_redis_restarts_empty(
    redis_server_factory: ServerFactory, start_mesh: Callable[..., Any]
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="f")
    a = await start_mesh(settings)
    b = await start_mesh(settings)
    rejoined: list[str] = []
    a.set_rejoined_callback(lambda: rejoined.append("a"))
    b.set_rejoined_callback(lambda: rejoined.append("b"))
    await eventually(lambda: a.is_leader)
    assert await answers(a, 2)
    # In a thread, so that the nodes keep running while Redis is down.
    await asyncio.to_thread(server.restart, 0.5)
    await eventually(lambda: answers(a, 2), timeout=10)
    await eventually(lambda: answers(b, 1), timeout=10)
    await eventually(lambda: sorted(rejoined) == ["a", "b"])
    assert [node.instance_id for node in await a.get_nodes()] == [1, 2]
    # The id counter was restored: a newcomer does not get a live node's id.
    c = await start_mesh(settings)
    assert c.instance_id == 3
    nodes = (a, b, c)
    await eventually(lambda: sum(node.is_leader for node in nodes) == 1, timeout=5)


async def test_invoke_while_redis_is_down_fails_with_a_clear_error(
    redis_server_factory: ServerFactory, start_mesh: Callable[..., Any]
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="f")
    a = await start_mesh(settings)
    await start_mesh(settings)
    server.kill()
    with pytest.raises(MeshError):
        await asyncio.wait_for(a.invoke(2, "echo", 1, timeout=1.0), 10)
    with pytest.raises(MeshError):
        await asyncio.wait_for(a.broadcast("hello", 1), 10)
    server.start()
    await eventually(lambda: answers(a, 2), timeout=10)


async def test_pending_invoke_fails_when_the_redis_connection_is_lost(
    redis_server_factory: ServerFactory, start_mesh: Callable[..., Any]
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="f")
    a = await start_mesh(settings)
    b = await start_mesh(settings)
    b.register_handler("hang", lambda data: asyncio.sleep(60))
    call = asyncio.ensure_future(a.invoke(2, "hang", None, timeout=30))
    await asyncio.sleep(0.3)
    server.kill()
    with pytest.raises(MeshError, match="connection to Redis lost"):
        await asyncio.wait_for(call, 10)
    server.start()


async def test_killed_pubsub_connection_is_resubscribed(
    redis_server_factory: ServerFactory, start_mesh: Callable[..., Any]
) -> None:
    server = redis_server_factory()
    settings = RedisSettings(url=server.url, prefix="f")
    a = await start_mesh(settings)
    b = await start_mesh(settings)
    client = Redis.from_url(server.url)
    try:
        before = await client.client_list(_type="pubsub")
        assert len(before) == 2
        assert server.command("CLIENT", "KILL", "TYPE", "pubsub").startswith(b":2")
        channels = ["f:mesh:k:node:1", "f:mesh:k:node:2", "f:mesh:k:broadcast"]

        async def resubscribed() -> bool:
            counts = dict(await client.pubsub_numsub(*channels))
            return list(counts.values()) == [1, 1, 2]

        await eventually(resubscribed, timeout=5)
        after = await client.client_list(_type="pubsub")
        assert {c["id"] for c in after}.isdisjoint({c["id"] for c in before})
        assert await answers(a, 2)
        assert await answers(b, 1)
    finally:
        await client.aclose()


class BlackholeProxy:
    """A TCP proxy to Redis that can silently stop forwarding on its open connections
    (no FIN, no RST): what a dead network path looks like to the client."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[dict[str, bool]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def blackhole(self) -> None:
        for link in self._links:
            link["dead"] = True

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        link = {"dead": False}
        self._links.append(link)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    if not link["dead"]:
                        dst.write(data)
                        await dst.drain()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_silent_subscriber_connection_is_noticed_by_ping_and_resubscribed(
    redis_server_factory: ServerFactory,
    start_mesh: Callable[..., Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = redis_server_factory()
    proxy = BlackholeProxy(server.port)
    await proxy.start()
    try:
        direct = RedisSettings(url=server.url, prefix="f")
        proxied = RedisSettings(url=f"redis://127.0.0.1:{proxy.port}/0", prefix="f")
        # A long node ttl: this test is about the subscription, not about cleanup.
        a = await start_mesh(proxied, node_ttl=30.0)
        b = await start_mesh(direct, node_ttl=30.0)
        assert await answers(b, 1)
        proxy.blackhole()  # a's connections stay open but carry nothing any more
        await eventually(lambda: "did not answer PING" in caplog.text, timeout=10)
        await eventually(lambda: answers(b, 1), timeout=15)
        await eventually(lambda: answers(a, 2), timeout=15)
    finally:
        await proxy.close()
