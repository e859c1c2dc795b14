"""a misspelled constructor option (node_tll for node_ttl) is an error, not a silent default."""

from __future__ import annotations

from lobby.lobby_srpc import LobbyMeshSrpcServer


def make() -> LobbyMeshSrpcServer:
    return LobbyMeshSrpcServer("lobby", node_tll=3.0)  # E: call-arg
