"""update_client_metadata takes ClientMetaUpdateDict: a value of the wrong type is an error."""

from __future__ import annotations

from lobby.lobby_srpc import LobbyMeshSrpcServer


async def bump(server: LobbyMeshSrpcServer) -> bool:
    return await server.update_client_metadata("alice", {"sessionSerial": "4"})  # E: typeddict-item
