"""One downstream call (no overloads): an unknown prefix is still an error."""

from __future__ import annotations

from lobby.games.Lobby import DOfferSeatRequest
from lobby.lobby_srpc import LobbyMeshSrpcServer


async def run(server: LobbyMeshSrpcServer) -> None:
    await server.invoke("p1", "dOfferSeet", DOfferSeatRequest())  # E: arg-type
