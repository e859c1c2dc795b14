"""Issue 8: no node can be taken over by a stranger.

Bad credentials of every kind are refused before the upgrade with the right HTTP
status, and none gets a stream, a registry entry or a callback. A signed handshake URL
is accepted once: presented again, to the same node or to another node of the mesh,
it is refused (403). SrpcClient signs a fresh id and ts per connect, so it is never
affected.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from meshsrpc import (
    MeshSrpcServer,
    RedisSettings,
    SrpcClient,
    SrpcError,
    SrpcServer,
)
from meshsrpc.srpc.auth import sign
from meshsrpc.testing import FAST_MESH
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from tests.generated.sgnl24.TestRpc import ClientMessage, ServerMessage

SECRET = "s3cret"
FAST: dict[str, Any] = FAST_MESH
Node = MeshSrpcServer[ClientMessage, ServerMessage, Any]
MakeNode = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(redis_settings: RedisSettings) -> AsyncIterator[MakeNode]:
    nodes: list[Node] = []

    async def make(**options: Any) -> Node:
        node: Node = MeshSrpcServer(
            ClientMessage,
            ServerMessage,
            **{
                "mesh_key": "auth",
                "redis": redis_settings,
                "auth_secret": SECRET,
                **FAST,
                **options,
            },
        )
        nodes.append(node)
        node.connected: list[str] = []  # type: ignore[attr-defined]
        node.on_client_connected(lambda cid, _meta: node.connected.append(cid))  # type: ignore[attr-defined]
        await node.listen("127.0.0.1", 0)
        await node.mesh_start()
        return node

    yield make
    for node in reversed(nodes):
        await node.mesh_stop()
        await node.close()


def signed_query(
    *, secret: str = SECRET, cid: str = "c1", ts: int | None = None, stream_id: str = "s-1"
) -> dict[str, str]:
    query = {
        "authv": "1",
        "appv": "1.0.0",
        "ts": str(int(time.time() * 1000) if ts is None else ts),
        "id": stream_id,
        "cid": cid,
    }
    query["signature"] = sign(
        secret, query["authv"], query["appv"], query["ts"], query["id"], query["cid"]
    )
    query["_v"] = "2"
    return query


def url(server: SrpcServer[Any, Any], query: dict[str, str]) -> str:
    return f"ws://127.0.0.1:{server.port}/srpc?{urlencode(query)}"


async def handshake_status(server: SrpcServer[Any, Any], query: dict[str, str]) -> int:
    """101 if the upgrade was accepted (the socket is closed again at once), else the status."""
    try:
        async with ws_connect(url(server, query), open_timeout=5, proxy=None):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


def without(query: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in query.items() if k not in names}


def tampered(query: dict[str, str], **changes: str) -> dict[str, str]:
    return {**query, **changes}


BAD_CREDENTIALS: list[tuple[str, Callable[[], dict[str, str]], int]] = [
    ("wrong signature", lambda: tampered(signed_query(), signature="0" * 64), 403),
    ("signature of another secret", lambda: signed_query(secret="other"), 403),
    ("signed for another client", lambda: tampered(signed_query(cid="c2"), cid="c1"), 403),
    ("appv changed after signing", lambda: tampered(signed_query(), appv="9.9.9"), 403),
    ("ts too old", lambda: signed_query(ts=int(time.time() * 1000) - 31_000), 403),
    ("ts too far ahead", lambda: signed_query(ts=int(time.time() * 1000) + 31_000), 403),
    ("ts not a number", lambda: tampered(signed_query(), ts="soon"), 403),
    ("no signature", lambda: without(signed_query(), "signature"), 403),
    ("no ts", lambda: without(signed_query(), "ts"), 403),
    ("no authv", lambda: without(signed_query(), "authv"), 403),
    ("no cid", lambda: without(signed_query(), "cid"), 400),
    ("no id", lambda: without(signed_query(), "id"), 400),
    ("no appv", lambda: without(signed_query(), "appv"), 400),
    ("empty cid", lambda: tampered(signed_query(), cid=""), 400),
]


async def test_bad_credentials_are_refused_with_the_right_status(make_node: MakeNode) -> None:
    node = await make_node()
    statuses = {}
    for name, make_query, _expected in BAD_CREDENTIALS:
        statuses[name] = [await handshake_status(node, make_query()) for _ in range(3)]
    assert statuses == {name: [expected] * 3 for name, _, expected in BAD_CREDENTIALS}
    assert node.connected == []  # type: ignore[attr-defined]
    assert await node.client_registry.list_clients() == []
    assert not node.streams_by_id


async def test_key_fetcher_and_authorizer_failures(make_node: MakeNode) -> None:
    node = await make_node()

    node.set_client_key_fetcher(lambda cid: None)  # refuses everyone
    assert await handshake_status(node, signed_query()) == 403

    def broken_fetcher(cid: str) -> str:
        raise RuntimeError("key store down")

    node.set_client_key_fetcher(broken_fetcher)
    assert await handshake_status(node, signed_query(stream_id="s-2")) == 500

    node.set_client_key_fetcher(lambda cid: "per-client")
    assert await handshake_status(node, signed_query(stream_id="s-3")) == 403  # shared secret
    good = signed_query(secret="per-client", stream_id="s-4")
    assert await handshake_status(node, good) == 101

    async def raising_authorizer(query: Any, request: Any) -> bool:
        raise RuntimeError("authorizer bug")

    node.set_client_authorizer(raising_authorizer)
    assert await handshake_status(node, signed_query(stream_id="s-5")) == 500
    node.set_client_authorizer(lambda query, request: False)
    assert await handshake_status(node, signed_query(stream_id="s-6")) == 403
    # (The accepted socket closed before activating: nothing was ever announced.)
    assert node.connected == []  # type: ignore[attr-defined]


async def test_a_replayed_handshake_is_refused_on_every_node(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node()
    query = signed_query(cid="victim")
    assert await handshake_status(a, query) == 101
    # The same URL again, while its ts is still within the drift: refused everywhere.
    assert await handshake_status(a, query) == 403
    assert await handshake_status(b, query) == 403
    # A different stream id is a different handshake.
    assert await handshake_status(b, signed_query(cid="victim", stream_id="s-other")) == 101


async def test_sdk_clients_reconnect_freely_with_replay_protection(make_node: MakeNode) -> None:
    a = await make_node()
    b = await make_node()
    for round_ in range(5):
        node = (a, b)[round_ % 2]
        client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
            f"ws://127.0.0.1:{node.port}/srpc",
            ClientMessage,
            ServerMessage,
            "sdk",
            client_secret=SECRET,
            enable_reconnect=False,
        )
        await client.connect()
        await client.disconnect()


async def test_replay_protection_can_be_switched_off(make_node: MakeNode) -> None:
    node = await make_node(replay_protection=False)
    query = signed_query(cid="again")
    assert await handshake_status(node, query) == 101
    assert await handshake_status(node, query) == 101


async def test_plain_srpc_server_refuses_replays_in_memory() -> None:
    server: SrpcServer[ClientMessage, ServerMessage] = SrpcServer(
        ClientMessage, ServerMessage, auth_secret=SECRET
    )
    await server.listen("127.0.0.1", 0)
    try:
        query = signed_query()
        assert await handshake_status(server, query) == 101
        assert await handshake_status(server, query) == 403
    finally:
        await server.close()


async def test_a_failing_replay_guard_refuses_with_500(make_node: MakeNode) -> None:
    node = await make_node()

    class Broken:
        async def first_use(self, key: str, ttl: float) -> bool:
            raise ConnectionError("redis down")

    node.set_replay_guard(Broken())
    assert await handshake_status(node, signed_query()) == 500
    client: SrpcClient[ClientMessage, ServerMessage] = SrpcClient(
        f"ws://127.0.0.1:{node.port}/srpc",
        ClientMessage,
        ServerMessage,
        "c1",
        client_secret=SECRET,
        enable_reconnect=False,
    )
    with pytest.raises(SrpcError, match="500"):
        await client.connect()
