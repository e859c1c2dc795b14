"""Nested messages are nested TypedDicts, checked key by key."""

from __future__ import annotations

from lobby.lobby_srpc import LobbyMeshSrpcServer, TableDict


async def run(server: LobbyMeshSrpcServer, table: TableDict) -> None:
    await server.broadcast_table_changed({"table": table, "by": {"playerId": "p1"}})  # E: typeddict-item
