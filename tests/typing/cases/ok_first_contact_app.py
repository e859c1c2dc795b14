"""Typed options, partial metadata updates and typed client metadata: must pass mypy --strict."""

from __future__ import annotations

from lobby.lobby_srpc import (
    ClientMetaDict,
    ClientMetaUpdateDict,
    LobbyMeshSrpcServer,
    LobbySrpcClient,
    LobbySrpcServer,
)

from meshsrpc import LeaderOptions


def make() -> tuple[LobbyMeshSrpcServer, LobbySrpcServer, LobbySrpcClient]:
    mesh = LobbyMeshSrpcServer(
        "lobby",
        node_ttl=3.0,
        heartbeat_interval=1.0,
        leader=LeaderOptions(ttl=5.0),
        redis="memory://lobby",
        auth_secret="s",
        inactivity_timeout=30.0,
    )
    single = LobbySrpcServer(auth_secret="s", path="/srpc")
    meta: ClientMetaDict = {"rating": 1.5, "sessionSerial": 2}
    client = LobbySrpcClient(
        "ws://127.0.0.1:1/srpc", "alice", client_meta=meta, client_secret="s", enable_reconnect=False
    )
    return mesh, single, client


async def update(server: LobbyMeshSrpcServer) -> bool:
    # a partial update: only the keys to change; None deletes a key
    change: ClientMetaUpdateDict = {"sessionSerial": 3, "since": None}
    assert await server.update_client_metadata("alice", change)
    # a full ClientMetaDict is a valid update too
    full: ClientMetaDict = {"rating": 2.0}
    return await server.update_client_metadata("alice", full)


def connected(client_id: str, metadata: ClientMetaDict) -> None:
    # every key may be absent: a client may send no metadata at all
    serial: int | None = metadata.get("sessionSerial")
    print(client_id, serial)
