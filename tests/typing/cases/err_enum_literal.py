"""An enum in a TypedDict accepts only its value names."""

from __future__ import annotations

from lobby.lobby_srpc import ClientMetaDict

meta: ClientMetaDict = {
    "player": {"playerId": "p1", "displayName": "Ann"},
    "visibility": "PUBLIC",  # E: typeddict-item
    "tags": {},
    "favouriteTables": [],
    "rating": 1.0,
    "sessionSerial": 1,
}
