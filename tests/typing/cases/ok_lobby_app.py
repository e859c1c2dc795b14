"""A correct app on the lobby proto (imports, nested messages, enums, maps, well-known types)."""

from __future__ import annotations

import datetime

from lobby.games.common import PlayerRef, Visibility
from lobby.games.Lobby import (
    DOfferSeatRequest,
    DOfferSeatResponse,
    TableSeat,
    TableState,
    UJoinTableRequest,
    UJoinTableResponse,
    UListTablesRequest,
    UListTablesResponse,
)
from lobby.lobby_srpc import ClientMetaDict, LobbyMeshSrpcServer, TableChangedDict, TableDict

from meshsrpc import SrpcStream


class Lobby(LobbyMeshSrpcServer):
    async def handle_u_join_table(self, stream: SrpcStream, request: UJoinTableRequest) -> UJoinTableResponse:
        return UJoinTableResponse()

    async def handle_u_list_tables(self, stream: SrpcStream, request: UListTablesRequest) -> UListTablesResponse:
        states: list[TableState] = request.states
        print(states)
        return UListTablesResponse(tables=[])

    async def on_broadcast_table_changed(self, data: TableChangedDict, sender_instance_id: int) -> None:
        seats = data["table"]["seats"]
        first_player = seats[0].get("player") if seats else None
        name: str | None = first_player["displayName"] if first_player else None
        print(name)


async def use(lobby: Lobby) -> None:
    seat = TableSeat(index=1, player=PlayerRef(player_id="p1", display_name="Ann"))
    offer = DOfferSeatRequest(seat=seat, within=datetime.timedelta(seconds=30))
    answer: DOfferSeatResponse = await lobby.invoke_d_offer_seat("p1", offer)
    again: DOfferSeatResponse = await lobby.invoke("p1", "dOfferSeat", offer)
    print(answer.accepted, again)
    table: TableDict = {
        "tableId": "t1",
        "state": "STATE_PLAYING",
        "seats": [{"index": 0, "player": {"playerId": "p1", "displayName": "Ann"}}, {"index": 1}],
        "scores": {"p1": 10},
        "openedAt": "2026-01-01T00:00:00Z",
        "turnTime": "30s",
        "pot": 2**40,
        "avatar": "aGVsbG8=",
        "rake": 0.05,
        "rules": {"deck": 52, "jokers": False},
        "maxPlayers": None,
        "visibility": "VISIBILITY_PUBLIC",
        "reserved": {"p2": {"index": 3}},
    }
    await lobby.broadcast_table_changed({"table": table, "note": "seat taken"})
    await lobby.broadcast("tableChanged", {"table": table, "code": 7, "by": {"playerId": "p1", "displayName": "A"}})
    meta: ClientMetaDict = {
        "player": {"playerId": "p1", "displayName": "Ann"},
        "visibility": "VISIBILITY_FRIENDS",
        "tags": {"team": "red"},
        "favouriteTables": [1, -2],
        "rating": 1.5,
        "sessionSerial": 12,
    }
    print(meta, Visibility.PUBLIC)
