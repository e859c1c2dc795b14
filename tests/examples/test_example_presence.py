"""examples/presence: the server's handlers and presence table, two nodes on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from meshsrpc import RedisSettings, SrpcError
from meshsrpc.redis_server import free_port

from examples.presence.client import PresenceClient
from examples.presence.generated.presence import (
    Status,
    USendDirectRequest,
    USetStatusRequest,
    UWhoIsOnlineRequest,
)
from examples.presence.server import PresenceServer


@pytest.fixture
async def nodes(redis_settings: RedisSettings) -> AsyncIterator[list[tuple[PresenceServer, str]]]:
    started: list[tuple[PresenceServer, str]] = []
    for _ in range(2):
        server = PresenceServer(
            redis=redis_settings, heartbeat_interval=0.2, node_ttl=3.0, allow_unsigned=True
        )
        port = free_port()
        await server.listen("127.0.0.1", port)
        await server.mesh_start()
        started.append((server, f"ws://127.0.0.1:{port}/srpc"))
    yield started
    for server, _ in started:
        await server.mesh_stop()
        await server.close()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[..., asyncio.Future[PresenceClient]]]:
    clients: list[PresenceClient] = []

    async def open_client(url: str, client_id: str, **kwargs: object) -> PresenceClient:
        client = PresenceClient(url, client_id, enable_reconnect=False, **kwargs)  # type: ignore[arg-type]
        await client.connect()
        clients.append(client)
        return client

    yield open_client  # type: ignore[misc]
    for client in clients:
        await client.disconnect()


async def _eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - polls state other tasks change
            await asyncio.sleep(0.02)


async def test_who_is_online_lists_clients_of_every_node(nodes, connect) -> None:  # type: ignore[no-untyped-def]
    (_, url_a), (b, url_b) = nodes
    alice = await connect(url_a, "alice")
    await connect(url_b, "bob", status=Status.BUSY, device="phone")

    online = await alice.invoke_u_who_is_online(UWhoIsOnlineRequest())

    entries = {e.client_id: e for e in online.entries}
    assert set(entries) == {"alice", "bob"}
    assert entries["bob"].node_id == b.mesh_instance_id
    assert entries["bob"].status == "busy"
    assert entries["bob"].display_name == "Bob"


async def test_direct_message_reaches_a_client_on_another_node(nodes, connect) -> None:  # type: ignore[no-untyped-def]
    (a, url_a), (b, url_b) = nodes
    alice = await connect(url_a, "alice")
    bob = await connect(url_b, "bob")

    sent = await alice.invoke_u_send_direct(USendDirectRequest(to_client_id="bob", text="hi"))

    assert sent.delivered is True
    assert sent.delivered_by_node == b.mesh_instance_id
    note = bob.notifications[-1]
    assert (note.from_client_id, note.text, note.sent_from_node) == (
        "alice",
        "hi",
        a.mesh_instance_id,
    )


async def test_direct_message_to_an_offline_user_is_a_user_error(nodes, connect) -> None:  # type: ignore[no-untyped-def]
    (_, url_a), _ = nodes
    alice = await connect(url_a, "alice")

    with pytest.raises(SrpcError, match="nobody is offline"):
        await alice.invoke_u_send_direct(USendDirectRequest(to_client_id="nobody", text="hi"))


async def test_set_status_updates_the_registry_seen_from_the_other_node(nodes, connect) -> None:  # type: ignore[no-untyped-def]
    (_, url_a), (b, _) = nodes
    alice = await connect(url_a, "alice")

    assert await alice.set_status(Status.AWAY) == "away"

    async def status_on_b() -> str | None:
        client = await b.client_registry.get_client("alice")
        return client.metadata["status"] if client and client.metadata else None

    async with asyncio.timeout(5):
        while await status_on_b() != "away":  # noqa: ASYNC110 - polls Redis
            await asyncio.sleep(0.02)

    with pytest.raises(SrpcError, match="status is required"):
        await alice.invoke_u_set_status(USetStatusRequest(status=Status.UNSPECIFIED))


async def test_presence_tables_follow_connects_and_disconnects_on_every_node(
    nodes, connect
) -> None:  # type: ignore[no-untyped-def]
    (a, url_a), (b, _) = nodes
    alice = await connect(url_a, "alice")

    await _eventually(
        lambda: all("alice" in n.presence and n.presence["alice"].online for n, _ in nodes)
    )
    assert b.presence["alice"].node_id == a.mesh_instance_id

    await alice.disconnect()

    await _eventually(lambda: not b.presence["alice"].online)
    assert b.presence["alice"].reason == "left"
